"""Speed and exactness of the kNN search behind ``knn``, ``combined`` and ``nnguide``: the
current :func:`uncertainty.ood.knn.knn_score` (float32 products, ``k + 8`` candidates
re-ranked in float64, proven exact) against the previous search (one matrix product per block
of 1024 queries in the features' dtype, then a sorted top-k), in the same run.

    python benchmarks/bench_knn_search.py                          # MNIST size, synthetic
    python benchmarks/bench_knn_search.py --checkpoint runs/lenet5-mnist/model.pt --in mnist

Without ``--checkpoint`` the features are synthetic ReLU features (a random low-rank map of
Gaussian noise, a quarter of the units dead) at MNIST's size: a bank of 55 000 x 84 and
10 000 queries; with one, the bank is the model's features of the training split and the
queries those of the test split. For float32 and float64 features it prints the best of
``--repeat`` wall times of both searches (run alternately), the ratio (previous / current,
> 1: the current one is faster), how many k-th-neighbour distances differ and by how much,
and the largest difference of each from the exact float64 search (the k-th largest float64
cosine, its distance recomputed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.reporting import format_table, write_json  # noqa: E402
from uncertainty.ood.knn import knn_score, normalize_features  # noqa: E402

__all__ = ["main", "previous_knn_score", "time_searches"]


def previous_knn_score(features: torch.Tensor, bank: torch.Tensor, k: int,
                       chunk: int = 1024) -> torch.Tensor:
    """The search before the float64 re-ranking (bank already normalised): products in the
    promoted dtype, a sorted top-k per row, the k-th row's distance in float64."""
    dtype = torch.promote_types(features.dtype, bank.dtype)
    bank = bank.to(dtype)
    queries = normalize_features(features.to(dtype))
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        index = (q @ bank.T).topk(k, dim=1, largest=True, sorted=True).indices[:, -1]
        out.append((q - bank[index]).to(torch.float64).norm(dim=1))
    return torch.cat(out)


def exact_knn_score(features: torch.Tensor, bank: torch.Tensor, k: int,
                    chunk: int = 256) -> torch.Tensor:
    """The reference: the k-th largest float64 product, its distance recomputed."""
    dtype = torch.promote_types(features.dtype, bank.dtype)
    bank = bank.to(dtype)
    queries = normalize_features(features.to(dtype))
    bank64 = bank.to(torch.float64)
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        index = (q.to(torch.float64) @ bank64.T).topk(k, dim=1).indices[:, -1]
        out.append((q - bank[index]).to(torch.float64).norm(dim=1))
    return torch.cat(out)


def _alternating_best(fns: dict[str, Any], repeat: int
                      ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Best wall time of each function over ``repeat`` rounds, the functions alternating
    within each round (so that a change of machine load hits all of them)."""
    best = {name: float("inf") for name in fns}
    results = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, results


def time_searches(bank: torch.Tensor, queries: torch.Tensor, k: int = 50,
                  repeat: int = 3) -> list[dict[str, Any]]:
    """One row per dtype (float32, float64): seconds of both searches, their ratio and their
    differences (see the module docstring)."""
    rows = []
    for dtype in (torch.float32, torch.float64):
        b = normalize_features(bank.to(dtype))
        q = queries.to(dtype)
        exact = exact_knn_score(q, b, k)
        times, out = _alternating_best({
            "previous": lambda b=b, q=q: previous_knn_score(q, b, k),
            "current": lambda b=b, q=q: knn_score(q, b, k, normalized_bank=True)}, repeat)
        t_old, t_new, old, new = times["previous"], times["current"], out["previous"], \
            out["current"]
        rows.append({
            "dtype": str(dtype).replace("torch.", ""),
            "previous s": t_old, "current s": t_new, "ratio": t_old / t_new,
            "rows differing": int((old != new).sum()),
            "max |previous - current|": float((old - new).abs().max()),
            "previous vs exact": float((old - exact).abs().max()),
            "current vs exact": float((new - exact).abs().max()),
        })
    return rows


def _synthetic(n_bank: int, n_query: int, dim: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(16, dim, generator=g)
    mix[:, : dim // 4] = 0  # dead units

    def draw(n):
        return (torch.randn(n, 16, generator=g) @ mix + 0.1 * torch.randn(n, dim, generator=g)
                ).relu()

    return draw(n_bank), draw(n_query)


def _model_features(checkpoint: str, in_data: str, root, device: str):
    from dunno.checkpoints import load_model
    from dunno.data import load_dataset
    from uncertainty.ood import extract_outputs

    model = load_model(checkpoint, device=device)
    fit = extract_outputs(model, load_dataset(in_data, "train", root), needs=("features",))
    test = extract_outputs(model, load_dataset(in_data, "test", root), needs=("features",))
    return fit.features.cpu(), test.features.cpu()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """``python benchmarks/bench_knn_search.py [--checkpoint CKPT --in mnist]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a classifier checkpoint")
    parser.add_argument("--in", dest="in_data", default="mnist", help="its training data")
    parser.add_argument("--bank", type=int, default=55000, help="synthetic bank rows")
    parser.add_argument("--queries", type=int, default=10000, help="synthetic queries")
    parser.add_argument("--dim", type=int, default=84, help="synthetic feature dimension")
    parser.add_argument("--k", type=int, default=50, help="neighbour")
    parser.add_argument("--repeat", type=int, default=3, help="timings per search (best kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic features")
    parser.add_argument("--device", default="cpu", help="device of a checkpoint's forward pass")
    parser.add_argument("--data-dir", default=None, help="data directory")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.checkpoint is None:
        bank, queries = _synthetic(args.bank, args.queries, args.dim, args.seed)
    else:
        bank, queries = _model_features(args.checkpoint, args.in_data, args.data_dir,
                                        args.device)
    rows = time_searches(bank, queries, args.k, args.repeat)
    print(f"bank {tuple(bank.shape)}, queries {tuple(queries.shape)}, k={args.k}, "
          f"threads={torch.get_num_threads()}")
    print(format_table(rows, digits=3))
    if args.json:
        write_json(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
