"""Input and parameter validation shared by the calibrators.

Every check raises :class:`ValueError` (never ``assert``) naming the argument, what was
expected and what was given, in scikit-learn's phrasing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_logits",
    "as_labels",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
]

# Rows of a probability matrix sum to 1 within float32 rounding; logits essentially never do
# while also all lying in [0, 1].
_PROB_ROW_ATOL = 1e-4


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, list | tuple):
        try:
            return torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as err:
            raise ValueError(f"The '{name}' argument could not be read as an array: {err}") from err
    raise ValueError(
        f"The '{name}' argument must be a torch.Tensor or numpy array. "
        f"Got {type(value).__name__} instead."
    )


def as_logits(logits: Any, *, check_input: bool = True, name: str = "logits",
              num_classes: int | None = None) -> torch.Tensor:
    """Validate ``logits (N, C)`` and return them as a float64 tensor on their device.

    Raises ValueError for a wrong shape, an empty set, fewer than 2 classes, NaN/inf
    values, a class count different from ``num_classes`` (the one seen in ``fit``) and,
    unless ``check_input=False``, for a matrix that looks like probabilities (every entry
    in [0, 1] and every row summing to 1).
    """
    z = _as_tensor(logits, name)
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


def as_labels(labels: Any, n: int, num_classes: int, *, name: str = "labels") -> torch.Tensor:
    """Validate integer class labels ``(N,)`` in ``[0, num_classes)``; returns int64."""
    y = _as_tensor(labels, name)
    if y.is_floating_point():
        if not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all()):
            raise ValueError(
                f"The '{name}' argument must hold integer class indices. "
                f"Got non-integer values of dtype {y.dtype}."
            )
    elif y.dtype == torch.bool or y.is_complex():
        raise ValueError(
            f"The '{name}' argument must hold integer class indices. Got dtype {y.dtype}."
        )
    if y.ndim != 1:
        raise ValueError(
            f"The '{name}' argument must be 1-D of shape (N,). Got shape {tuple(y.shape)} instead."
        )
    if len(y) != n:
        raise ValueError(
            f"The '{name}' argument has {len(y)} entries but 'logits' has {n} rows."
        )
    y = y.to(torch.int64)
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"The '{name}' argument must lie in [0, {num_classes - 1}] for logits with "
            f"{num_classes} classes. Got values in [{low}, {high}] instead."
        )
    return y


# ----------------------------------------------------------------------------- parameters
def check_int(owner: object, name: str, value: Any, minimum: int) -> int:
    """``value`` must be an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(
            f"The '{name}' parameter of {type(owner).__name__} must be an int >= {minimum}. "
            f"Got {value!r} instead."
        )
    return int(value)


def check_float(owner: object, name: str, value: Any, *, low: float = -math.inf,
                high: float = math.inf, low_open: bool = False) -> float:
    """``value`` must be a real number in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    ok = isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and value <= high and (value > low if low_open else value >= low)
    if not ok:
        lo = "(" if low_open else "["
        hi = "inf)" if math.isinf(high) else f"{high:g}]"
        raise ValueError(
            f"The '{name}' parameter of {type(owner).__name__} must be a float in "
            f"{lo}{low:g}, {hi}. Got {value!r} instead."
        )
    return value


def check_choice(owner: object, name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` must be one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The '{name}' parameter of {type(owner).__name__} must be one of {options}. "
            f"Got {value!r} instead."
        )
    return value


def check_bool(owner: object, name: str, value: Any) -> bool:
    """``value`` must be a bool."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(
            f"The '{name}' parameter of {type(owner).__name__} must be a bool. "
            f"Got {value!r} instead."
        )
    return bool(value)
