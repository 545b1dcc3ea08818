"""The base class every backbone derives from, and the input-shape helpers they share.

Every backbone in :mod:`dunno.nets` is a :class:`Backbone`:

* ``features(x) -> (N, F)``: the penultimate representation, ending with the backbone's
  pre-head :class:`torch.nn.Dropout` (``model.dropout``, identity in eval mode) so that
  MC-Dropout (Gal & Ghahramani, 2016) can sample it by switching that module to train mode;
* ``head``: the final :class:`torch.nn.Linear` ``(N, F) -> (N, num_classes)``;
* ``num_features``: ``F``;
* ``forward(x) = head(features(x))``;
* ``config``: a JSON-serialisable dict (``name``, ``in_channels``, ``num_classes`` and every
  option) such that ``dunno.nets.create(**model.config)`` rebuilds the same architecture.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from dunno.validation import check_float, check_int

__all__ = [
    "Backbone",
    "UnknownOptionError",
    "as_hw",
    "check_image",
    "rows_as_sequence",
]


class UnknownOptionError(TypeError, ValueError):
    """An option name that a backbone does not accept.

    Subclasses both :class:`TypeError` (what Python raises for an unexpected keyword) and
    :class:`ValueError` (what command-line code catches for bad user input).
    """


def as_hw(input_size: Any, owner: str) -> tuple[int, int]:
    """Normalise an ``input_size`` option (``int`` or ``(H, W)``) to a ``(H, W)`` tuple."""
    if isinstance(input_size, int) and not isinstance(input_size, bool) and input_size >= 1:
        return (input_size, input_size)
    if (
        isinstance(input_size, list | tuple)
        and len(input_size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_size)
    ):
        return (int(input_size[0]), int(input_size[1]))
    raise ValueError(
        f"The 'input_size' parameter of {owner} must be an int >= 1 or a pair (H, W) of ints "
        f">= 1. Got {input_size!r} instead."
    )


def check_image(x: torch.Tensor, in_channels: int, owner: str) -> None:
    """Raise ValueError unless ``x`` is a batch of images ``(N, in_channels, H, W)``."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{owner} expects images of shape (N, {in_channels}, H, W). "
            f"Got a tensor of shape {tuple(x.shape)} instead."
        )


def rows_as_sequence(x: torch.Tensor, in_channels: int, width: int, owner: str) -> torch.Tensor:
    """Read images row by row as sequences; pass sequences through.

    An image batch ``(N, C, H, W)`` becomes ``(N, T=H, D=C*W)`` (step ``t`` is image row ``t``
    with its channels concatenated); a sequence batch ``(N, T, D)`` is returned as it is. In
    both cases ``D`` must equal ``in_channels * width``. A plain sequence of ``D`` features per
    step is therefore described by ``in_channels=D, input_size=(T, 1)``.
    """
    if x.dim() == 4:
        n, c, h, w = x.shape
        if c != in_channels or w != width:
            raise ValueError(
                f"{owner} was built for images of shape (N, {in_channels}, H, {width}). "
                f"Got {tuple(x.shape)}; pass in_channels and input_size to match the data."
            )
        return x.permute(0, 2, 1, 3).reshape(n, h, c * w)  # (N, T=H, D=C*W)
    if x.dim() == 3:
        if x.shape[-1] != in_channels * width:
            raise ValueError(
                f"{owner} was built for sequences of shape (N, T, {in_channels * width}). "
                f"Got {tuple(x.shape)} instead."
            )
        return x  # (N, T, D)
    raise ValueError(
        f"{owner} expects images (N, C, H, W) or sequences (N, T, D). "
        f"Got a tensor of shape {tuple(x.shape)} instead."
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"Backbone options must be JSON values; got {type(value).__name__}.")


class Backbone(nn.Module, ABC):
    """Base class of the backbone zoo: ``forward(x) = head(features(x))``.

    Subclasses call ``super().__init__(in_channels, num_classes, options)`` first, with every
    keyword option of their constructor in ``options``, then build their layers and set
    ``self.dropout`` (the last module of ``features``), ``self.head`` and ``self.num_features``.

    Parameters
    ----------
    in_channels : int
        Input channels ``C`` (for sequence models: features per step, see
        :func:`rows_as_sequence`).
    num_classes : int
        Number of logits the head produces.
    options : mapping
        The subclass's keyword options, each a JSON value; must contain ``input_size``
        (``int`` or ``(H, W)``) and ``dropout`` (in ``[0, 1)``).

    Attributes
    ----------
    config : dict
        ``{"name", "in_channels", "num_classes", **options}``, JSON-serialisable;
        ``dunno.nets.create(**config)`` rebuilds the architecture.
    input_size : tuple of int
        ``(H, W)``.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""

    head: nn.Linear
    dropout: nn.Dropout
    num_features: int

    def __init__(self, in_channels: int, num_classes: int, options: Mapping[str, Any]) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = check_int(in_channels, "in_channels", owner, low=1)
        self.num_classes = check_int(num_classes, "num_classes", owner, low=1)
        self.input_size = as_hw(options["input_size"], owner)
        self.dropout_rate = check_float(options["dropout"], "dropout", owner, low=0.0, high=1.0,
                                        high_open=True)
        self.config: dict[str, Any] = {
            "name": self.name,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            **{key: _jsonable(value) for key, value in options.items()},
        }

    @abstractmethod
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, F)``, ending with ``self.dropout``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` = ``head(features(x))``."""
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={getattr(self, 'num_features', None)}"
