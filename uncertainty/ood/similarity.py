r"""The exact similarity search behind kNN (:mod:`uncertainty.ood.knn`), NNGuide and the
searches shared within an OOD run (:mod:`uncertainty.ood.shared_search`): unit-normalised
features and the ``k`` largest inner products of queries with a bank, proven exact
(:func:`top_similarities`)."""

from __future__ import annotations

import torch

__all__ = ["normalize_features", "top_similarities"]

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
