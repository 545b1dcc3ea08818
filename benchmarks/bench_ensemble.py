"""Speed of predictive-uncertainty inference, same run, same inputs:

* deep-ensemble inference with ``torch.func.vmap`` over stacked member parameters vs a Python
  loop over the members (``DeepEnsemble.predict_members(vectorized=True/False)``), and the
  default path (``auto``: the one the timing probe at the end of ``fit`` chose, see
  ``uncertainty.predictive.ensemble``);
* deep-ensemble training, all members stacked and updated by one vmapped step vs one fit
  loop per member (``DeepEnsembleRegressor(vectorize=True/False)``);
* MC-Dropout ``mode="fast"`` (trunk once, sample only the layers after the first dropout) vs
  ``mode="full"`` (``T`` whole passes).

    python benchmarks/bench_ensemble.py              # default sizes, about a minute
    python benchmarks/bench_ensemble.py --quick      # seconds

Each row reports the best and median wall time of ``--repeat`` runs, the speed ratio against
the baseline of its group (the loop / the full mode; > 1 means faster than the baseline), and
the largest absolute difference between the two outputs (vmap vs loop: float rounding;
fast vs full: 0 with the same seed, since both draw the same random numbers in the same order;
training: not compared, the members see different mini-batch orders).
The members are trained for one step on up to 1024 rows (the probe times both paths on them;
timings do not depend on the weights). ``--threads`` defaults to 1: these models are small
and on a shared CPU extra threads mostly add contention. After the table, one line per
inference workload gives the same-run ratios loop / vmap and loop / auto.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.nets import create  # noqa: E402
from dunno.reporting import format_table  # noqa: E402
from uncertainty.predictive import DeepEnsemble, MCDropout  # noqa: E402
from uncertainty.predictive._mlp import mlp  # noqa: E402

__all__ = ["main"]


def _time(fn, repeat: int):
    fn()  # warm-up
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return value, min(times), statistics.median(times)


def _fitted_ensemble(model_fn, members: int, x: torch.Tensor, task: str, y: torch.Tensor):
    """An ensemble trained for one epoch on ``x`` (inference timing needs fitted state; the
    inference probe at the end of ``fit`` times both paths on these rows)."""
    return DeepEnsemble(model_fn, members, task=task, epochs=1, batch_size=len(x)).fit(x, y)


def ensemble_rows(quick: bool, repeat: int) -> list[dict]:
    workloads = [
        # name, model_fn, members, x (N, ...), task
        ("MLP 8-50-2 (UCI size)", lambda: mlp(8, (50,), 2), 5, torch.randn(1000, 8),
         "regression"),
        ("MLP 8-50-2 (UCI size)", lambda: mlp(8, (50,), 2), 100, torch.randn(1000, 8),
         "regression"),
        ("MLP 32-256-256-256-20", lambda: mlp(32, (256, 256, 256), 20), 10,
         torch.randn(512 if quick else 4096, 32), "classification"),
        ("LeNet-5 1x28x28", lambda: create("lenet5", 1, 10, input_size=28), 5,
         torch.randn(64 if quick else 512, 1, 28, 28), "classification"),
    ]
    rows = []
    for name, model_fn, members, x, task in workloads:
        torch.manual_seed(0)
        fit_rows = min(1024, len(x))
        y = (torch.randn(fit_rows, 1) if task == "regression"
             else torch.arange(fit_rows) % (20 if "MLP" in name else 10))
        est = _fitted_ensemble(model_fn, members, x[:fit_rows], task, y)
        loop, t_loop, m_loop = _time(lambda e=est, x=x: e.predict_members(x, vectorized=False),
                                     repeat)
        vec, t_vec, m_vec = _time(lambda e=est, x=x: e.predict_members(x, vectorized=True),
                                  repeat)
        auto, t_auto, m_auto = _time(lambda e=est, x=x: e.predict_members(x), repeat)
        chosen = "vmap" if est.inference_vectorized_ else "loop"
        rows.append({"workload": f"ensemble M={members}: {name}, N={len(x)}",
                     "method": "loop", "best_s": t_loop, "median_s": m_loop, "speedup": 1.0,
                     "max_abs_diff": 0.0})
        rows.append({"workload": "", "method": "vmap", "best_s": t_vec, "median_s": m_vec,
                     "speedup": t_loop / t_vec, "max_abs_diff": float((loop - vec).abs().max())})
        rows.append({"workload": "", "method": f"auto ({chosen})", "best_s": t_auto,
                     "median_s": m_auto, "speedup": t_loop / t_auto,
                     "max_abs_diff": float((loop - auto).abs().max())})
    return rows


def training_rows(quick: bool, repeat: int) -> list[dict]:
    """Training an ensemble of UCI-size MLPs (Boston: 455 x 13, 40 epochs of batch 100):
    members stacked and trained by one vmapped step vs one fit loop per member."""
    from uncertainty.predictive import DeepEnsembleRegressor

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(455, 13, generator=g), torch.randn(455, 1, generator=g)
    epochs = 5 if quick else 40
    rows = []
    for members in (5, 20):
        def fit(vectorize, members=members):
            return DeepEnsembleRegressor(50, members, epochs=epochs, vectorize=vectorize,
                                         adversarial=True).fit(x, y)

        loop, t_loop, m_loop = _time(lambda: fit(False), max(1, repeat // 2))
        vec, t_vec, m_vec = _time(lambda: fit(True), max(1, repeat // 2))
        assert vec.vectorized_ and not loop.vectorized_
        rows.append({"workload": f"ensemble training M={members}: MLP 13-50-2, N=455, "
                                 f"{epochs} epochs, FGSM", "method": "loop",
                     "best_s": t_loop, "median_s": m_loop, "speedup": 1.0,
                     "max_abs_diff": float("nan")})
        rows.append({"workload": "", "method": "vmap", "best_s": t_vec, "median_s": m_vec,
                     "speedup": t_loop / t_vec, "max_abs_diff": float("nan")})
    return rows


def mc_dropout_rows(quick: bool, repeat: int) -> list[dict]:
    t = 20 if quick else 100
    workloads = [
        ("LeNet-5 1x28x28, dropout before head", create("lenet5", 1, 10, input_size=28,
                                                          dropout=0.5),
         torch.randn(64 if quick else 256, 1, 28, 28)),
        ("ResNet 1x28x28, dropout before head", create("resnet", 1, 10, input_size=28,
                                                         dropout=0.5),
         torch.randn(16 if quick else 64, 1, 28, 28)),
        ("MLP 32-256-256-[dropout]-10", nn.Sequential(
            nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(256, 10)), torch.randn(512 if quick else 4096, 32)),
    ]
    rows = []
    for name, model, x in workloads:
        model.eval()

        def run(mode, model=model, x=x):
            torch.manual_seed(0)
            return MCDropout(model, t, mode=mode).sample(x)

        full, t_full, m_full = _time(lambda: run("full"), repeat)
        fast, t_fast, m_fast = _time(lambda: run("fast"), repeat)
        rows.append({"workload": f"MC-Dropout T={t}: {name}, N={len(x)}", "method": "full",
                     "best_s": t_full, "median_s": m_full, "speedup": 1.0,
                     "max_abs_diff": 0.0})
        rows.append({"workload": "", "method": "fast", "best_s": t_fast, "median_s": m_fast,
                     "speedup": t_full / t_fast, "max_abs_diff": float((full - fast).abs().max())})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per method")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", choices=("ensemble", "mc-dropout"), default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    if args.only in (None, "ensemble"):
        rows += ensemble_rows(args.quick, args.repeat)
        rows += training_rows(args.quick, args.repeat)
    if args.only in (None, "mc-dropout"):
        rows += mc_dropout_rows(args.quick, args.repeat)
    print(format_table(rows, ["workload", "method", "best_s", "median_s", "speedup",
                              "max_abs_diff"]))
    for i, row in enumerate(rows):
        if row["method"] == "loop" and row["workload"].startswith("ensemble M="):
            vec, auto = rows[i + 1], rows[i + 2]
            print(f"same run, {row['workload']}: loop/vmap {vec['speedup']:.2f}x, "
                  f"loop/{auto['method']} {auto['speedup']:.2f}x")
    print(f"(torch {torch.__version__}, {args.threads} thread(s), best of {args.repeat}; "
          "speedup = baseline time / this time)")
    return rows


if __name__ == "__main__":
    main()
