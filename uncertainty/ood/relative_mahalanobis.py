r"""Relative Mahalanobis distance (Ren, Fort, Liu, Roy, Padhy & Lakshminarayanan, "A Simple Fix
to Mahalanobis Distance for Improving Near-OOD Detection", arXiv:2106.09022, 2021).

The Mahalanobis distance of Lee et al. (:mod:`uncertainty.ood.mahalanobis`) to class
:math:`k`, :math:`\mathrm{MD}_k(x) = (f(x) - \mu_k)^\top \Sigma^{+} (f(x) - \mu_k)` with the
tied covariance :math:`\Sigma`, is measured relative to a **background** Gaussian fitted to
all in-distribution training features, labels ignored:

.. math::

    \mu_0 = \frac1N\sum_i f(x_i), \qquad
    \Sigma_0 = \frac1N\sum_i (f(x_i) - \mu_0)(f(x_i) - \mu_0)^\top, \qquad
    \mathrm{MD}_0(x) = (f(x) - \mu_0)^\top \Sigma_0^{+} (f(x) - \mu_0),

.. math::

    \mathrm{RMD}_k(x) = \mathrm{MD}_k(x) - \mathrm{MD}_0(x), \qquad
    s(x) = \min_k \mathrm{RMD}_k(x) = \min_k \mathrm{MD}_k(x) - \mathrm{MD}_0(x).

The paper's confidence is :math:`-\min_k \mathrm{RMD}_k(x)`; the score here is its negative
(higher = more OOD). Directions common to all classes (image statistics shared by in- and
out-of-distribution data) cancel, which is what helps near-OOD inputs. Both covariances are
inverted with the pseudo-inverse of :func:`~uncertainty.ood._gaussian.pinv_whitening` (Lee et
al.'s code), and the class statistics are the Mahalanobis detector's
(:func:`~uncertainty.ood._gaussian.tied_gaussian`). A relative score can be negative.
"""

from __future__ import annotations

import torch
from torch import nn

from uncertainty.ood._base import OODDetector
from uncertainty.ood._gaussian import (
    num_classes_of,
    pinv_whitening,
    projected_sq_distances,
    tied_gaussian,
)
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["RelativeMahalanobis", "relative_mahalanobis_score"]


def relative_mahalanobis_score(
    features: torch.Tensor, means: torch.Tensor, covariance: torch.Tensor,
    background_mean: torch.Tensor, background_covariance: torch.Tensor,
) -> torch.Tensor:
    r""":math:`\min_k \mathrm{MD}_k(f) - \mathrm{MD}_0(f)` with pseudo-inverses (see the module
    docstring).

    Args:
        features: ``(N, F)`` features.
        means: ``(C, F)`` class means; covariance: ``(F, F)`` tied covariance.
        background_mean: ``(F,)``; background_covariance: ``(F, F)``, of all training
            features.

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    means = means.to(torch.float64)
    whitening, _ = pinv_whitening(covariance.to(means.device))
    bg_whitening, _ = pinv_whitening(background_covariance.to(means.device))
    md = projected_sq_distances(features, means, whitening).amin(dim=1)  # (N,)
    md0 = projected_sq_distances(features, background_mean.to(means)[None], bg_whitening)
    return md - md0[:, 0]


class RelativeMahalanobis(OODDetector):
    """Relative Mahalanobis detector (Ren et al. 2021), see the module docstring.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier (features from ``model.features`` or ``layer``).
    layer : str or list of str, optional
        Module whose output are the features.

    Attributes
    ----------
    means_ : Tensor ``(C, F)``; covariance_ : Tensor ``(F, F)``, the tied covariance;
    whitening_ : Tensor ``(F, r)`` with :math:`\\Sigma^{+} = W W^\\top`; background_mean_ :
    Tensor ``(F,)``; background_covariance_ : Tensor ``(F, F)``; background_whitening_ :
    Tensor ``(F, r_0)``.
    """

    name = "relative-mahalanobis"
    fit_needs_labels = True
    reference = "Ren et al. 2021, arXiv:2106.09022"
    needs = frozenset({"features"})
    fit_needs = frozenset({"features"})
    _state_names = ("means_", "whitening_", "background_mean_", "background_whitening_")

    def __init__(self, model: nn.Module | None = None, *, layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)

    def _fit(self, outputs: ModelOutputs) -> None:
        owner = type(self).__name__
        feats, labels = outputs.features, outputs.labels
        fit = tied_gaussian(feats, labels, num_classes_of(outputs.logits, labels, owner), owner)
        # the background Gaussian: one class holding every example
        one = torch.zeros(len(feats), dtype=torch.int64, device=feats.device)
        background = tied_gaussian(feats, one, 1, owner)
        self.means_ = fit["means"]
        self.covariance_ = fit["covariance"]
        self.whitening_ = fit["whitening"]
        self.background_mean_ = background["means"][0]
        self.background_covariance_ = background["covariance"]
        self.background_whitening_ = background["whitening"]

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        feats = outputs.features
        device = feats.device
        md = projected_sq_distances(feats, self.means_.to(device), self.whitening_.to(device))
        md0 = projected_sq_distances(feats, self.background_mean_.to(device)[None],
                                     self.background_whitening_.to(device))
        return md.amin(dim=1) - md0[:, 0]
