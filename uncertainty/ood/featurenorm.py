r"""Feature norm: OOD inputs excite the penultimate layer less (Dhamija, Günther & Boult,
"Reducing Network Agnostophobia", NeurIPS 2018; Yu et al., "Block Selection Method for Using
Feature Norm in Out-of-distribution Detection", CVPR 2023).

.. math::

    s(x) = -\lVert f(x) \rVert_2

(negated: a small feature norm means more OOD). On its own it is a weak detector for
near-OOD data, but it catches what class-conditional densities miss: noise images drive few
ReLU units, so their features have a norm 2-3x smaller than in-distribution ones yet fall
between the class clusters where a Gaussian density is not small. It is a component of the
default :class:`~uncertainty.ood.combined.Combined` detector.
"""

from __future__ import annotations

import torch

from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import ModelOutputs

__all__ = ["FeatureNorm", "feature_norm_score"]


def feature_norm_score(features: torch.Tensor) -> torch.Tensor:
    r"""Negative Euclidean norm :math:`-\lVert f \rVert_2` of each feature vector.

    Args:
        features: ``(N, F)`` penultimate features.

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    return -features.to(torch.float64).norm(dim=1)


class FeatureNorm(OODDetector):
    """Negative feature-norm detector: :func:`feature_norm_score`. ``fit`` is a no-op."""

    name = "featurenorm"
    reference = "Dhamija et al. 2018, NeurIPS; Yu et al. 2023, CVPR"
    needs = frozenset({"features"})

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return feature_norm_score(outputs.features)
