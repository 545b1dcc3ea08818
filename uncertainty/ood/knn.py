r"""Deep nearest neighbours (Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep
Nearest Neighbors", ICML 2022).

Normalise every feature to unit length, :math:`z = f / \lVert f \rVert_2`, keep the normalised
training features :math:`\{z_j\}` as a bank, and score a test input by the distance to its
:math:`k`-th nearest neighbour in the bank:

.. math::

    s(x) = \lVert z(x) - z_{(k)}(x) \rVert_2 = \sqrt{2 - 2\, z(x)^\top z_{(k)}(x)},

where :math:`z_{(k)}(x)` is the bank element with the :math:`k`-th largest cosine similarity.
The search (:func:`~uncertainty.ood.similarity.top_similarities`, shared with NNGuide) is
exact: chunked float32 matrix products of queries against the bank and a top-k per row, with
a few spare candidates re-ranked in float64 and a bound on the float32 rounding error that
proves the float64 top-k lies among them (rows where it cannot be proved are searched again in
float64). No external index is needed at MNIST scale (10 000 x 55 000 x 84 multiply-adds per
set). Inside :func:`uncertainty.ood.run_ood` the searches of the same features against banks
made from the same training features are shared (:mod:`uncertainty.ood.shared_search`). The
paper also uses a random fraction of the training set as the bank (``bank_size``).
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_int, check_seed
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs
from uncertainty.ood.shared_search import active_searches
from uncertainty.ood.similarity import normalize_features, top_similarities

#: The search itself lives in :mod:`uncertainty.ood.similarity` (re-exported here).
__all__ = ["KNN", "knn_score", "normalize_features", "top_similarities"]


def knn_score(
    features: torch.Tensor, bank: torch.Tensor, k: int = 50, *, chunk: int | None = None,
    normalized_bank: bool = False,
) -> torch.Tensor:
    r"""Distance from each normalised feature to its :math:`k`-th nearest normalised bank row.

    Args:
        features: ``(N, F)`` query features (normalised here).
        bank: ``(M, F)`` training features, ``M >= k``.
        k: which neighbour (1 = the nearest).
        chunk: queries per block of :func:`top_similarities` (default: automatic).
        normalized_bank: the bank is already normalised (skips that step).

    Returns:
        ``(N,)`` float64 distances in ``[0, 2]``; higher = more OOD.
    """
    if not 1 <= k <= len(bank):
        raise ValueError(f"The 'k' parameter must be in [1, {len(bank)}] (the bank size). "
                         f"Got {k!r} instead.")
    bank = bank if normalized_bank else normalize_features(bank)
    queries, bank = _search_inputs(features, bank)
    _, index = top_similarities(queries, bank, k, chunk=chunk)
    return _distances(queries, bank, index[:, k - 1])  # (N,) to the k-th neighbour


def _search_inputs(features: torch.Tensor, bank: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised queries ``(N, F)`` and the normalised bank in their common dtype."""
    dtype = torch.promote_types(features.dtype, bank.dtype)
    bank = bank.to(dtype)
    return normalize_features(features.to(device=bank.device, dtype=dtype)), bank


def _distances(queries: torch.Tensor, bank: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float64 distances from each query to the bank row ``index``, computed directly:
    ``sqrt(2 - 2 q.b)`` would lose precision for near-duplicates (``q.b`` close to 1)."""
    return (queries - bank[index]).to(torch.float64).norm(dim=1)


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
        feats = source = outputs.features
        index = None
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
        searches = active_searches()  # inside run_ood: searches shared with other detectors
        self._bank_origin = (None if searches is None
                             else searches.register_bank(source, index, self.k))

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        searches, origin = active_searches(), getattr(self, "_bank_origin", None)
        if searches is not None and origin is not None:
            index = searches.kth_neighbour(outputs.features, *origin, self.bank_, self.k)
            if index is not None:  # the neighbour knn_score's own search finds
                return _distances(*_search_inputs(outputs.features, self.bank_), index)
        return knn_score(outputs.features, self.bank_, self.k, normalized_bank=True)
