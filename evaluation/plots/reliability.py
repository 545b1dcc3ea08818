"""Reliability diagrams of top-label confidence (from the data or from a precomputed
:class:`~evaluation.metrics.ReliabilityTable`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..metrics.calibration import ReliabilityTable, reliability_table
from ._figure import _check_path_early, _finish, _new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["reliability_diagram", "reliability_diagram_from_table"]


def reliability_diagram(
    probs,
    labels,
    *,
    n_bins: int = 15,
    title: str = "Reliability diagram",
    path=None,
) -> Figure:
    """Reliability diagram of top-label confidence with gap bars, over a confidence histogram.

    Top panel: accuracy per equal-width bin (blue bars), the gap to the bin's mean confidence
    (red hatched bars, from accuracy to confidence), and the diagonal of perfect calibration;
    the legend gives the ECE and MCE. Bottom panel: number of samples per bin, with the mean
    confidence and the accuracy as vertical lines. Binning as in
    :mod:`evaluation.metrics.calibration`; empty bins are not drawn.

    Args:
        probs: ``(N, C)`` class probabilities.
        labels: ``(N,)`` integer labels.
        n_bins: number of equal-width bins (default 15).
        title: figure title.
        path: optional ``.png`` / ``.svg`` / ``.pdf`` file to save to.

    Returns:
        The figure (two axes: reliability, histogram).
    """
    _check_path_early(path)
    table = reliability_table(probs, labels, n_bins=n_bins)
    return reliability_diagram_from_table(table, title=title, path=path)


def reliability_diagram_from_table(
    table: ReliabilityTable, *, title: str = "Reliability diagram", path=None
) -> Figure:
    """:func:`reliability_diagram` from a precomputed :class:`~evaluation.metrics.ReliabilityTable`
    (e.g. ``CalibrationAccumulator.reliability_table()`` after streaming)."""
    _check_path_early(path)
    if not isinstance(table, ReliabilityTable):
        raise TypeError(f"The 'table' argument must be a ReliabilityTable; got {type(table)}.")
    fig = _new_figure(5.0, 6.0)
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    filled = table.counts > 0
    if table.binning == "equal_mass":
        # groups tile [smallest, largest confidence], split half-way between neighbours
        lo, hi = table.lower[filled], table.upper[filled]
        mids = (hi[:-1] + lo[1:]) / 2.0
        left = np.concatenate((lo[:1], mids))
        width = np.maximum(np.concatenate((mids, hi[-1:])) - left, 0.005)
    else:
        left = table.lower[filled]
        width = (table.upper - table.lower)[filled]
    acc = table.accuracy[filled]
    conf = table.mean_confidence[filled]
    ece = table.calibration_error("l1")
    mce = table.calibration_error("max")
    ax.bar(left, acc, width=width, align="edge", color="tab:blue", edgecolor="black",
           linewidth=0.5, label=f"Accuracy (ECE = {100 * ece:.2f}%)")
    ax.bar(left, conf - acc, bottom=acc, width=width, align="edge", color="tab:red",
           alpha=0.3, edgecolor="tab:red", hatch="//", linewidth=0.5,
           label=f"Gap to confidence (MCE = {100 * mce:.2f}%)")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="Perfect calibration")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("Accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    hist.bar(left, table.counts[filled], width=width, align="edge", color="tab:gray",
             edgecolor="black", linewidth=0.5)
    n = max(table.n_samples, 1)
    mean_conf = float(table.confidence_sums.sum()) / n
    mean_acc = float(table.correct_counts.sum()) / n
    hist.axvline(
        mean_conf, color="tab:red", linestyle="--", label=f"Avg. confidence {mean_conf:.3f}"
    )
    hist.axvline(mean_acc, color="tab:blue", linestyle="-", label=f"Accuracy {100 * mean_acc:.2f}%")
    hist.set_xlabel("Confidence")
    hist.set_ylabel("Count")
    hist.legend(loc="upper left", fontsize="small")
    return _finish(fig, path)
