"""Predictive uncertainty on the 1-D cubic toy of Hernández-Lobato & Adams (2015).

Twenty training points ``x ~ U(-4, 4)``, ``y = x^3 + N(0, 3^2)``; every regression method of
:mod:`uncertainty.predictive` is fitted (on standardised data) and its predictive mean and
±2 standard-deviation band is drawn on ``x`` in ``[-6, 6]``. Away from the data the epistemic
part of the variance should grow; the script prints, per method, the ratio of the mean
epistemic standard deviation outside ``[-4, 4]`` to the one inside.

    python examples/regression_uncertainty.py --out runs/cubic          # about a minute
    python examples/regression_uncertainty.py --smoke --out /tmp/cubic  # seconds

Writes ``cubic_<method>.png`` per method and ``cubic_bands.png`` (all panels).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from dunno.data import load_dataset
from evaluation.plots import regression_bands
from uncertainty.predictive import available_regressors, make_regressor

# +-2 standard deviations of a Gaussian
TWO_SIGMA = math.erf(2 / math.sqrt(2))
NOISE_STD = 3.0


def method_params(name: str, y_std: float, smoke: bool) -> dict:
    """Budgets for 20 training points (one mini-batch per step)."""
    if name == "mc-dropout":
        # precision of the known noise (std 3) in standardised units
        params = {"hidden": 100, "dropout": 0.1, "tau": (y_std / NOISE_STD) ** 2,
                  "epochs": 2000, "batch_size": 20, "lr": 1e-2, "num_samples": 200}
    elif name == "ensemble":
        params = {"hidden": 100, "num_members": 5, "epochs": 1000, "batch_size": 20,
                  "lr": 1e-2, "adversarial": True}
    elif name == "heteroscedastic":
        params = {"hidden": 100, "dropout": 0.1, "epochs": 1000, "batch_size": 20,
                  "lr": 1e-2, "num_samples": 200}
    elif name == "mdn":
        params = {"hidden": 100, "num_components": 3, "epochs": 1000, "batch_size": 20,
                  "lr": 1e-2}
    elif name == "bnn":
        # narrow: with 20 points the mean-field KL of a wide layer swamps the likelihood
        params = {"hidden": 10, "epochs": 3000, "batch_size": 20, "lr": 3e-2,
                  "init_scale": 0.1, "num_samples": 200}
    else:  # pragma: no cover - a method added to the registry without a budget here
        params = {}
    if smoke:
        params["epochs"] = 5
        if "num_samples" in params:
            params["num_samples"] = 10
    return params


def _montage(paths: list[Path], target: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    cols = min(3, len(paths))
    rows = math.ceil(len(paths) / cols)
    fig = Figure(figsize=(5 * cols, 3.3 * rows), layout="constrained")
    for i, axis in enumerate(fig.subplots(rows, cols, squeeze=False).ravel()):
        axis.axis("off")
        if i < len(paths):
            axis.imshow(imread(paths[i]))
    fig.savefig(target, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/cubic", help="output folder")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (for tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(available_regressors()),
                        help="comma-separated registry names")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train = load_dataset("cubic", "train")  # x (20, 1), y (20, 1), original units
    x_mean, x_std = train.x.mean(0), train.x.std(0)
    y_mean, y_std = train.y.mean(0), train.y.std(0)
    x_grid = torch.linspace(-6, 6, 241)[:, None]  # (241, 1)
    inside = x_grid[:, 0].abs() <= 4

    results: dict[str, dict[str, float]] = {}
    panels = []
    for name in [m for m in args.methods.split(",") if m]:
        t0 = time.perf_counter()
        params = method_params(name, float(y_std), args.smoke) | {"seed": args.seed}
        est = make_regressor(name, **params)
        est.fit((train.x - x_mean) / x_std, (train.y - y_mean) / y_std)
        pred = est.predict((x_grid - x_mean) / x_std).scaled(y_mean.double(), y_std.double())
        epistemic = pred.epistemic_var[:, 0].sqrt()
        ratio = float(epistemic[~inside].mean() / epistemic[inside].mean().clamp(min=1e-12))
        test_rmse = float(((pred.mean[:, 0] - x_grid[:, 0].double() ** 3)[inside]).pow(2)
                          .mean().sqrt())
        results[name] = {"epistemic_ratio": ratio, "rmse_in_range": test_rmse,
                         "seconds": time.perf_counter() - t0}
        fig = regression_bands(
            x_grid[:, 0], pred.mean[:, 0], pred.variance[:, 0].clamp(min=1e-12),
            levels=(TWO_SIGMA,),
            title=f"{name}: mean ± 2 std (epistemic std outside/inside {ratio:.1f}x)",
        )
        axis = fig.axes[0]
        axis.plot(x_grid[:, 0], x_grid[:, 0] ** 3, color="tab:gray", linestyle="--",
                  linewidth=1, label="y = x³")
        axis.scatter(train.x[:, 0], train.y[:, 0], s=14, color="black", zorder=3,
                     label="training data")
        axis.axvspan(-6, -4, color="tab:orange", alpha=0.06)
        axis.axvspan(4, 6, color="tab:orange", alpha=0.06)
        axis.set_ylim(-300, 300)
        axis.legend(fontsize="small", loc="upper left")
        path = out / f"cubic_{name}.png"
        fig.savefig(path, dpi=100)
        panels.append(path)
        print(f"{name:<16} epistemic std outside/inside [-4, 4]: {ratio:6.2f}x   "
              f"RMSE vs x^3 on [-4, 4]: {test_rmse:6.2f}   ({results[name]['seconds']:.1f} s)")
    _montage(panels, out / "cubic_bands.png")
    print(f"wrote {out / 'cubic_bands.png'}")
    return results


if __name__ == "__main__":
    main()
