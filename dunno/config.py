"""What the typed run configurations share (``ClassifierConfig``, ``DensityConfig``,
``GANConfig``): building from a dict with unknown keys rejected, and integer checks phrased the
scikit-learn way."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

__all__ = ["RunConfig"]


class RunConfig:
    """Mixin for ``@dataclass`` configurations."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """``cls(**values)``; a ValueError naming unknown keys and the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} key(s) {unknown}; known keys: "
                             f"{sorted(known)}.")
        return cls(**values)

    def _check_int(self, name: str, minimum: int, optional: bool = False) -> None:
        """Raise unless field ``name`` is an int (not a bool) ``>= minimum`` (or None when
        ``optional``)."""
        value = getattr(self, name)
        if optional and value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(
                f"The '{name}' parameter of {type(self).__name__} must be "
                f"{'None or ' if optional else ''}an int >= {minimum}. Got {value!r} instead."
            )
