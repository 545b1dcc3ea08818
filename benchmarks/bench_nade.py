"""NADE scoring speed: the one-pass O(HD) likelihood against the naive D passes (one hidden
layer per conditional, O(HD^2)), on the same model and images in the same run; plus the
training and scoring throughput of every autoregressive model.

    python benchmarks/bench_nade.py                      # NADE-500 on 28x28, batch 100
    python benchmarks/bench_nade.py --threads 1 --models # + images/s of all four models

Each timing is the best of ``--repeats`` runs under ``torch.no_grad()`` (training steps:
forward, backward and an Adam step), after one warm-up call. ``--threads 1`` is what the
density benchmark runs used. Images are random binary 28x28 images with the pixel
density of MNIST (13% ones); the timings do not depend on the values.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.reporting import format_table  # noqa: E402
from generative.autoregressive import NADE, create  # noqa: E402

__all__ = ["main", "model_throughput", "nade_one_pass_vs_naive"]

#: the configurations trained in the benchmark runs (see the density benchmark notes)
BENCH_MODELS = {
    "nade": {"hidden": 500},
    "pixelcnn": {"hidden": 16, "layers": 7},
    "row-lstm": {"hidden": 16, "layers": 4},
    "diagonal-bilstm": {"hidden": 16, "layers": 7},
}


def _warm_allocator() -> None:
    """Allocate and free a 16 MiB tensor once. glibc's malloc serves blocks above its mmap
    threshold (128 KiB at start) with fresh, page-faulting mappings; freeing a larger block
    raises the threshold, so that the timed kernels, not page faults, are measured (for both
    methods alike; a training step has the same effect)."""
    block = torch.empty(16 << 20, dtype=torch.uint8)
    block.fill_(0)
    del block


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _images(n: int, shape=(1, 28, 28), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g) < 0.13).float()


def nade_one_pass_vs_naive(hidden: int = 500, batch: int = 100, repeats: int = 3) -> dict:
    """Seconds per batch of both ways of computing NADE's exact log-likelihood, the speed
    ratio, images/s and the largest difference of the two results (nats)."""
    torch.manual_seed(0)
    model = NADE((1, 28, 28), hidden=hidden).eval()
    x = _images(batch)
    with torch.no_grad():
        one = model.log_prob(x)
        naive = model.log_prob_naive(x)
        t_one = _best(lambda: model.log_prob(x), repeats)
        t_naive = _best(lambda: model.log_prob_naive(x), max(1, repeats - 1))
    return {
        "hidden": hidden, "batch": batch,
        "one_pass_s": t_one, "naive_s": t_naive, "ratio": t_naive / t_one,
        "one_pass_images_per_s": batch / t_one, "naive_images_per_s": batch / t_naive,
        "max_abs_diff_nats": float((one - naive).abs().max()),
    }


def model_throughput(name: str, options: dict, batch: int, repeats: int = 3) -> dict:
    """Training (forward + backward + Adam) and scoring images/s of one model on 28x28."""
    torch.manual_seed(0)
    model = create(name, (1, 28, 28), **options)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = _images(batch)

    def train_step():
        loss = model.loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    train_step()  # warm-up
    t_train = _best(train_step, repeats)
    model.eval()
    with torch.no_grad():
        model.log_prob(x)
        t_score = _best(lambda: model.log_prob(x), repeats)
    return {
        "model": name, "options": options, "batch": batch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_images_per_s": batch / t_train, "score_images_per_s": batch / t_score,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--models", action="store_true",
                        help="also measure the throughput of all four models")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.hidden, args.batch, args.repeats = 20, 4, 1
    _warm_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    result = nade_one_pass_vs_naive(args.hidden, args.batch, args.repeats)
    print(f"NADE-{args.hidden} exact log-likelihood of {args.batch} binary 28x28 images:")
    print(format_table([
        {"method": "one pass (running sum)", "seconds": result["one_pass_s"],
         "images/s": result["one_pass_images_per_s"]},
        {"method": "naive D passes", "seconds": result["naive_s"],
         "images/s": result["naive_images_per_s"]},
    ], digits=4))
    print(f"one pass is {result['ratio']:.0f}x faster (max |difference| "
          f"{result['max_abs_diff_nats']:.2e} nats)")
    out = {"nade": result}
    if args.models:
        rows = []
        for name, options in BENCH_MODELS.items():
            if args.smoke:
                options = {"hidden": 4} if name == "nade" else {"hidden": 4, "layers": 1}
            rows.append(model_throughput(name, options, args.batch, args.repeats))
        print(format_table([{k: r[k] for k in ("model", "parameters", "batch",
                                                "train_images_per_s", "score_images_per_s")}
                            for r in rows], digits=1))
        out["models"] = rows
    return out


if __name__ == "__main__":
    main()
