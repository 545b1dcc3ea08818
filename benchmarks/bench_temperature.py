"""Speed of fitting temperature scaling: ours (safeguarded Newton) vs scipy's bounded scalar
minimiser (and netcal, when it is importable), on the same logits in the same run.

    python benchmarks/bench_temperature.py               # 10k x 10 logits, best of 7 runs
    python benchmarks/bench_temperature.py --n 50000 --classes 100

Every method minimises the same mean NLL over log T in [log 1e-2, log 1e4]. The reference
optimum ``T_opt`` is scipy's bounded minimiser run to ``xatol=1e-12``; the table reports
each method's best and median wall time, its speed ratio against scipy with default
options, and ``|T - T_opt|``. scipy is timed with two objectives: numpy
(``scipy.special.logsumexp``) and torch (``log_softmax``), both float64.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dunno.reporting import format_table  # noqa: E402
from uncertainty.calibration import TemperatureScaling, temperature_nll  # noqa: E402

__all__ = ["main"]

BOUNDS = (math.log(1e-2), math.log(1e4))


def make_logits(n: int, classes: int, seed: int, t_star: float = 2.5):
    """Overconfident logits ``(n, classes)`` (float32, like a network's) and labels drawn from
    ``softmax(z / t_star)``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=g) * 5  # (N, C)
    y = torch.multinomial(torch.softmax(z.double() / t_star, 1), 1, generator=g).squeeze(1)
    return z, y


def _scipy_numpy(z: torch.Tensor, y: torch.Tensor, xatol: float = 1e-5) -> float:
    zn, yn = z.double().numpy(), y.numpy()
    z_true = zn[np.arange(len(yn)), yn]

    def nll(log_t):
        b = math.exp(-log_t)
        return float(np.mean(logsumexp(zn * b, axis=1) - z_true * b))

    res = minimize_scalar(nll, bounds=BOUNDS, method="bounded", options={"xatol": xatol})
    return math.exp(res.x)


def _scipy_torch(z: torch.Tensor, y: torch.Tensor) -> float:
    z64 = z.double()
    res = minimize_scalar(lambda t: temperature_nll(z64, y, math.exp(t)), bounds=BOUNDS,
                          method="bounded")
    return math.exp(res.x)


def _ours(z: torch.Tensor, y: torch.Tensor) -> float:
    return TemperatureScaling().fit(z, y).temperature_


def _netcal():
    try:
        from netcal.scaling import TemperatureScaling as NetcalTS  # type: ignore
    except ImportError:
        return None

    def fit(z, y):
        probs = torch.softmax(z.double(), 1).numpy()
        model = NetcalTS()
        model.fit(probs, y.numpy())
        return float(1.0 / np.asarray(model.weights).ravel()[0])

    return fit


def _time(fn, z, y, repeat):
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn(z, y)
        times.append(time.perf_counter() - t0)
    return value, min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="examples (default 10000)")
    parser.add_argument("--classes", type=int, default=10, help="classes (default 10)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: leave torch's setting)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    z, y = make_logits(args.n, args.classes, args.seed)
    t_opt = _scipy_numpy(z, y, xatol=1e-12)
    methods = {"ours (newton)": _ours, "scipy bounded (numpy)": _scipy_numpy,
               "scipy bounded (torch)": _scipy_torch}
    netcal = _netcal()
    if netcal is not None:
        methods["netcal"] = netcal
    for fn in methods.values():  # warm-up: imports, allocator, first-call overheads
        fn(z[:100], y[:100])

    results = {name: _time(fn, z, y, args.repeat) for name, fn in methods.items()}
    baseline = results["scipy bounded (numpy)"][1]
    rows = [
        {"method": name, "best_s": best, "median_s": median, "scipy/this": baseline / best,
         "T": value, "|T - T_opt|": abs(value - t_opt)}
        for name, (value, best, median) in results.items()
    ]
    print(f"temperature scaling on {args.n} x {args.classes} logits "
          f"(torch threads: {torch.get_num_threads()}; netcal: "
          f"{'yes' if netcal else 'not installed'}); T_opt = {t_opt:.10f}")
    print(format_table(rows, digits=6))
    ours, scipy_ = results["ours (newton)"], results["scipy bounded (numpy)"]
    print(f"|T_ours - T_scipy| = {abs(ours[0] - scipy_[0]):.2e}; ours is "
          f"{scipy_[1] / ours[1]:.1f}x faster than scipy (best of {args.repeat})")
    return {"t_opt": t_opt, "rows": rows}


if __name__ == "__main__":
    main()
