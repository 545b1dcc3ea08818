"""Regression: the predictive mean and central Gaussian bands of a 1-D model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from dunno.validation import check_probability_level, check_same_length, check_scores

from ._figure import _check_path_early, _finish, _new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["regression_bands"]


def regression_bands(
    x,
    mean,
    variance,
    *,
    targets=None,
    levels: Sequence[float] = (0.5, 0.95),
    title: str = "Predictive distribution",
    path=None,
) -> Figure:
    """Predictive mean and central Gaussian bands of a 1-D regression model.

    Args:
        x: ``(N,)`` inputs (sorted for drawing).
        mean: ``(N,)`` predictive means.
        variance: ``(N,)`` predictive variances (> 0).
        targets: optional ``(N,)`` observed values, drawn as points; the legend then gives the
            observed coverage of each band.
        levels: band levels in (0, 1) (default 50% and 95%).
        title: figure title.
        path: optional ``.png`` / ``.svg`` / ``.pdf`` file to save to.
    """
    from ..metrics.regression import gaussian_interval, interval_coverage

    _check_path_early(path)
    xs = check_scores(x, "x")
    mu = check_scores(mean, "mean")
    var = check_scores(variance, "variance")
    check_same_length(mu.shape[0], xs.shape[0], "mean", "x")
    check_same_length(var.shape[0], xs.shape[0], "variance", "x")
    y = None
    if targets is not None:
        y = check_scores(targets, "targets")
        check_same_length(y.shape[0], xs.shape[0], "targets", "x")
    order = np.argsort(xs, kind="stable")
    fig = _new_figure(7.0, 4.5)
    ax = fig.subplots()
    for i, level in enumerate(sorted(levels, reverse=True)):
        level = check_probability_level(level, "levels", "regression_bands")
        lower, upper = gaussian_interval(mu, var, level)
        label = f"{level:.0%} interval"
        if y is not None:
            label += f" (coverage {interval_coverage(lower, upper, y):.1%})"
        ax.fill_between(xs[order], lower[order], upper[order], color="tab:blue",
                        alpha=0.15 + 0.15 * i, linewidth=0, label=label)
    ax.plot(xs[order], mu[order], color="tab:blue", label="Mean")
    if y is not None:
        ax.scatter(xs, y, s=6, color="black", alpha=0.6, label="Targets")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    return _finish(fig, path)
