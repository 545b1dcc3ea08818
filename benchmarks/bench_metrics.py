"""Speed, memory and exactness of dunno's metrics against their peers, measured in one run.

    python benchmarks/bench_metrics.py                 # 10 million scores / rows (default)
    python benchmarks/bench_metrics.py --n 1000000     # a quick check

Two workloads:

* **AUROC** on ``n`` scores (half in-distribution, half OOD) on a grid of 1001 values in
  [0, 1], so there are many ties. Peers: scikit-learn ``roc_auc_score`` and, if importable,
  torchmetrics ``binary_auroc``. The reference is the exact Mann–Whitney value computed from
  integer histograms with Python integers and :class:`fractions.Fraction`.
* **ECE** (15 equal-width bins, L1, top label) on ``n x C`` float32 probabilities. Peer:
  torchmetrics ``multiclass_calibration_error`` if importable; a direct NumPy implementation
  (loop over bins with masks, float64) is both the reference and a baseline.

For every implementation the table gives the best wall time over ``--repeat`` runs, the ratio to
ours (> 1: slower than ours), the peak memory of one more call above the level before it (the
larger of tracemalloc's peak, which sees numpy allocations, and the growth of the peak resident
set size via Linux ``/proc/self/clear_refs``, which also sees torch's) and the absolute
difference from the reference.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import sys
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics import auroc, expected_calibration_error  # noqa: E402

__all__ = ["main"]


# ------------------------------------------------------------------------------ measurement


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        return _rss_kib("VmHWM") is not None
    except OSError:
        return False


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS so that RSS growth reflects new allocations."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_mib(fn) -> float:
    """Peak memory of one call above the level before it: the larger of tracemalloc's peak
    (sees numpy and Python allocations) and the growth of the peak RSS (sees everything,
    torch included; Linux only)."""
    gc.collect()
    _malloc_trim()
    use_rss = _reset_peak_rss()
    start = _rss_kib("VmRSS") or 0
    tracemalloc.start()
    try:
        fn()
        traced = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    rss = ((_rss_kib("VmHWM") or 0) - start) / 1024.0 if use_rss else 0.0
    return max(traced, rss)


def _measure(fn, repeat: int):
    """(best seconds over ``repeat`` untraced calls, peak MiB of one more call, value)."""
    best = math.inf
    value = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, _peak_mib(fn), float(value)


def _table(title: str, rows: list[dict], reference: float) -> str:
    ours = next(r["seconds"] for r in rows if r.get("ours"))
    lines = [title, f"  {'implementation':44s} {'seconds':>9s} {'vs ours':>8s} "
                    f"{'peak MiB':>9s} {'|value - ref|':>14s}"]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"  {r['name']:44s} {'skipped: ' + r['skipped']}")
            continue
        diff = "" if r.get("no_value") else f"{abs(r['value'] - reference):14.3g}"
        lines.append(
            f"  {r['name']:44s} {r['seconds']:9.3f} {r['seconds'] / ours:8.2f} "
            f"{r['peak_mib']:9.1f} {diff}"
        )
    return "\n".join(lines)


def _run(name: str, fn, repeat: int, ours: bool = False, no_value: bool = False) -> dict:
    seconds, peak, value = _measure(fn, repeat)
    return {"name": name, "seconds": seconds, "peak_mib": peak, "value": value, "ours": ours,
            "no_value": no_value}


def _torchmetrics():
    try:
        import torchmetrics.functional.classification as tmc
    except ImportError:
        return None
    return tmc


# ------------------------------------------------------------------------------ workloads


def bench_auroc(n: int, repeat: int, seed: int, with_sklearn: bool = True) -> str:
    rng = np.random.default_rng(seed)
    n_in, n_out = n // 2, n - n // 2
    grid = 1000
    k_in = np.clip(np.rint(rng.normal(400, 150, n_in)), 0, grid).astype(np.int64)
    k_out = np.clip(np.rint(rng.normal(500, 150, n_out)), 0, grid).astype(np.int64)
    scores_in = k_in / grid  # (N_in,) float64, 1001 distinct values: heavy ties
    scores_out = k_out / grid

    # Exact reference: U = sum_v c_out(v) * (#in < v + c_in(v) / 2), in integers.
    c_in = np.bincount(k_in, minlength=grid + 1)
    c_out = np.bincount(k_out, minlength=grid + 1)
    below = np.concatenate(([0], np.cumsum(c_in)[:-1]))
    twice_u = sum(
        int(a) * (2 * int(b) + int(c)) for a, b, c in zip(c_out, below, c_in, strict=True)
    )
    reference = float(Fraction(twice_u, 2 * n_in * n_out))

    rows = [_run("evaluation.metrics.auroc", lambda: auroc(scores_in, scores_out), repeat,
                 ours=True)]
    scores = np.concatenate([scores_in, scores_out])
    rows.append(_run("np.sort of all scores (for scale, no AUROC)",
                     lambda: np.sort(scores)[0], repeat, no_value=True))
    if with_sklearn:
        from sklearn.metrics import roc_auc_score

        y = np.concatenate([np.zeros(n_in), np.ones(n_out)])
        rows.append(_run("sklearn roc_auc_score", lambda: roc_auc_score(y, scores), repeat))
    tmc = _torchmetrics()
    if tmc is None:
        rows.append({"name": "torchmetrics binary_auroc", "skipped": "torchmetrics not installed"})
    else:
        import torch

        preds = torch.from_numpy(scores)  # float64, already in [0, 1]: no sigmoid applied
        target = torch.from_numpy(np.concatenate([np.zeros(n_in, np.int64),
                                                  np.ones(n_out, np.int64)]))
        rows.append(_run("torchmetrics binary_auroc (float64 input)",
                         lambda: tmc.binary_auroc(preds, target).item(), repeat))
    title = (f"AUROC: {n:,} scores ({n_in:,} in / {n_out:,} out), {grid + 1:,} distinct values "
             f"(ties); reference = exact rational value")
    return _table(title, rows, reference)


def _ece_reference(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """Direct float64 NumPy ECE: bins (lo, hi], 0 in the first bin, 1.0 in the last."""
    conf = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        mask = (conf > edges[b]) & (conf <= edges[b + 1])
        if b == 0:
            mask |= conf == 0.0
        count = int(mask.sum())
        if count:
            total += count / conf.shape[0] * abs(correct[mask].mean() - conf[mask].mean())
    return total


def bench_ece(n: int, num_classes: int, n_bins: int, repeat: int, seed: int) -> str:
    import torch

    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, num_classes, generator=gen) * 2.0  # (N, C)
    probs_t = torch.softmax(logits, dim=1)  # (N, C) float32
    del logits
    pred = probs_t.argmax(dim=1)
    noise = torch.randint(0, num_classes, (n,), generator=gen)
    keep = torch.rand(n, generator=gen) < 0.7
    labels_t = torch.where(keep, pred, noise)  # ~73% accurate, over-confident model
    probs = probs_t.numpy()
    labels = labels_t.numpy()

    rows = [_run("evaluation.metrics.expected_calibration_error",
                 lambda: expected_calibration_error(probs, labels, n_bins=n_bins), repeat,
                 ours=True)]
    reference = _ece_reference(probs, labels, n_bins)
    rows.append(_run("NumPy direct, loop over bins (reference)",
                     lambda: _ece_reference(probs, labels, n_bins), repeat))
    tmc = _torchmetrics()
    if tmc is None:
        rows.append({"name": "torchmetrics multiclass_calibration_error",
                     "skipped": "torchmetrics not installed"})
    else:
        rows.append(_run("torchmetrics multiclass_calibration_error",
                         lambda: tmc.multiclass_calibration_error(
                             probs_t, labels_t, num_classes=num_classes, n_bins=n_bins,
                             norm="l1").item(), repeat))
    title = (f"ECE: {n:,} x {num_classes} float32 probabilities, {n_bins} equal-width bins; "
             "reference = direct float64 NumPy")
    return _table(title, rows, reference)


# ------------------------------------------------------------------------------ entry point


def _versions() -> str:
    import sklearn
    import torch

    tmc = _torchmetrics()
    tm = "not installed"
    if tmc is not None:
        import torchmetrics

        tm = torchmetrics.__version__
    return (f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}"
            f" ({torch.get_num_threads()} threads), scikit-learn {sklearn.__version__}, "
            f"torchmetrics {tm}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000,
                        help="number of scores (AUROC) and of rows (ECE); default 10,000,000")
    parser.add_argument("--classes", type=int, default=10, help="classes for the ECE (10)")
    parser.add_argument("--bins", type=int, default=15, help="ECE bins (15)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per implementation (3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("auroc", "ece"), default=None,
                        help="run one workload only")
    args = parser.parse_args(argv)
    if args.n < 2 or args.repeat < 1 or args.classes < 2 or args.bins < 1:
        parser.error("need --n >= 2, --repeat >= 1, --classes >= 2 and --bins >= 1")
    print(f"dunno metrics benchmark: {_versions()}")
    print(f"machine: {platform.machine()}, {platform.system()}; best of {args.repeat} runs")
    if args.only in (None, "auroc"):
        print()
        print(bench_auroc(args.n, args.repeat, args.seed))
    if args.only in (None, "ece"):
        print()
        print(bench_ece(args.n, args.classes, args.bins, args.repeat, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
