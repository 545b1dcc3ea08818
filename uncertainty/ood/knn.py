r"""Deep nearest neighbours (Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep
Nearest Neighbors", ICML 2022).

Normalise every feature to unit length, :math:`z = f / \lVert f \rVert_2`, keep the normalised
training features :math:`\{z_j\}` as a bank, and score a test input by the distance to its
:math:`k`-th nearest neighbour in the bank:

.. math::

    s(x) = \lVert z(x) - z_{(k)}(x) \rVert_2 = \sqrt{2 - 2\, z(x)^\top z_{(k)}(x)},

where :math:`z_{(k)}(x)` is the bank element with the :math:`k`-th largest cosine similarity.
The search (:func:`top_similarities`, shared with NNGuide) is exact: chunked float32 matrix
products of queries against the bank and a top-k per row, with a few spare candidates
re-ranked in float64 and a bound on the float32 rounding error that proves the float64 top-k
lies among them (rows where it cannot be proved are searched again in float64). No external
index is needed at MNIST scale (10 000 x 55 000 x 84 multiply-adds per set). The paper also
uses a random fraction of the training set as the bank (``bank_size``).
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_int, check_seed
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs
from uncertainty.ood.shared_search import active_searches

__all__ = ["KNN", "knn_score", "normalize_features", "top_similarities"]

#: Spare candidates per row that the float32 pass keeps for the float64 re-ranking.
SPARE_CANDIDATES = 8
#: Bytes of one ``(chunk, M)`` float32 similarity block when ``chunk`` is not given (at most
#: :data:`MAX_CHUNK` queries per block).
BLOCK_BYTES = 2**28
MAX_CHUNK = 1024


def normalize_features(features: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    r""":math:`f / \max(\lVert f \rVert_2, \epsilon)` row by row. ``(N, F) -> (N, F)``."""
    return features / features.norm(dim=1, keepdim=True).clamp_min(eps)


#: Unit roundoff of the float32 matrix product's inputs for each
#: ``torch.get_float32_matmul_precision()``: exact float32, TF32 (10-bit mantissa), bfloat16.
_INPUT_ROUNDOFF = {"highest": 2.0**-24, "high": 2.0**-11, "medium": 2.0**-8}


def _rounding_bound(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    r"""Per-query bound ``(N,)`` on :math:`|\mathrm{fl}_{32}(q^\top b) - q^\top b|` over the
    bank: :math:`\gamma\,\lVert q\rVert \max_j \lVert b_j\rVert` with
    :math:`\gamma = 1.25\,(F u_{32} + 2 u_{\text{in}})`: Higham's :math:`\gamma_F` for a
    float32 inner product of length :math:`F`, plus the rounding of both inputs to what the
    product reads (:math:`u_{\text{in}} = 2^{-24}`; :math:`2^{-11}` or :math:`2^{-8}` when
    ``torch.set_float32_matmul_precision`` allows TF32 or bfloat16), with a margin."""
    u32 = 2.0**-24
    u_in = max(u32, _INPUT_ROUNDOFF.get(torch.get_float32_matmul_precision(), 2.0**-8))
    gamma = 1.25 * (queries.shape[1] * u32 + 2 * u_in)
    # the norms in the vectors' own dtype, rounded up by far more than their rounding error
    bank_norm = float(bank.norm(dim=1).max()) * 1.001 if len(bank) else 0.0
    return gamma * queries.norm(dim=1).to(torch.float64) * 1.001 * bank_norm


def top_similarities(
    queries: torch.Tensor, bank: torch.Tensor, k: int, *, chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The ``k`` largest inner products :math:`q^\top b_j` of every query with the bank,
    exactly (as float64 arithmetic on the given vectors ranks them).

    Each block of queries is multiplied with the bank in float32 and the ``k + 8`` largest
    products are kept; these are recomputed in float64 and the top ``k`` taken. With
    :math:`\delta` the float32 rounding bound of :func:`_rounding_bound`, a row is exact when
    its ``k``-th and last float32 candidate differ by more than :math:`2\delta` (no product
    outside the candidates can then reach the float64 top ``k``); other rows (near-ties,
    duplicated bank rows) are searched again over the whole bank in float64. The time is
    that of the float32 product and top-k (bound by the memory traffic of the
    ``(chunk, M)`` block); the re-ranking adds a few per cent.

    Args:
        queries: ``(N, F)``.
        bank: ``(M, F)``, ``M >= k``.
        k: how many neighbours.
        chunk: queries per block (default: as many as keep one ``(chunk, M)`` float32 block
            at 256 MiB, at most 1024).

    Returns:
        ``(values, indices)``: ``(N, k)`` float64 products, largest first, and their bank rows
        ``(N, k)`` int64.
    """
    m = len(bank)
    if not 1 <= k <= m:
        raise ValueError(f"The 'k' parameter must be in [1, {m}] (the bank size). "
                         f"Got {k!r} instead.")
    if chunk is None:
        chunk = min(MAX_CHUNK, max(1, BLOCK_BYTES // (4 * m)))
    queries = queries.to(bank.device)
    bank32 = bank.to(torch.float32)
    bound = _rounding_bound(queries, bank)  # (N,)
    spare = min(m, k + SPARE_CANDIDATES)
    bank64 = None  # the float64 bank, made when a row needs the full search
    values, indices = [], []
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]  # (B, F)
        q64 = q.to(torch.float64)
        approx = (q.to(torch.float32) @ bank32.T).topk(spare, dim=1)  # (B, spare) each
        cand = approx.indices  # (B, spare)
        rows = bank.index_select(0, cand.flatten()).view(*cand.shape, -1)  # (B, spare, F)
        exact = torch.bmm(rows.to(torch.float64), q64[:, :, None])[..., 0]  # (B, spare)
        top = exact.topk(k, dim=1)
        val, idx = top.values, cand.gather(1, top.indices)
        if spare < m:  # prove that no product outside the candidates is in the top k
            gap = (approx.values[:, k - 1] - approx.values[:, -1]).to(torch.float64)
            delta = bound[start:start + chunk]
            redo = torch.nonzero((gap <= 2 * delta) & (delta > 0)).flatten()
            if len(redo):
                bank64 = bank.to(torch.float64) if bank64 is None else bank64
                full = (q64[redo] @ bank64.T).topk(k, dim=1)  # (R, k)
                val[redo], idx[redo] = full.values, full.indices
        values.append(val)
        indices.append(idx)
    return torch.cat(values), torch.cat(indices)


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
