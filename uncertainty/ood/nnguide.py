r"""Nearest-neighbour guidance (Park, Jung & Teoh, "Nearest Neighbor Guidance for
Out-of-Distribution Detection", ICCV 2023).

A classifier's confidence is high far from the training data as well as near it; NNGuide
multiplies it by how close the input lies to confident training examples. With the
energy-based confidence :math:`s(x) = \log\sum_c e^{z_c(x)}` (the negative free energy of
:mod:`uncertainty.ood.energy`) and unit-normalised features :math:`\hat f = f / \lVert f\rVert`,
the **guide bank** holds the normalised training features scaled by their confidence,

.. math::

    \mathcal B = \{\, s(x_j)\, \hat f(x_j) \,\}_{j \in S},

for a seeded random subset :math:`S` of the in-distribution training set, and the guidance of
an input is the mean of its :math:`k` largest inner products with the bank,

.. math::

    g(x) = \frac1k \sum_{b \in \mathrm{top}_k(\hat f(x))} \hat f(x)^\top b .

The paper's confidence is :math:`s(x)\,g(x)` (higher = more in-distribution); the OOD score
here is its negative,

.. math::

    \text{score}(x) = -\, s(x)\, g(x) .

Defaults are the authors' code (``roomo7time/nnguide``): :math:`k = 10` and a bank of 1% of
the training set (``bank_fraction=0.01``, ``bankset_ratio`` there), drawn with ``seed``. The
bank keeps :math:`\max(k, \lfloor 0.01\,N \rfloor)` rows (all :math:`N` when fewer), so small
fit sets still give a bank of at least :math:`k`. The search is the exact one of
:func:`uncertainty.ood.knn.top_similarities`. The product assumes positive confidences, as
those of trained classifiers are (:math:`s(x) \ge \max_c z_c(x)`); with a negative
:math:`s(x)` both factors change sign.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dunno.validation import check_float, check_int, check_seed
from uncertainty.ood._base import OODDetector
from uncertainty.ood.knn import normalize_features, top_similarities
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["NNGuide", "nnguide_bank", "nnguide_score"]


def nnguide_bank(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    r"""The guide bank :math:`s(x_j)\,\hat f(x_j)`: ``features (M, F)`` normalised row by
    row and scaled by ``logsumexp(logits (M, C))``. Returns ``(M, F)`` in the features'
    dtype."""
    conf = torch.logsumexp(logits.to(torch.float64), dim=1)  # (M,)
    return normalize_features(features) * conf.to(features.dtype)[:, None]


def nnguide_score(
    features: torch.Tensor, logits: torch.Tensor, bank: torch.Tensor, k: int = 10
) -> torch.Tensor:
    r"""NNGuide OOD score :math:`-s(x)\,g(x)` (see the module docstring).

    Args:
        features: ``(N, F)`` query features (normalised here).
        logits: ``(N, C)`` their logits (for :math:`s(x)`).
        bank: ``(M, F)`` guide bank from :func:`nnguide_bank`, ``M >= k``.
        k: neighbours averaged.

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    dtype = torch.promote_types(features.dtype, bank.dtype)
    queries = normalize_features(features.to(device=bank.device, dtype=dtype))  # (N, F)
    top, _ = top_similarities(queries, bank.to(dtype), k)  # (N, k) float64
    guidance = top.mean(dim=1)  # (N,)
    conf = torch.logsumexp(logits.to(device=bank.device, dtype=torch.float64), dim=1)
    return -(conf * guidance)


class NNGuide(OODDetector):
    """NNGuide detector (Park et al. 2023), see the module docstring.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier (logits, and features from ``model.features`` or ``layer``).
    k : int
        Neighbours averaged in the guidance (default 10, the authors' code).
    bank_fraction : float
        Fraction of the training set kept as the guide bank, in ``(0, 1]`` (default 0.01, the
        authors' ``bankset_ratio``); at least ``k`` rows are kept.
    seed : int
        Seed of the bank subset.
    layer : str or list of str, optional
        Module whose output are the features.

    Attributes
    ----------
    bank_ : Tensor ``(M, F)``, the guide bank (features' dtype); bank_index_ : Tensor ``(M,)``,
    the training rows it was built from.
    """

    name = "nnguide"
    reference = "Park et al. 2023, ICCV"
    needs = frozenset({"logits", "features"})
    fit_needs = frozenset({"logits", "features"})
    _state_names = ("bank_",)

    def __init__(self, model: nn.Module | None = None, *, k: int = 10,
                 bank_fraction: float = 0.01, seed: int = 0,
                 layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.k = k
        self.bank_fraction = bank_fraction
        self.seed = seed

    def _validate_params(self) -> None:
        super()._validate_params()
        owner = type(self).__name__
        check_int(self.k, "k", owner, low=1)
        check_float(self.bank_fraction, "bank_fraction", owner, low=0.0, high=1.0,
                    low_open=True)
        check_seed(self.seed, owner)

    def _fit(self, outputs: ModelOutputs) -> None:
        feats, logits = outputs.features, outputs.logits
        n = len(feats)
        if self.k > n:
            raise ValueError(
                f"The 'k' parameter of {type(self).__name__} must be at most the number of "
                f"training features ({n}). Got {self.k} instead."
            )
        size = min(n, max(self.k, math.floor(self.bank_fraction * n)))
        g = torch.Generator().manual_seed(self.seed)
        index = torch.randperm(n, generator=g)[:size].sort().values
        rows = index.to(feats.device)
        self.bank_ = nnguide_bank(feats[rows], logits[rows.to(logits.device)])
        self.bank_index_ = index

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return nnguide_score(outputs.features, outputs.logits, self.bank_, self.k)
