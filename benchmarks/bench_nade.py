"""NADE scoring speed: the one-pass O(HD) likelihood against the naive D passes (one hidden
layer per conditional, O(HD^2)), on the same model and images in the same run; the training
and scoring throughput of every autoregressive model; and NADE's learning curve beside a
reference ReLU NADE written here.

    python benchmarks/bench_nade.py                      # NADE-500 on 28x28, batch 100
    python benchmarks/bench_nade.py --threads 1 --models # + images/s of all four models
    python benchmarks/bench_nade.py --threads 1 --train-epochs 2   # learning curves (CPU minutes)

Each timing is the best of ``--repeats`` runs under ``torch.no_grad()`` (training steps:
forward, backward and an Adam step), after one warm-up call; the scoring comparison reports
the wall clock and this process's CPU time (less sensitive to other jobs on the machine).
``--threads 1`` is what the density benchmark runs used. Images are random binary 28x28
images with the pixel density of MNIST (13% ones). The one pass without gradients shares the
hidden states between the runs of zeros (``generative.autoregressive._nade_states``), so its
time depends on the number of ones per image, not on where they are; the naive passes do not
depend on the values. The two passes alternate within each repeat, so that a busy machine
slows both.

**Learning curves** (``--train-epochs E``): the default NADE (ReLU), the NADE with
``activation="sigmoid"`` and :class:`ReferenceReLUNADE` -- a plain ReLU NADE with Kaiming
initialisation written independently of the library (the classic loop over the dimensions)
-- are trained with the same loop on the fixed binarised MNIST
training set (``mnist-binary``, 50 000 images, from ``$DUNNO_DATA``): Adam 1e-3, batch 128,
the same seeded shuffling for all; after every epoch the mean test NLL (nats) of the 10 000
test images is printed with the cumulative training seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.reporting import format_table  # noqa: E402
from generative.autoregressive import NADE, create  # noqa: E402

__all__ = ["ReferenceReLUNADE", "learning_curves", "main", "model_throughput",
           "nade_one_pass_vs_naive"]

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
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _images(n: int, shape=(1, 28, 28), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g) < 0.13).float()


def _timed_cpu(fn) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def nade_one_pass_vs_naive(hidden: int = 500, batch: int = 100, repeats: int = 3,
                           activation: str = "relu") -> dict:
    """Seconds per batch of both ways of computing NADE's exact log-likelihood (best of
    ``repeats``, the two alternating; wall clock and this process's CPU time), the speed
    ratios, images/s and the largest difference of the two results (nats)."""
    torch.manual_seed(0)
    model = NADE((1, 28, 28), hidden=hidden, activation=activation).eval()
    x = _images(batch)
    one_times, naive_times = [], []
    with torch.no_grad():
        one = model.log_prob(x)  # also the warm-up
        naive = model.log_prob_naive(x)
        for _ in range(repeats):
            one_times.append(_timed_cpu(lambda: model.log_prob(x)))
            naive_times.append(_timed_cpu(lambda: model.log_prob_naive(x)))
            one_times.append(_timed_cpu(lambda: model.log_prob(x)))
    t_one, t_naive = min(t for t, _ in one_times), min(t for t, _ in naive_times)
    c_one, c_naive = min(c for _, c in one_times), min(c for _, c in naive_times)
    return {
        "hidden": hidden, "batch": batch, "activation": activation,
        "one_pass_s": t_one, "naive_s": t_naive, "ratio": t_naive / t_one,
        "one_pass_cpu_s": c_one, "naive_cpu_s": c_naive,
        "cpu_ratio": c_naive / c_one if c_one > 0 else float("nan"),
        "one_pass_images_per_s": batch / t_one, "naive_images_per_s": batch / t_naive,
        "max_abs_diff_nats": float((one - naive).abs().max()),
    }


class ReferenceReLUNADE(nn.Module):
    r"""A plain ReLU NADE, the reference of the learning curves (independent of the library).

    :math:`h_d = \max(0, c + \sum_{j<d} W_{:,j} x_j)`, :math:`p(x_d = 1 \mid x_{<d}) =
    \sigma(b_d + V_{d,:} h_d)`; ``W (H, D)`` and ``V (D, H)`` drawn by
    :func:`torch.nn.init.kaiming_normal_` (fan-in mode, ReLU gain: standard deviations
    :math:`\sqrt{2/D}` and :math:`\sqrt{2/H}`), ``b`` and ``c`` zero. The classic
    implementation: one loop over the :math:`D` dimensions carrying the pre-activation
    :math:`a_{d+1} = a_d + W_{:,d} x_d`. Takes flat ``(N, D)`` 0/1 vectors.
    """

    def __init__(self, num_dims: int, hidden: int) -> None:
        super().__init__()
        self.W = nn.Parameter(nn.init.kaiming_normal_(torch.empty(hidden, num_dims),
                                                      nonlinearity="relu"))  # (H, D)
        self.V = nn.Parameter(nn.init.kaiming_normal_(torch.empty(num_dims, hidden),
                                                      nonlinearity="relu"))  # (D, H)
        self.b = nn.Parameter(torch.zeros(num_dims))  # (D,)
        self.c = nn.Parameter(torch.zeros(hidden))  # (H,)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""Exact :math:`\log p(x)` in nats, ``(N,)``."""
        a = self.c.expand(x.shape[0], -1)  # (N, H): a_1 = c
        logits = []
        for d in range(x.shape[1]):
            logits.append(torch.relu(a) @ self.V[d] + self.b[d])  # (N,)
            a = a + x[:, d:d + 1] * self.W[:, d]  # a_{d+1} = a_d + W_{:, d} x_d
        logits = torch.stack(logits, dim=1)  # (N, D)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)


def _test_nll(log_prob, x: torch.Tensor, batch: int = 100) -> float:
    with torch.no_grad():
        return -float(torch.cat([log_prob(x[i:i + batch]).double()
                                 for i in range(0, len(x), batch)]).mean())


def learning_curves(epochs: int, *, models=("nade", "nade-sigmoid", "reference"),
                    hidden: int = 500, batch_size: int = 128, lr: float = 1e-3,
                    limit: int | None = None, seed: int = 0, root=None,
                    progress: bool = True) -> list[dict]:
    """Train each of ``models`` for ``epochs`` epochs on ``mnist-binary`` (the first ``limit``
    training / test images when given) with one loop (Adam ``lr``, ``batch_size``, the same
    seeded shuffling); rows ``{"model", "epoch", "train_s", "test_nats"}`` per epoch."""
    from dunno.data import load_dataset

    train = load_dataset("mnist-binary", "train", root).x.flatten(1)  # (50000, 784)
    test = load_dataset("mnist-binary", "test", root).x.flatten(1)  # (10000, 784)
    if limit is not None:
        train, test = train[:limit], test[:limit]
    d = train.shape[1]
    rows = []
    for name in models:
        torch.manual_seed(seed)
        if name == "reference":
            model = ReferenceReLUNADE(d, hidden)
            log_prob = model.log_prob
        else:
            activation = "sigmoid" if name == "nade-sigmoid" else "relu"
            model = NADE(d, hidden=hidden, activation=activation)
            log_prob = model.log_prob
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        order = torch.Generator().manual_seed(seed)
        seconds = 0.0
        for epoch in range(1, epochs + 1):
            model.train()
            t0 = time.perf_counter()
            for index in torch.randperm(len(train), generator=order).split(batch_size):
                loss = -log_prob(train[index]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            seconds += time.perf_counter() - t0
            model.eval()
            row = {"model": name, "epoch": epoch, "train_s": seconds,
                   "test_nats": _test_nll(log_prob, test)}
            rows.append(row)
            if progress:
                print(f"  {name:<12} epoch {epoch}: test {row['test_nats']:.2f} nats "
                      f"({seconds:.0f} s training)", flush=True)
    return rows


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
    parser.add_argument("--activation", choices=("relu", "sigmoid"), default="relu",
                        help="NADE activation of the one-pass vs naive timing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--models", action="store_true",
                        help="also measure the throughput of all four models")
    parser.add_argument("--train-epochs", type=int, default=0,
                        help="learning curves of NADE (relu, sigmoid) and the reference")
    parser.add_argument("--train-models", default="nade,nade-sigmoid,reference",
                        help="comma-separated: nade, nade-sigmoid, reference")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="use only the first N training and test images")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.hidden, args.batch, args.repeats = 20, 4, 1
    _warm_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    result = nade_one_pass_vs_naive(args.hidden, args.batch, args.repeats, args.activation)
    print(f"NADE-{args.hidden} ({args.activation}) exact log-likelihood of {args.batch} binary "
          "28x28 images:")
    print(format_table([
        {"method": "one pass (shared states)", "seconds": result["one_pass_s"],
         "cpu seconds": result["one_pass_cpu_s"], "images/s": result["one_pass_images_per_s"]},
        {"method": "naive D passes", "seconds": result["naive_s"],
         "cpu seconds": result["naive_cpu_s"], "images/s": result["naive_images_per_s"]},
    ], digits=4))
    print(f"one pass is {result['ratio']:.0f}x faster ({result['cpu_ratio']:.0f}x in CPU time; "
          f"max |difference| {result['max_abs_diff_nats']:.2e} nats)")
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
    if args.train_epochs > 0:
        names = [m for m in args.train_models.split(",") if m]
        print(f"learning curves, hidden {args.hidden}, Adam 1e-3, batch 128, mnist-binary:")
        curves = learning_curves(args.train_epochs, models=names, hidden=args.hidden,
                                 limit=args.train_limit)
        print(format_table(curves, digits=2))
        out["curves"] = curves
    return out


if __name__ == "__main__":
    main()
