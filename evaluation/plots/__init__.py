"""Figures for the evaluation suite: reliability diagrams, ROC / PR curves, OOD score
histograms, risk–coverage curves, regression predictive bands, image grids and 2-D density
heat maps.

Every function returns a :class:`matplotlib.figure.Figure` built directly (no ``pyplot``, so no
global figure state and nothing to close), and saves it when given ``path=`` (``.png``,
``.svg`` or ``.pdf``, chosen by the suffix; :func:`save_figure` writes it atomically and
refuses any other suffix with a ValueError). Titles, axis labels and legends carry the metric
values. matplotlib is imported inside the functions only: importing this package does not import it.

Modules (one kind of figure each; every name is exported here):
    reliability  reliability_diagram, reliability_diagram_from_table
    ood          roc_pr_curves, ood_score_histogram
    selective    risk_coverage_plot
    regression   regression_bands
    images       image_grid
    density      density_heatmap
    training     plot_training_history
"""

from ._figure import FIGURE_SUFFIXES, check_figure_path, save_figure
from .density import density_heatmap
from .images import image_grid
from .ood import ood_score_histogram, roc_pr_curves
from .regression import regression_bands
from .reliability import reliability_diagram, reliability_diagram_from_table
from .selective import risk_coverage_plot
from .training import plot_training_history

__all__ = [
    "FIGURE_SUFFIXES",
    "check_figure_path",
    "save_figure",
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
