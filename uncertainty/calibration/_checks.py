"""The logits check shared by the calibrators (the parameter and label checks are in
:mod:`dunno.validation`).

Every check raises :class:`ValueError` (never ``assert``) naming the argument, what was
expected and what was given, in scikit-learn's phrasing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dunno.validation import as_tensor

__all__ = ["as_logits"]

# Rows of a probability matrix sum to 1 within float32 rounding; logits essentially never do
# while also all lying in [0, 1].
_PROB_ROW_ATOL = 1e-4


def as_logits(logits: Any, *, check_input: bool = True, name: str = "logits",
              num_classes: int | None = None) -> torch.Tensor:
    """Validate ``logits (N, C)`` and return them as a float64 tensor on their device.

    Raises ValueError for a wrong shape, an empty set, fewer than 2 classes, NaN/inf
    values, a class count different from ``num_classes`` (the one seen in ``fit``) and,
    unless ``check_input=False``, for a matrix that looks like probabilities (every entry
    in [0, 1] and every row summing to 1).
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
    if z.device.type == "cpu":
        # numpy on the CPU: single-threaded elementwise work, so the checks stay fast even
        # when torch's intra-op threads compete with other processes for the cores.
        array = (z.float() if z.dtype == torch.bfloat16 else z).numpy()
        array = array.astype(np.float64, copy=False)  # (N, C)
        all_finite = bool(np.isfinite(array).all())
        looks_like_probs = check_input and all_finite and (
            array.min() >= 0 and array.max() <= 1
            and bool((np.abs(array.sum(axis=1) - 1) <= _PROB_ROW_ATOL).all())
        )
        z = torch.from_numpy(array)
    else:
        z = z.to(torch.float64)
        all_finite = bool(torch.isfinite(z).all())
        looks_like_probs = check_input and all_finite and (
            bool(((z >= 0) & (z <= 1)).all())
            and bool(((z.sum(dim=1) - 1).abs() <= _PROB_ROW_ATOL).all())
        )
    if not all_finite:
        bad = int((~torch.isfinite(z).all(dim=1)).sum())
        raise ValueError(
            f"The '{name}' argument contains NaN or infinite values (in {bad} of {n} rows). "
            "Calibrators need finite logits."
        )
    if looks_like_probs:
        raise ValueError(
            f"The '{name}' argument looks like probabilities (every entry lies in [0, 1] "
            "and every row sums to 1). Calibrators expect logits (the scores before the "
            "softmax): pass the model's raw outputs, or log-probabilities. If these "
            "really are logits, pass check_input=False to skip this check."
        )
    return z
