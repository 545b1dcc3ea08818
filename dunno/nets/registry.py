"""The backbone registry: look up, describe and build backbones by name.

``create(name, in_channels, num_classes, **options)`` builds a :class:`~dunno.nets.base.Backbone`;
its ``config`` dict holds every argument, so ``create(**model.config)`` rebuilds it (checkpoints
store that dict as JSON). Option names are checked against the backbone's keyword-only
constructor parameters; option values are checked by the constructor itself.

:data:`BACKBONES` is a :class:`dunno.registry.Registry` (read like a dict). A new backbone is
a :class:`~dunno.nets.base.Backbone` subclass with a ``name``, added with
:func:`register_backbone` (usable as a class decorator) or, from another distribution, through
the entry-point group ``dunno.nets``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from dunno.nets.base import Backbone, UnknownOptionError
from dunno.nets.densenet import DenseNet
from dunno.nets.googlenet import GoogLeNet
from dunno.nets.lenet import LeNet5
from dunno.nets.recurrent import GRU, LSTM
from dunno.nets.resnet import ResNet
from dunno.nets.resnet_cifar import ResNet18CIFAR
from dunno.nets.transformer import Transformer
from dunno.nets.vgg import VGG
from dunno.nets.vit import ViT
from dunno.registry import Registry

__all__ = [
    "BACKBONES",
    "available",
    "backbone_class",
    "count_parameters",
    "create",
    "default_options",
    "describe",
    "register_backbone",
]




#: Every backbone by name (plugins of the entry-point group ``dunno.nets`` included).
BACKBONES: Registry[type[Backbone]] = Registry("backbone", "dunno.nets", base=Backbone)
for _cls in (LeNet5, VGG, GoogLeNet, ResNet, ResNet18CIFAR, DenseNet, ViT, LSTM, GRU,
             Transformer):
    BACKBONES.register(obj=_cls)
del _cls


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Add ``cls`` to :data:`BACKBONES` under ``cls.name`` (usable as a class decorator);
    a name taken by another class is refused."""
    return BACKBONES.register(obj=cls)


def available() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(BACKBONES.available())


def backbone_class(name: str) -> type[Backbone]:
    """The class registered as ``name``; ValueError listing the known names otherwise."""
    return BACKBONES.get(name)


def default_options(name: str) -> dict[str, Any]:
    """The keyword options of backbone ``name`` with their defaults, in signature order."""
    signature = inspect.signature(backbone_class(name).__init__)
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def describe(name: str) -> dict[str, Any]:
    """``{"name", "summary", "reference", "options"}`` for backbone ``name``.

    ``summary`` is a one-line description, ``reference`` the paper, ``options`` the defaults
    (:func:`default_options`).
    """
    cls = backbone_class(name)
    return {
        "name": cls.name,
        "summary": cls.summary,
        "reference": cls.reference,
        "options": default_options(name),
    }


def create(name: str, in_channels: int, num_classes: int, **options: Any) -> Backbone:
    """Build backbone ``name`` for inputs with ``in_channels`` channels and ``num_classes`` logits.

    Parameters
    ----------
    name : str
        One of :func:`available`.
    in_channels : int
        Input channels ``C`` of images ``(N, C, H, W)`` (features per step for sequences).
    num_classes : int
        Logits of the head: ``model(x)`` is ``(N, num_classes)``.
    **options
        Backbone options (see :func:`describe`); every image backbone takes ``input_size``
        (``int`` or ``(H, W)``, default 28) and ``dropout``.

    Returns
    -------
    Backbone
        With ``features(x) -> (N, num_features)``, ``head``, ``num_features`` and ``config``.

    Raises
    ------
    ValueError
        For an unknown ``name`` or an invalid option value.
    UnknownOptionError
        (a TypeError and a ValueError) for an option the backbone does not accept.
    """
    cls = backbone_class(name)
    accepted = list(default_options(name))
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise UnknownOptionError(
            f"Unknown option {unknown[0]!r} for backbone {name!r}. "
            f"Accepted options: {', '.join(accepted)}."
        )
    return cls(in_channels, num_classes, **options)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) parameter elements of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
