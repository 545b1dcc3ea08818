"""OOD-detection figures: ROC and precision–recall curves of several detectors, and score
histograms (higher score = more OOD, :mod:`evaluation.metrics.ood`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from dunno.validation import check_int, check_scores

from ..metrics.ood import ood_metrics, precision_recall_curve, roc_curve
from ._figure import _check_path_early, _finish, _named_pairs, _new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["ood_score_histogram", "roc_pr_curves"]


def roc_pr_curves(
    detectors: Mapping[str, tuple], *, title: str = "OOD detection", path=None
) -> Figure:
    """ROC and precision–recall (OOD positive) curves of several detectors on one figure.

    Args:
        detectors: mapping ``name -> (scores_in, scores_out)`` (higher score = more OOD; see
            :mod:`evaluation.metrics.ood`).
        title: figure title.
        path: optional ``.png`` / ``.svg`` / ``.pdf`` file to save to.

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
        ax_roc.plot(fpr, tpr, label=f"{name} (AUROC {100 * metrics['auroc']:.2f}%, "
                    f"FPR@95 {100 * metrics['fpr_at_95_tpr']:.2f}%)")
        ax_pr.step(recall, precision, where="post", label=f"{name} (AUPR-Out "
                   f"{100 * metrics['aupr_out']:.2f}%)")
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
        path: optional ``.png`` / ``.svg`` / ``.pdf`` file to save to.
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
    ax.set_title(f"{title}: AUROC {100 * metrics['auroc']:.2f}%, FPR@95TPR "
                 f"{100 * metrics['fpr_at_95_tpr']:.2f}%")
    ax.legend(loc="upper right", fontsize="small")
    return _finish(fig, path)
