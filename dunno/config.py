"""What the typed run configurations share (``ClassifierConfig``, ``DensityConfig``,
``GANConfig``): building from a dict with unknown keys rejected, and the ``KEY=VALUE``
command-line options that fill their ``options`` dicts. Their fields are checked with
:mod:`dunno.validation` (the configuration object is the owner named in the messages)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, fields
from typing import Any

__all__ = ["RunConfig", "parse_option_value", "parse_options"]


def parse_option_value(text: str) -> Any:
    """A command-line value: JSON when it parses (``8`` -> 8, ``[1, 2]`` -> [1, 2]), ``true`` /
    ``false`` in any case -> bool, anything else the string itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(items: Iterable[str], flag: str = "--option") -> dict[str, Any]:
    """``["depth=8", "spectral_norm=true"]`` -> ``{"depth": 8, "spectral_norm": True}``.

    Values go through :func:`parse_option_value`; a later repeat of a key wins. A ValueError
    names ``flag`` for an item that is not ``KEY=VALUE``.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} must look like KEY=VALUE. Got {item!r}.")
        options[key.strip()] = parse_option_value(value)
    return options


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

    @classmethod
    def resolve(cls, config=None, overrides: dict[str, Any] | None = None, **named: Any):
        """The configuration a ``train_*(name, data, epochs, config=..., **overrides)`` call
        means: ``config`` (default: all defaults), then ``overrides``, then the ``named``
        values that are not None; unknown keys are a ValueError (:meth:`from_dict`)."""
        values = asdict(config or cls())
        values.update(overrides or {})
        values.update({key: value for key, value in named.items() if value is not None})
        return cls.from_dict(values)
