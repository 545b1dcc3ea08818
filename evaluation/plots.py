"""Figures for the evaluation suite: reliability diagrams, ROC / PR curves, OOD score
histograms, risk–coverage curves, regression predictive bands, image grids and 2-D density
heat maps.

Every function returns a :class:`matplotlib.figure.Figure` built directly (no ``pyplot``, so no
global figure state and nothing to close), and saves it when given ``path=`` (``.png`` or
``.svg``, chosen by the suffix). Titles, axis labels and legends carry the metric values.
matplotlib is imported inside the functions only: importing this module does not import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dunno.validation import (
    check_int,
    check_probability_level,
    check_real,
    check_same_length,
    check_scores,
    to_numpy,
)

from .metrics.calibration import ReliabilityTable, reliability_table
from .metrics.ood import ood_metrics, precision_recall_curve, roc_curve
from .metrics.selective import aurc, risk_coverage_curve

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "density_heatmap",
    "image_grid",
    "ood_score_histogram",
    "plot_training_history",
    "regression_bands",
    "reliability_diagram",
    "reliability_diagram_from_table",
    "risk_coverage_plot",
    "roc_pr_curves",
]

_SUFFIXES = (".png", ".svg")


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        path = Path(path)
        if path.suffix.lower() not in _SUFFIXES:
            raise ValueError(
                f"The 'path' argument must end in .png or .svg; got {str(path)!r}."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=path.suffix.lower()[1:], dpi=120)
    return fig


def _check_path_early(path) -> None:
    if path is not None and Path(path).suffix.lower() not in _SUFFIXES:
        raise ValueError(f"The 'path' argument must end in .png or .svg; got {str(path)!r}.")


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
        path: optional ``.png`` / ``.svg`` file to save to.

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
           linewidth=0.5, label=f"Accuracy (ECE = {ece:.4f})")
    ax.bar(left, conf - acc, bottom=acc, width=width, align="edge", color="tab:red",
           alpha=0.3, edgecolor="tab:red", hatch="//", linewidth=0.5,
           label=f"Gap to confidence (MCE = {mce:.4f})")
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
    hist.axvline(mean_acc, color="tab:blue", linestyle="-", label=f"Accuracy {mean_acc:.3f}")
    hist.set_xlabel("Confidence")
    hist.set_ylabel("Count")
    hist.legend(loc="upper left", fontsize="small")
    return _finish(fig, path)


def _named_pairs(detectors: Mapping, what: str) -> list[tuple[str, object, object]]:
    if not isinstance(detectors, Mapping) or len(detectors) == 0:
        raise ValueError(
            f"The 'detectors' argument must be a non-empty mapping name -> ({what}); "
            f"got {type(detectors).__name__}."
        )
    out = []
    for name, pair in detectors.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(
                f"The 'detectors' argument must map each name to a pair ({what}); "
                f"{name!r} maps to {type(pair).__name__}."
            )
        out.append((str(name), pair[0], pair[1]))
    return out


def roc_pr_curves(
    detectors: Mapping[str, tuple], *, title: str = "OOD detection", path=None
) -> Figure:
    """ROC and precision–recall (OOD positive) curves of several detectors on one figure.

    Args:
        detectors: mapping ``name -> (scores_in, scores_out)`` (higher score = more OOD; see
            :mod:`evaluation.metrics.ood`).
        title: figure title.
        path: optional ``.png`` / ``.svg`` file to save to.

    Returns:
        The figure (two axes: ROC with AUROC in the legend, PR with AUPR-Out in the legend).
    """
    _check_path_early(path)
    pairs = _named_pairs(detectors, "scores_in, scores_out")
    fig = _new_figure(10.0, 4.5)
    ax_roc, ax_pr = fig.subplots(1, 2)
    for name, s_in, s_out in pairs:
        fpr, tpr, _ = roc_curve(s_in, s_out)
        precision, recall, _ = precision_recall_curve(s_in, s_out, positive="out")
        metrics = ood_metrics(s_in, s_out)
        ax_roc.plot(fpr, tpr, label=f"{name} (AUROC {metrics['auroc']:.3f}, "
                    f"FPR@95 {metrics['fpr_at_95_tpr']:.3f})")
        ax_pr.step(recall, precision, where="post", label=f"{name} (AUPR-Out "
                   f"{metrics['aupr_out']:.3f})")
    ax_roc.plot([0, 1], [0, 1], linestyle="--", color="gray", label="Chance")
    ax_roc.set_xlabel("False positive rate (in-distribution flagged)")
    ax_roc.set_ylabel("True positive rate (OOD flagged)")
    ax_roc.set_title("ROC")
    ax_roc.legend(loc="lower right", fontsize="small")
    ax_pr.set_xlabel("Recall (OOD)")
    ax_pr.set_ylabel("Precision (OOD)")
    ax_pr.set_title("Precision–recall, OOD positive")
    ax_pr.set_xlim(0.0, 1.0)
    ax_pr.set_ylim(0.0, 1.02)
    ax_pr.legend(loc="lower left", fontsize="small")
    fig.suptitle(title)
    return _finish(fig, path)


def ood_score_histogram(
    scores_in,
    scores_out,
    *,
    bins: int = 50,
    in_label: str = "In-distribution",
    out_label: str = "OOD",
    title: str = "OOD scores",
    path=None,
) -> Figure:
    """Overlaid density histograms of in-distribution and OOD scores on shared bins, with the
    AUROC and FPR@95TPR in the title (higher score = more OOD).

    Args:
        scores_in: ``(N_in,)`` in-distribution scores.
        scores_out: ``(N_out,)`` OOD scores.
        bins: number of histogram bins over the range of all scores (default 50).
        in_label, out_label: legend entries.
        title: title prefix.
        path: optional ``.png`` / ``.svg`` file to save to.
    """
    _check_path_early(path)
    bins = check_int(bins, "bins", "ood_score_histogram", low=1)
    s_in = check_scores(scores_in, "scores_in")
    s_out = check_scores(scores_out, "scores_out")
    metrics = ood_metrics(s_in, s_out)
    lo = min(s_in.min(), s_out.min())
    hi = max(s_in.max(), s_out.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig = _new_figure(6.0, 4.0)
    ax = fig.subplots()
    ax.hist(s_in, bins=edges, density=True, alpha=0.5, color="tab:blue",
            label=f"{in_label} (n={s_in.shape[0]})")
    ax.hist(s_out, bins=edges, density=True, alpha=0.5, color="tab:red",
            label=f"{out_label} (n={s_out.shape[0]})")
    ax.set_xlabel("Score (higher = more OOD)")
    ax.set_ylabel("Density")
    ax.set_title(f"{title}: AUROC {metrics['auroc']:.3f}, FPR@95TPR {metrics['fpr_at_95_tpr']:.3f}")
    ax.legend(loc="upper right", fontsize="small")
    return _finish(fig, path)


def risk_coverage_plot(
    curves: Mapping[str, tuple], *, title: str = "Risk–coverage", path=None
) -> Figure:
    """Risk–coverage curves of several confidence measures, AURC in the legend.

    Args:
        curves: mapping ``name -> (confidences, losses)`` (see
            :func:`evaluation.metrics.risk_coverage_curve`).
        title: figure title.
        path: optional ``.png`` / ``.svg`` file to save to.
    """
    _check_path_early(path)
    pairs = _named_pairs(curves, "confidences, losses")
    fig = _new_figure(6.0, 4.5)
    ax = fig.subplots()
    for name, conf, losses in pairs:
        curve = risk_coverage_curve(conf, losses)
        area = aurc(conf, losses)
        ax.plot(np.concatenate(([0.0], curve.coverage)), np.concatenate(([curve.risk[0]],
                curve.risk)), drawstyle="steps-pre", label=f"{name} (AURC {area:.4f})")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("Coverage")
    ax.set_ylabel("Selective risk")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small")
    return _finish(fig, path)


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
        path: optional ``.png`` / ``.svg`` file to save to.
    """
    from .metrics.regression import gaussian_interval, interval_coverage

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


def image_grid(
    images,
    *,
    ncols: int = 8,
    value_range: tuple[float, float] = (0.0, 1.0),
    title: str | None = None,
    path=None,
) -> Figure:
    """A grid of images (e.g. samples of a generative model) on a single axes.

    Args:
        images: ``(N, H, W)``, ``(N, 1, H, W)`` or ``(N, 3, H, W)`` array / tensor.
        ncols: images per row (default 8).
        value_range: the values shown as black and white; pixels are mapped linearly from this
            range to [0, 1] and clipped (default (0, 1); use (-1, 1) for tanh outputs).
        title: optional title.
        path: optional ``.png`` / ``.svg`` file to save to.
    """
    _check_path_early(path)
    ncols = check_int(ncols, "ncols", "image_grid", low=1)
    arr = check_real(images, "images", ndim=(3, 4),
                        what="an array of shape (N, H, W) or (N, C, H, W) with C in {1, 3}")
    if arr.ndim == 4:
        if arr.shape[1] not in (1, 3):
            raise ValueError(
                f"The 'images' argument must have 1 or 3 channels; got shape {arr.shape}."
            )
        arr = np.transpose(arr, (0, 2, 3, 1))  # (N, H, W, C)
    else:
        arr = arr[..., None]  # (N, H, W, 1)
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(
            f"The 'value_range' parameter of image_grid must be (low, high) with high > low. "
            f"Got {value_range!r} instead."
        )
    arr = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    n, h, w, c = arr.shape
    cols = min(ncols, n)
    rows = -(-n // cols)
    pad = 1
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c))  # (H', W', C)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top:top + h, left:left + w] = arr[i]
    fig = _new_figure(min(1.0 * cols, 12.0), min(1.0 * rows, 12.0) + (0.4 if title else 0.0))
    ax = fig.subplots()
    if c == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def density_heatmap(
    log_prob_fn: Callable,
    *,
    xlim: tuple[float, float] = (-4.0, 4.0),
    ylim: tuple[float, float] = (-4.0, 4.0),
    resolution: int = 200,
    samples=None,
    log_scale: bool = False,
    title: str = "Density",
    path=None,
) -> Figure:
    """Heat map of a 2-D density on a grid, optionally with data points on top.

    Args:
        log_prob_fn: callable mapping a float32 torch tensor of points ``(M, 2)`` to their
            log-densities ``(M,)`` (tensor or array), e.g. a density model's ``log_prob``. It
            is called under ``torch.no_grad()`` on the CPU, in chunks of at most 65536 points.
        xlim, ylim: the plotted square.
        resolution: grid points per axis (default 200).
        samples: optional ``(S, 2)`` points (e.g. training data or model samples) drawn on top.
        log_scale: colour the log-density instead of the density.
        title: figure title.
        path: optional ``.png`` / ``.svg`` file to save to.
    """
    import torch

    _check_path_early(path)
    if not callable(log_prob_fn):
        raise TypeError("The 'log_prob_fn' argument must be callable: (M, 2) -> (M,).")
    resolution = check_int(resolution, "resolution", "density_heatmap", low=2)
    xs = np.linspace(float(xlim[0]), float(xlim[1]), resolution)
    ys = np.linspace(float(ylim[0]), float(ylim[1]), resolution)
    gx, gy = np.meshgrid(xs, ys)  # (R, R) each
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)  # (R*R, 2)
    chunks = []
    with torch.no_grad():
        for start in range(0, points.shape[0], 65536):
            chunk = torch.from_numpy(points[start:start + 65536])
            out = to_numpy(log_prob_fn(chunk), "log_prob_fn output")
            if out.shape != (chunk.shape[0],):
                raise ValueError(
                    f"The 'log_prob_fn' argument must return shape ({chunk.shape[0]},) for "
                    f"{chunk.shape[0]} points; got {out.shape}."
                )
            chunks.append(out.astype(np.float64))
    log_density = np.concatenate(chunks).reshape(resolution, resolution)  # (R, R)
    if np.isnan(log_density).any() or (log_density == np.inf).any():
        raise ValueError("The 'log_prob_fn' output must not be NaN or +inf.")
    values = log_density if log_scale else np.exp(log_density)
    if log_scale:
        finite = np.isfinite(values)
        floor = values[finite].min() if finite.any() else 0.0
        values = np.where(finite, values, floor)
    fig = _new_figure(5.5, 4.5)
    ax = fig.subplots()
    mesh = ax.pcolormesh(xs, ys, values, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="log density" if log_scale else "density")
    if samples is not None:
        pts = check_real(samples, "samples", ndim=2, what="a 2-D array of shape (S, 2)")
        if pts.shape[1] != 2:
            raise ValueError(f"The 'samples' argument must have shape (S, 2); got {pts.shape}.")
        ax.scatter(pts[:, 0], pts[:, 1], s=4, color="white", edgecolors="black",
                   linewidths=0.2, alpha=0.7, label="samples")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title)
    return _finish(fig, path)



def plot_training_history(history, *, title: str = "Training", path=None) -> Figure:
    """Per-epoch curves of a training run: losses on the left axes, other metrics (accuracy,
    ...) on the right one; the best epoch is marked when known.

    Args:
        history: a ``dunno.training.History`` (anything with an ``epochs`` list) or a sequence
            of per-epoch dicts mapping metric names to floats; ``epoch`` (1-based, else the
            position) gives the x axis and ``seconds`` is ignored. Keys ending in ``loss`` go
            to the loss axes.
        title: figure title.
        path: optional ``.png`` / ``.svg`` file to save to.

    Returns:
        The figure (two axes: losses, other metrics).
    """
    _check_path_early(path)
    epochs = getattr(history, "epochs", history)
    if isinstance(epochs, Mapping) or not isinstance(epochs, Sequence) or len(epochs) == 0:
        raise ValueError(
            "The 'history' argument must be a History or a non-empty sequence of per-epoch "
            f"dicts; got {type(history).__name__}."
        )
    if not all(isinstance(e, Mapping) for e in epochs):
        raise ValueError("The 'history' argument must hold one dict of metrics per epoch.")
    x = [float(e.get("epoch", i + 1)) for i, e in enumerate(epochs)]
    keys: list[str] = []
    for e in epochs:
        keys.extend(k for k in e if k not in ("epoch", "seconds") and k not in keys)
    fig = _new_figure(10.0, 4.0)
    ax_loss, ax_other = fig.subplots(1, 2)
    for key in keys:
        pts = [(xi, float(e[key])) for xi, e in zip(x, epochs, strict=True) if key in e]
        ax = ax_loss if key.endswith("loss") else ax_other
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                label=f"{key} (last {pts[-1][1]:.4g})")
    best = getattr(history, "best_epoch", None)
    for ax, what in ((ax_loss, "Loss"), (ax_other, "Metric")):
        if best is not None:
            ax.axvline(float(best), color="gray", linestyle=":", label=f"best epoch {best}")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(what)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="small")
    ax_loss.set_title("Losses")
    ax_other.set_title("Other metrics")
    fig.suptitle(title)
    return _finish(fig, path)
