"""Parameter and input validation shared by the predictive-uncertainty methods.

Every check raises :class:`ValueError` (never ``assert``) naming the argument, what was
expected and what was given, in scikit-learn's phrasing::

    The 'num_samples' parameter of MCDropout must be an int >= 1. Got 0 instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_features",
    "as_labels",
    "as_regression_data",
    "check_bool",
    "check_choice",
    "check_float",
    "check_hidden",
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
    """``value`` must be one of ``choices``."""
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


def check_hidden(owner: object, value: Any) -> tuple[int, ...]:
    """Hidden layer widths: an int >= 1 (one layer) or a non-empty sequence of them."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1:
        return (int(value),)
    if (
        isinstance(value, list | tuple)
        and len(value) >= 1
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1
                for v in value)
    ):
        return tuple(int(v) for v in value)
    raise ValueError(
        f"The 'hidden' parameter of {_owner(owner)} must be an int >= 1 or a non-empty "
        f"sequence of ints >= 1 (hidden layer widths). Got {value!r} instead."
    )


# ----------------------------------------------------------------------------- inputs
def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, list | tuple):
        try:
            return torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"The '{name}' argument could not be read as an array: {err}") from err
    raise ValueError(
        f"The '{name}' argument must be a torch.Tensor or numpy array. "
        f"Got {type(value).__name__} instead."
    )


def _real_2d(value: Any, name: str, what: str) -> torch.Tensor:
    t = _as_tensor(value, name)
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or t.dtype in (
        torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"The '{name}' argument must hold real numbers. Got dtype {t.dtype}.")
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(
            f"The '{name}' argument must be {what}. Got shape {tuple(t.shape)} instead."
        )
    if t.shape[0] == 0:
        raise ValueError(f"The '{name}' argument is empty (0 rows).")
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t).all(dim=1)).sum())
        raise ValueError(
            f"The '{name}' argument contains NaN or infinite values (in {bad} of "
            f"{t.shape[0]} rows)."
        )
    return t


def as_features(x: Any, *, num_features: int | None = None, name: str = "x") -> torch.Tensor:
    """Validate inputs ``(N, D)`` (a 1-D array is read as ``(N, 1)``); float32, finite.
    ``num_features`` is the ``D`` seen in ``fit``."""
    t = _real_2d(x, name, "a 2-D array of shape (N, D)")
    if num_features is not None and t.shape[1] != num_features:
        raise ValueError(
            f"The '{name}' argument has {t.shape[1]} features (columns) but the model was "
            f"fitted on {num_features}."
        )
    return t


def as_regression_data(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a regression training set: ``x (N, D)``, ``y (N, O)`` (1-D ``y`` is read as
    ``(N, 1)``), both finite float32 with the same number of rows."""
    xt = as_features(x)
    yt = _real_2d(y, "y", "a 1-D array (N,) or a 2-D array (N, O) of regression targets")
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"The 'x' and 'y' arguments must have the same number of rows. Got "
            f"{xt.shape[0]} rows in x and {yt.shape[0]} in y."
        )
    return xt, yt


def as_labels(labels: Any, n: int, num_classes: int | None = None,
              *, name: str = "labels") -> torch.Tensor:
    """Validate integer class labels ``(N,)`` (in ``[0, num_classes)`` when given)."""
    y = _as_tensor(labels, name)
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
            f"The 'x' and '{name}' arguments must have the same number of rows. Got {n} rows "
            f"in x and {len(y)} in {name}."
        )
    y = y.to(torch.int64)
    if int(y.min()) < 0 or (num_classes is not None and int(y.max()) >= num_classes):
        hi = "" if num_classes is None else f", {num_classes - 1}]"
        raise ValueError(
            f"The '{name}' argument must hold class indices in [0{hi or ', ...)'}. Got values "
            f"in [{int(y.min())}, {int(y.max())}] instead."
        )
    return y
