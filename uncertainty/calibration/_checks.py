"""The logits check shared by the calibrators (the parameter and label checks are in
:mod:`dunno.validation`).

Every check raises :class:`ValueError` (never ``assert``) naming the argument, what was
expected and what was given, in scikit-learn's phrasing.

**Probabilities given as logits.** Calibrators need logits; a probability matrix passed by
mistake would be "calibrated" as if it were logits (temperature scaling then ends at its
bound). :func:`as_logits` refuses a matrix ``(N, C)`` that is, in its own dtype, any of

* *probabilities*: every entry in [0, 1] and every row summing to 1 within
  ``max(1e-4, 2 * eps(dtype) * C)`` (``eps`` of float16 / bfloat16 / float32 / float64, so
  half-precision softmax outputs are caught too);
* *rounded probabilities*: every entry in [0, 1] on a grid of 0.1, 0.01 or 0.001 and every row
  summing to 1 within half a grid step times ``C``; or, for ``C <= 10``, every row summing to
  1 within ``1e-2``;
* *percentages*: the same tests on the matrix divided by 100 (entries in [0, 100]).

Real logits essentially never pass these tests on more than a handful of rows; a caller
sure that its inputs are logits passes ``check_input=False``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dunno.validation import as_tensor

__all__ = ["as_logits", "probability_tolerance"]

#: Smallest row-sum tolerance of the probabilities test (float32 / float64 inputs).
_PROB_ROW_ATOL = 1e-4
#: Row-sum tolerance of rounded probabilities without a decimal grid, for ``C <= 10``.
_ROUND_ATOL = 1e-2
_ROUND_MAX_CLASSES = 10
#: Decimal grids of rounded probabilities: 0.1, 0.01, 0.001.
_GRIDS = (1, 2, 3)


def probability_tolerance(dtype: torch.dtype, num_classes: int) -> float:
    """Row-sum tolerance of a probability matrix in ``dtype`` with ``num_classes`` columns:
    ``max(1e-4, 2 * eps(dtype) * C)`` (integers: 1e-4)."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return max(_PROB_ROW_ATOL, 2.0 * eps * num_classes)


def _probability_kind(z, dtype: torch.dtype) -> str | None:
    """What ``z (N, C)`` (finite, numpy or torch, float64) looks like: ``None`` (logits), or
    a description of the probabilities it holds."""
    n, c = z.shape
    lo, hi = float(z.min()), float(z.max())
    if lo < 0 or hi > 100:
        return None
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    tol = probability_tolerance(dtype, c)
    for scale, what in ((1.0, "probabilities"), (100.0, "percentages")):
        if hi > scale or (scale > 1 and hi <= 1):
            continue
        p = z / scale if scale != 1 else z
        dev = float(abs(p.sum(1) - 1).max())  # largest row-sum deviation from 1
        unit = "[0, 1]" if scale == 1 else "[0, 100]"
        total = "1" if scale == 1 else "100"
        if dev <= tol:
            return (f"{what} (every entry lies in {unit} and every row sums to {total} within "
                    f"{tol * scale:.2g})")
        for d in _GRIDS:
            step = 10.0 ** -d
            grid = p * 10 ** d
            off = float(abs(grid - grid.round()).max())
            if off <= 10 ** d * 4 * eps + 1e-9 and dev <= 0.5 * step * c + tol:
                return (f"rounded {what} (every entry lies in {unit} on a grid of "
                        f"{step * scale:g} and every row sums to {total} within rounding)")
        if c <= _ROUND_MAX_CLASSES and dev <= _ROUND_ATOL:
            return (f"rounded {what} (every entry lies in {unit} and every row sums to "
                    f"{total} within {_ROUND_ATOL * scale:g})")
    return None


def as_logits(logits: Any, *, check_input: bool = True, name: str = "logits",
              num_classes: int | None = None) -> torch.Tensor:
    """Validate ``logits (N, C)`` and return them as a float64 tensor on their device.

    Raises ValueError for a wrong shape, an empty set, fewer than 2 classes, NaN/inf
    values, a class count different from ``num_classes`` (the one seen in ``fit``) and,
    unless ``check_input=False``, for a matrix that looks like probabilities, rounded
    probabilities or percentages (see the module docstring; the tolerance depends on the
    input's dtype).
    """
    z = as_tensor(logits, name)
    if z.dtype == torch.bool or z.is_complex():
        raise ValueError(f"The '{name}' argument must hold real numbers. Got dtype {z.dtype}.")
    if z.ndim != 2:
        raise ValueError(
            f"The '{name}' argument must be a 2-D array of shape (N, C). "
            f"Got shape {tuple(z.shape)} instead."
        )
    n, c = z.shape
    if n == 0:
        raise ValueError(
            f"The '{name}' argument is empty (0 rows): the calibration set has no examples."
        )
    if c < 2:
        raise ValueError(
            f"The '{name}' argument must have at least 2 classes (columns). Got {c} instead."
        )
    if num_classes is not None and c != num_classes:
        raise ValueError(
            f"The '{name}' argument has {c} classes (columns) but the calibrator was fitted "
            f"on {num_classes}."
        )
    dtype = z.dtype
    if z.device.type == "cpu":
        # numpy on the CPU: single-threaded elementwise work, so the checks stay fast even
        # when torch's intra-op threads compete with other processes for the cores.
        array = (z.float() if z.dtype == torch.bfloat16 else z).numpy()
        array = array.astype(np.float64, copy=False)  # (N, C)
        all_finite = bool(np.isfinite(array).all())
        kind = _probability_kind(array, dtype) if check_input and all_finite else None
        z = torch.from_numpy(array)
    else:
        z = z.to(torch.float64)
        all_finite = bool(torch.isfinite(z).all())
        kind = _probability_kind(z, dtype) if check_input and all_finite else None
    if not all_finite:
        bad = int((~torch.isfinite(z).all(dim=1)).sum())
        raise ValueError(
            f"The '{name}' argument contains NaN or infinite values (in {bad} of {n} rows). "
            "Calibrators need finite logits."
        )
    if kind is not None:
        row = ", ".join(f"{v:.4g}" for v in z[0, :6].tolist()) + (", ..." if c > 6 else "")
        percent = " (percentages: torch.log(probs / 100))" if "percent" in kind else ""
        raise ValueError(
            f"The '{name}' argument looks like {kind}, in {dtype}; row 0 is [{row}]. "
            "Calibrators expect logits (the scores before the softmax): pass the model's raw "
            f"outputs, or torch.log(probs){percent}. If these really are logits, pass "
            "check_input=False to skip this check."
        )
    return z
