"""Parameter and input validation shared by :mod:`uncertainty.calibration` and
:mod:`uncertainty.predictive`.

Every check raises :class:`ValueError` (never ``assert``) naming the argument or parameter, what
was expected and what was given, in scikit-learn's phrasing::

    The 'num_samples' parameter of MCDropout must be an int >= 1. Got 0 instead.

``owner`` is the object whose parameter is checked (its class name is quoted) or a name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_labels",
    "as_tensor",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_seed",
]


def _owner(owner: object) -> str:
    return owner if isinstance(owner, str) else type(owner).__name__


# ----------------------------------------------------------------------------- parameters
def check_int(owner: object, name: str, value: Any, minimum: int) -> int:
    """``value`` must be an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(
            f"The '{name}' parameter of {_owner(owner)} must be an int >= {minimum}. "
            f"Got {value!r} instead."
        )
    return int(value)


def check_seed(owner: object, value: Any) -> int:
    """A seed: an int >= 0."""
    return check_int(owner, "seed", value, 0)


def check_float(owner: object, name: str, value: Any, *, low: float = -math.inf,
                high: float = math.inf, low_open: bool = False,
                high_open: bool = False) -> float:
    """``value`` must be a finite real number in the interval ``[low, high]`` (ends open
    when ``low_open`` / ``high_open``)."""
    ok = isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (
            math.isfinite(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
    if not ok:
        lo = "(" if low_open else "["
        hi = "inf)" if math.isinf(high) else (f"{high:g})" if high_open else f"{high:g}]")
        raise ValueError(
            f"The '{name}' parameter of {_owner(owner)} must be a float in "
            f"{lo}{low:g}, {hi}. Got {value!r} instead."
        )
    return value


def check_choice(owner: object, name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` must be one of ``choices`` (a bool never matches 0 / 1)."""
    if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
        ok = False
    else:
        try:
            ok = value in choices
        except TypeError:
            ok = False
    if not ok:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The '{name}' parameter of {_owner(owner)} must be one of {options}. "
            f"Got {value!r} instead."
        )
    return value


def check_bool(owner: object, name: str, value: Any) -> bool:
    """``value`` must be a bool."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(
            f"The '{name}' parameter of {_owner(owner)} must be a bool. Got {value!r} instead."
        )
    return bool(value)


# ----------------------------------------------------------------------------- inputs
def as_tensor(value: Any, name: str, *, list_dtype: Any = None) -> torch.Tensor:
    """A tensor or NumPy array as a (detached) tensor; a list or tuple read through NumPy
    (as ``list_dtype`` when given). Anything else is a ValueError naming ``name``."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, list | tuple):
        try:
            return torch.as_tensor(np.asarray(value, dtype=list_dtype))
        except (TypeError, ValueError) as err:
            raise ValueError(f"The '{name}' argument could not be read as an array: {err}") from err
    raise ValueError(
        f"The '{name}' argument must be a torch.Tensor or numpy array. "
        f"Got {type(value).__name__} instead."
    )


def as_labels(labels: Any, n: int, num_classes: int | None = None, *, name: str = "labels",
              rows_of: str = "x") -> torch.Tensor:
    """Validate integer class labels ``(N,)``, returned as int64.

    ``n`` is the row count of the array called ``rows_of`` that the labels go with; labels
    must lie in ``[0, num_classes)`` when ``num_classes`` is given, else be >= 0. Whole-valued
    floats are accepted.
    """
    y = as_tensor(labels, name)
    if y.is_floating_point():
        if not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all()):
            raise ValueError(
                f"The '{name}' argument must hold integer class indices. Got non-integer "
                f"values of dtype {y.dtype}."
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
            f"The '{rows_of}' and '{name}' arguments must have the same number of rows. Got {n} "
            f"rows in {rows_of} and {len(y)} in {name}."
        )
    if len(y) == 0:
        return y.to(torch.int64)
    y = y.to(torch.int64)
    low, high = int(y.min()), int(y.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        interval = "[0, ...)" if num_classes is None else f"[0, {num_classes - 1}]"
        classes = "" if num_classes is None else f" for {num_classes} classes"
        raise ValueError(
            f"The '{name}' argument must hold class indices in {interval}{classes}. Got values "
            f"in [{low}, {high}] instead."
        )
    return y
