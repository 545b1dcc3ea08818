r"""Deep nearest neighbours (Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep
Nearest Neighbors", ICML 2022).

Normalise every feature to unit length, :math:`z = f / \lVert f \rVert_2`, keep the normalised
training features :math:`\{z_j\}` as a bank, and score a test input by the distance to its
:math:`k`-th nearest neighbour in the bank:

.. math::

    s(x) = \lVert z(x) - z_{(k)}(x) \rVert_2 = \sqrt{2 - 2\, z(x)^\top z_{(k)}(x)},

where :math:`z_{(k)}(x)` is the bank element with the :math:`k`-th largest cosine similarity.
The search is exact: chunked matrix products of queries against the bank and a top-k per row
(no external index is needed at MNIST scale: 10 000 x 55 000 x 84 multiply-adds per set).
The paper also uses a random fraction of the training set as the bank (``bank_size``).
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_int, check_seed
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["KNN", "knn_score", "normalize_features"]


def normalize_features(features: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    r""":math:`f / \max(\lVert f \rVert_2, \epsilon)` row by row. ``(N, F) -> (N, F)``."""
    return features / features.norm(dim=1, keepdim=True).clamp_min(eps)


def knn_score(
    features: torch.Tensor, bank: torch.Tensor, k: int = 50, *, chunk: int = 1024,
    normalized_bank: bool = False,
) -> torch.Tensor:
    r"""Distance from each normalised feature to its :math:`k`-th nearest normalised bank row.

    Args:
        features: ``(N, F)`` query features (normalised here).
        bank: ``(M, F)`` training features, ``M >= k``.
        k: which neighbour (1 = the nearest).
        chunk: queries per block; each block holds a ``(chunk, M)`` similarity matrix.
        normalized_bank: the bank is already normalised (skips that step).

    Returns:
        ``(N,)`` float64 distances in ``[0, 2]``; higher = more OOD.
    """
    if not 1 <= k <= len(bank):
        raise ValueError(f"The 'k' parameter must be in [1, {len(bank)}] (the bank size). "
                         f"Got {k!r} instead.")
    bank = bank if normalized_bank else normalize_features(bank)
    dtype = torch.promote_types(features.dtype, bank.dtype)
    bank = bank.to(dtype)
    queries = normalize_features(features.to(device=bank.device, dtype=dtype))  # (N, F)
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]  # (B, F)
        sim = q @ bank.T  # (B, M)
        index = sim.topk(k, dim=1, largest=True, sorted=True).indices[:, -1]  # (B,)
        # The k-th neighbour's distance recomputed directly: sqrt(2 - 2 q.b) would lose
        # precision for near-duplicates (q.b close to 1).
        out.append((q - bank[index]).to(torch.float64).norm(dim=1))  # (B,)
    return torch.cat(out)


class KNN(OODDetector):
    """k-th nearest-neighbour distance of normalised features (Sun et al. 2022).

    Parameters
    ----------
    model : nn.Module, optional
        The classifier (features from ``model.features`` or ``layer``).
    k : int
        Which neighbour (default 50, the paper's choice for CIFAR-10 with the full bank).
    bank_size : int, optional
        Keep a seeded random subset of this many training features (default: all).
    seed : int
        Seed of that subset.
    layer : str or list of str, optional
        Module whose output are the features.

    Attributes
    ----------
    bank_ : Tensor ``(M, F)``, normalised training features (float32, or float64 when the
    features were given in float64).
    """

    name = "knn"
    reference = "Sun et al. 2022, ICML"
    needs = frozenset({"features"})
    fit_needs = frozenset({"features"})
    _state_names = ("bank_",)

    def __init__(self, model: nn.Module | None = None, *, k: int = 50,
                 bank_size: int | None = None, seed: int = 0,
                 layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.k = k
        self.bank_size = bank_size
        self.seed = seed

    def _validate_params(self) -> None:
        super()._validate_params()
        owner = type(self).__name__
        check_int(self.k, "k", owner, low=1)
        if self.bank_size is not None:
            check_int(self.bank_size, "bank_size", owner, low=1)
        check_seed(self.seed, owner)

    def _fit(self, outputs: ModelOutputs) -> None:
        feats = outputs.features
        if self.bank_size is not None and self.bank_size < len(feats):
            g = torch.Generator().manual_seed(self.seed)
            index = torch.randperm(len(feats), generator=g)[: self.bank_size].sort().values
            feats = feats[index.to(feats.device)]
        if self.k > len(feats):
            raise ValueError(
                f"The 'k' parameter of {type(self).__name__} must be at most the number of "
                f"training features ({len(feats)}). Got {self.k} instead."
            )
        self.bank_ = normalize_features(feats)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return knn_score(outputs.features, self.bank_, self.k, normalized_bank=True)
