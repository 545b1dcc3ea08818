"""Checks of array inputs given as numpy arrays, torch tensors or sequences, returning numpy.

The metrics (:mod:`evaluation.metrics`), the plots and every other function that works on
numpy convert their inputs here: torch tensors (any device, any float dtype, ``requires_grad``
or not) and numpy arrays / Python sequences become numpy arrays on the CPU (torch is never
imported here: a tensor can only exist once the caller imported it).
Bad input raises ``ValueError`` (``TypeError`` for objects that are not arrays at all) with a
message that names the argument, e.g.

    The 'probs' argument must have rows summing to 1 (tolerance 0.0001); row 3 sums to 0.8.

Nothing here ``assert``\\ s on user input, and nothing guesses what kind of tensor it was given.
"""

from __future__ import annotations

import numbers
import sys

import numpy as np

__all__ = [
    "PROB_SUM_ATOL",
    "PROB_SUM_ATOL_HALF",
    "check_correct",
    "check_labels",
    "check_probs",
    "check_real",
    "check_same_length",
    "check_scores",
    "to_numpy",
]

#: Absolute tolerance on the row sums of a ``probs`` argument given in float32 / float64.
PROB_SUM_ATOL = 1e-4
#: The same tolerance for half-precision (float16 / bfloat16) input, whose rounding alone can
#: move a row sum by ~5e-4.
PROB_SUM_ATOL_HALF = 1e-2


def _torch_tensor_type():
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported
    return None if torch is None else torch.Tensor


def _is_half(x) -> bool:
    """Whether ``x`` (before conversion) is a float16 / bfloat16 array or tensor."""
    dtype = getattr(x, "dtype", None)
    return str(dtype) in {"float16", "torch.float16", "torch.bfloat16", "torch.half"}


def to_numpy(x, name: str) -> np.ndarray:
    """``x`` as a numpy array on the CPU, without copying where possible.

    Torch tensors are detached and moved to the CPU; bfloat16 (which numpy lacks) becomes
    float32, exactly. Only bool, integer and real floating dtypes are accepted.
    """
    tensor_type = _torch_tensor_type()
    if tensor_type is not None and isinstance(x, tensor_type):
        t = x.detach()
        if t.is_complex():
            raise ValueError(f"The {name!r} argument must be real; got dtype {t.dtype}.")
        if t.device.type != "cpu":
            t = t.cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        arr = t.resolve_neg().resolve_conj().numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (list, tuple, numbers.Number, np.generic)) or hasattr(x, "__array__"):
        try:
            arr = np.asarray(x)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"The {name!r} argument could not be read as an array: {err}") from err
    else:
        raise TypeError(
            f"The {name!r} argument must be a numpy array, a torch tensor or a sequence of "
            f"numbers; got {type(x).__name__}."
        )
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"The {name!r} argument must hold real numbers (bool, int or float); "
            f"got dtype {arr.dtype}."
        )
    return arr


def _index_str(flat_index: int, shape: tuple[int, ...]) -> str:
    idx = np.unravel_index(flat_index, shape)
    return str(int(idx[0])) if len(idx) == 1 else str(tuple(int(i) for i in idx))


def _check_ndim(arr: np.ndarray, name: str, ndim: int | tuple[int, ...], what: str) -> None:
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        raise ValueError(f"The {name!r} argument must be {what}; got shape {arr.shape}.")


def _check_nonempty(arr: np.ndarray, name: str) -> None:
    if arr.size == 0 or arr.shape[0] == 0:
        raise ValueError(f"The {name!r} argument must not be empty; got shape {arr.shape}.")


def _check_finite(arr: np.ndarray, name: str, allow_neg_inf: bool = False) -> None:
    if arr.dtype.kind != "f":
        return
    lo, hi = arr.min(), arr.max()  # two fast reductions; NaN propagates into both
    if hi < np.inf and (allow_neg_inf or lo > -np.inf):  # False for NaN
        return
    bad = np.isnan(arr) | (arr == np.inf)
    if not allow_neg_inf:
        bad |= arr == -np.inf
    flat = int(np.flatnonzero(bad.ravel())[0])
    value = arr.ravel()[flat]
    what = "finite" if not allow_neg_inf else "finite or -inf"
    raise ValueError(
        f"The {name!r} argument must be {what}; found {value} at index "
        f"{_index_str(flat, arr.shape)}."
    )


def check_real(
    x,
    name: str,
    ndim: int | tuple[int, ...] = 1,
    what: str | None = None,
    allow_neg_inf: bool = False,
) -> np.ndarray:
    """A non-empty, finite float64 array with ``ndim`` dimensions (``allow_neg_inf``: -inf is
    also accepted, e.g. the log-probability of an impossible event)."""
    arr = to_numpy(x, name)
    if what is None:
        what = {1: "a 1-D array", 2: "a 2-D array"}.get(ndim, f"an array with ndim in {ndim}")
    _check_ndim(arr, name, ndim, what)
    _check_nonempty(arr, name)
    arr = np.asarray(arr, dtype=np.float64)
    _check_finite(arr, name, allow_neg_inf=allow_neg_inf)
    return arr


def check_scores(x, name: str) -> np.ndarray:
    """A non-empty, finite 1-D float64 array of detector scores."""
    return check_real(x, name, ndim=1, what="a 1-D array of shape (N,)")


def check_probs(x, name: str = "probs") -> np.ndarray:
    """A validated ``(N, C)`` probability matrix, ``C >= 2``, in its own float dtype.

    Entries must lie in [0, 1] exactly and rows must sum to 1 within :data:`PROB_SUM_ATOL`
    (1e-4; :data:`PROB_SUM_ATOL_HALF` = 1e-2 for float16 / bfloat16 input). The dtype is kept
    (float16 / float32 / float64) so that large inputs are not copied; callers convert the
    quantities they accumulate to float64.
    """
    half = _is_half(x)
    arr = to_numpy(x, name)
    _check_ndim(arr, name, 2, "a 2-D array of shape (N, C)")
    _check_nonempty(arr, name)
    if arr.shape[1] < 2:
        raise ValueError(
            f"The {name!r} argument must have at least 2 columns (classes); "
            f"got shape {arr.shape}."
        )
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    lo, hi = arr.min(), arr.max()
    if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN and inf
        bad = ~((arr >= 0.0) & (arr <= 1.0))
        flat = int(np.flatnonzero(bad.ravel())[0])
        value = arr.ravel()[flat]
        where = _index_str(flat, arr.shape)
        if not np.isfinite(value):
            raise ValueError(f"The {name!r} argument must be finite; found {value} at {where}.")
        raise ValueError(
            f"The {name!r} argument must hold probabilities in [0, 1]; found {value} at {where}."
        )
    tol = PROB_SUM_ATOL_HALF if half or arr.dtype == np.float16 else PROB_SUM_ATOL
    n_cols = arr.shape[1]
    if arr.dtype == np.float16:
        sums = arr.sum(axis=1, dtype=np.float64)
        slack = 0.0
    else:
        # A matrix-vector product is ~10x faster than a float64 row reduction; its rounding
        # error is at most n_cols * eps, and rows that close to the tolerance are re-summed
        # in float64, so the decision is the same as an exact float64 check.
        sums = arr @ np.ones(n_cols, dtype=arr.dtype)
        slack = 2.0 * n_cols * float(np.finfo(arr.dtype).eps)
    if 1.0 - (tol - slack) <= sums.min() and sums.max() <= 1.0 + (tol - slack):
        return arr  # every row is well inside the tolerance
    suspicious = np.flatnonzero(np.abs(sums - 1.0) > tol - slack)
    if suspicious.size:
        exact = arr[suspicious].sum(axis=1, dtype=np.float64)
        bad_rows = suspicious[np.abs(exact - 1.0) > tol]
        if bad_rows.size:
            row = int(bad_rows[0])
            total = float(arr[row].sum(dtype=np.float64))
            raise ValueError(
                f"The {name!r} argument must have rows summing to 1 (tolerance {tol:g}); "
                f"row {row} sums to {total:.6g}."
            )
    return arr


def check_labels(
    x, n: int, num_classes: int, name: str = "labels", other: str = "probs"
) -> np.ndarray:
    """Integer class indices of shape ``(n,)`` in ``[0, num_classes)``, as int64."""
    arr = to_numpy(x, name)
    _check_ndim(arr, name, 1, "a 1-D array of class indices of shape (N,)")
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"The {name!r} argument must hold integer class indices; got dtype {arr.dtype}."
        )
    check_same_length(arr.shape[0], n, name, other)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= num_classes:
        bad = int(np.flatnonzero((arr < 0) | (arr >= num_classes))[0])
        raise ValueError(
            f"The {name!r} argument must hold class indices in [0, {num_classes}); "
            f"got {int(arr[bad])} at index {bad}."
        )
    return arr.astype(np.int64, copy=False)


def check_correct(x, n: int, name: str = "correct", other: str = "confidences") -> np.ndarray:
    """A boolean ``(n,)`` array from bool or 0/1 integer input."""
    arr = to_numpy(x, name)
    _check_ndim(arr, name, 1, "a 1-D array of shape (N,)")
    check_same_length(arr.shape[0], n, name, other)
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind not in "iu" or not np.all((arr == 0) | (arr == 1)):
        raise ValueError(
            f"The {name!r} argument must be boolean (or integers 0 / 1); got dtype {arr.dtype}"
            + ("" if arr.dtype.kind not in "iu" else " with values other than 0 and 1")
            + "."
        )
    return arr.astype(bool)


def check_same_length(n_got: int, n_expected: int, name: str, other: str) -> None:
    """Raise unless argument ``name`` has as many rows (``n_got``) as ``other``."""
    if n_got != n_expected:
        raise ValueError(
            f"The {name!r} argument must have the same length as {other!r} ({n_expected}); "
            f"got {n_got}."
        )
