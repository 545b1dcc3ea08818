"""Selective prediction: risk–coverage curves of several confidence measures
(:mod:`evaluation.metrics.selective`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..metrics.selective import aurc, risk_coverage_curve
from ._figure import _check_path_early, _finish, _named_pairs, _new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["risk_coverage_plot"]


def risk_coverage_plot(
    curves: Mapping[str, tuple], *, title: str = "Risk–coverage", path=None
) -> Figure:
    """Risk–coverage curves of several confidence measures, AURC in the legend.

    Args:
        curves: mapping ``name -> (confidences, losses)`` (see
            :func:`evaluation.metrics.risk_coverage_curve`).
        title: figure title.
        path: optional ``.png`` / ``.svg`` / ``.pdf`` file to save to.
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
