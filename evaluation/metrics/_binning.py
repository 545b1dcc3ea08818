r"""Binning building blocks of the calibration metrics (:mod:`evaluation.metrics.calibration`)
and their streaming accumulator (:mod:`evaluation.metrics.streaming`): the top label of each
row, the bin of each confidence, and the per-bin sums (counts, confidence sums, correct
counts) every binned calibration error is computed from.

The binning rules (equal-width bins :math:`(e_b, e_{b+1}]` with 0 in the first bin and 1.0 in
the last; equal-mass groups as ``np.array_split`` after sorting by confidence, then
correctness) and the norms are documented in :mod:`evaluation.metrics.calibration`. Inputs
here are already validated numpy arrays; results are float64 (counts int64). Rows are
processed in chunks that bound the temporaries; the results do not depend on the chunk sizes
beyond float summation order.
"""

from __future__ import annotations

import numpy as np

__all__: list[str] = []

# Rows processed at once where a float64 copy of (rows, C) is needed: bounds the memory.
_CHUNK_ELEMENTS = 1 << 22


def _row_chunks(n_rows: int, n_cols: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _top_label(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row maximum (N,) in the dtype of ``p`` (float32 / float64, exact) and arg-max (N,) with
    ties broken towards the lowest index."""
    if p.dtype not in (np.float32, np.float64):
        p = p.astype(np.float64)
    fast = p.flags.c_contiguous and p.flags.writeable and p.dtype.isnative
    if fast:
        # torch's row max is one multi-threaded pass returning values and indices (the first
        # maximal index, like np.argmax): ~2x faster than numpy's max + argmax. Validated
        # probabilities are >= 0, and for non-negative IEEE floats the order of the bit
        # patterns read as signed integers is the numeric order (-0.0 reads as the most
        # negative integer, below every positive value and irrelevant as a row maximum is
        # > 0), so the integer view gives the same maxima and indices, a little faster.
        import torch

        int_dtype = np.int32 if p.dtype == np.float32 else np.int64
        values, indices = torch.from_numpy(p.view(int_dtype)).max(dim=1)
        return values.numpy().view(p.dtype), indices.numpy()
    pred = p.argmax(axis=1)
    return np.take_along_axis(p, pred[:, None], axis=1)[:, 0], pred


def _equal_width_edges(n_bins: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n_bins + 1)


def _edges_as(edges: np.ndarray, dtype) -> np.ndarray:
    """Edges rounded *down* to ``dtype``: for x of that dtype, x <= e  <=>  x <= edge and
    x > e  <=>  x > edge, so comparisons in ``dtype`` are exact."""
    if dtype == np.float64:
        return edges
    rounded = edges.astype(dtype)
    too_big = rounded.astype(np.float64) > edges
    rounded[too_big] = np.nextafter(rounded[too_big], rounded.dtype.type(-np.inf))
    return rounded


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value in [0, 1] under the (lo, hi] rule, 0 in the first bin.

    Same result as ``max(np.searchsorted(edges, v, side="left") - 1, 0)`` (with ``v`` compared
    exactly to the float64 edges) but branch-free and several times faster: ``ceil(v * B) - 1``
    is off by at most one bin next to an edge (rounding of the product and of the edges),
    which two comparisons with the actual edges repair. float32 values stay float32.
    """
    n_bins = edges.shape[0] - 1
    if values.dtype != np.float32:
        values = values.astype(np.float64, copy=False)
    e = _edges_as(edges, values.dtype)
    idx = np.multiply(values, values.dtype.type(n_bins))
    np.ceil(idx, out=idx)
    idx = idx.astype(np.intp)
    idx -= 1
    np.clip(idx, 0, n_bins - 1, out=idx)
    idx -= values <= e[idx]  # belongs to a lower bin
    idx += values > e[1:][idx]  # belongs to a higher bin (idx == -1 reads e[-1] = 1.0)
    np.maximum(idx, 0, out=idx)  # 0.0 -> first bin
    return idx


def _equal_width_stats(conf: np.ndarray, correct: np.ndarray, n_bins: int):
    """Per-bin (count int64, confidence sum float64, correct count int64)."""
    idx = _bin_index(conf, _equal_width_edges(n_bins))
    key = idx * 2
    key += correct
    both = np.bincount(key, minlength=2 * n_bins).reshape(n_bins, 2)
    conf_sums = np.bincount(idx, weights=conf, minlength=n_bins)  # summed in float64
    return both.sum(axis=1).astype(np.int64), conf_sums, both[:, 1].astype(np.int64)


def _equal_mass_stats(conf: np.ndarray, correct: np.ndarray, n_bins: int):
    """Per-group stats of the equal-mass binning plus each group's min / max confidence."""
    n = conf.shape[0]
    conf = conf.astype(np.float64, copy=False)
    order = np.lexsort((correct, conf))  # by confidence, then incorrect (0) before correct (1)
    conf_sorted = conf[order]
    correct_sorted = correct[order].astype(np.float64)
    base, extra = divmod(n, n_bins)
    counts = np.full(n_bins, base, dtype=np.int64)
    counts[:extra] += 1
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    nonempty = counts > 0
    conf_sums = np.zeros(n_bins)
    correct_counts = np.zeros(n_bins, dtype=np.int64)
    lower = np.full(n_bins, np.nan)
    upper = np.full(n_bins, np.nan)
    if nonempty.any():
        s = starts[nonempty]
        conf_sums[nonempty] = np.add.reduceat(conf_sorted, s)
        correct_counts[nonempty] = np.rint(np.add.reduceat(correct_sorted, s)).astype(np.int64)
        lower[nonempty] = conf_sorted[s]
        upper[nonempty] = conf_sorted[s + counts[nonempty] - 1]
    return counts, conf_sums, correct_counts, lower, upper


# Rows per chunk of the top-label pass: bounds the temporaries (~30 bytes a row) and keeps
# them in cache; results do not depend on it beyond float summation order.
_TOP_CHUNK_ROWS = 1 << 20


def _top_label_correct(p: np.ndarray, y: np.ndarray):
    """Yield ``(confidence, correct)`` for consecutive chunks of rows."""
    n = p.shape[0]
    for start in range(0, n, _TOP_CHUNK_ROWS):
        rows = slice(start, min(start + _TOP_CHUNK_ROWS, n))
        conf, pred = _top_label(p[rows])
        yield conf, pred == y[rows]


def _top_label_stats(p: np.ndarray, y: np.ndarray, n_bins: int, binning: str):
    """Per-bin (counts, confidence sums, correct counts, lower, upper) of the top label."""
    if binning == "equal_width":
        counts = np.zeros(n_bins, dtype=np.int64)
        conf_sums = np.zeros(n_bins)
        correct_counts = np.zeros(n_bins, dtype=np.int64)
        for conf, correct in _top_label_correct(p, y):
            c, s, k = _equal_width_stats(conf, correct, n_bins)
            counts += c
            conf_sums += s
            correct_counts += k
        edges = _equal_width_edges(n_bins)
        return counts, conf_sums, correct_counts, edges[:-1].copy(), edges[1:].copy()
    parts = list(_top_label_correct(p, y))
    conf = np.concatenate([c for c, _ in parts])
    correct = np.concatenate([k for _, k in parts])
    return _equal_mass_stats(conf, correct, n_bins)


def _error_from_stats(counts, conf_sums, correct_counts, norm: str) -> float:
    """Calibration error of one binning from its per-bin sums (empty bins contribute 0)."""
    counts = np.asarray(counts)
    n = counts.sum()
    keep = counts > 0
    c = counts[keep].astype(np.float64)
    gap = np.abs(correct_counts[keep] / c - conf_sums[keep] / c)
    if norm == "max":
        return float(gap.max())
    weights = c / float(n)
    if norm == "l1":
        return float(np.sum(weights * gap))
    return float(np.sqrt(np.sum(weights * gap * gap)))


def _split_from_stats(counts, conf_sums, correct_counts) -> tuple[float, float]:
    counts = np.asarray(counts)
    n = counts.sum()
    keep = counts > 0
    c = counts[keep].astype(np.float64)
    diff = conf_sums[keep] / c - correct_counts[keep] / c  # conf - acc
    weights = c / float(n)
    return float(np.sum(weights * np.maximum(diff, 0.0))), float(
        np.sum(weights * np.maximum(-diff, 0.0))
    )


def _classwise_equal_width_stats(p: np.ndarray, y: np.ndarray, n_bins: int):
    """(C, B) count, probability-sum and label-count arrays for every class's bins."""
    n, c = p.shape
    edges = _equal_width_edges(n_bins)
    counts = np.zeros(c * n_bins, dtype=np.int64)
    sums = np.zeros(c * n_bins)
    hits = np.zeros(c * n_bins, dtype=np.int64)
    offsets = np.arange(c, dtype=np.int64) * n_bins  # (C,)
    for rows in _row_chunks(n, c):
        block = p[rows].astype(np.float64)  # (n_rows, C)
        key = _bin_index(block, edges) + offsets  # (n_rows, C)
        counts += np.bincount(key.ravel(), minlength=c * n_bins)
        sums += np.bincount(key.ravel(), weights=block.ravel(), minlength=c * n_bins)
        label_key = key[np.arange(block.shape[0]), y[rows]]  # the true class's bin, (n_rows,)
        hits += np.bincount(label_key, minlength=c * n_bins)
    shape = (c, n_bins)
    return counts.reshape(shape), sums.reshape(shape), hits.reshape(shape)
