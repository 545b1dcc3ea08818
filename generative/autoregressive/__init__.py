"""Autoregressive density models of images with exact likelihoods.

* :class:`NADE` -- Larochelle & Murray (2011), tied weights, one-pass :math:`O(HD)`
  likelihood; optional order-agnostic training (Uria et al. 2014). Binary pixels.
* :class:`PixelCNN` -- van den Oord et al. (2016a) masked convolutions (type A / B, colour
  masks), residual blocks; optional gated variant (2016b). Binary or 8-bit pixels.
* :class:`RowLSTM`, :class:`DiagonalBiLSTM` -- PixelRNN (van den Oord et al. 2016a).
  Binary or 8-bit pixels.

Every model is an ``nn.Module`` with ``log_prob(x) -> (N,)`` (exact, nats), ``loss(x)``
(mean NLL), ``sample(n)`` (ancestral), ``logits(x)``, and a JSON ``config`` from which
:func:`dunno.checkpoints.load_model` rebuilds it (registered as ``"generative/<name>"``).
Images are ``(N, C, H, W)``: 0/1 values for ``pixels="binary"``, integers 0..255 (uint8 or
whole-number floats) for ``pixels="8bit"``; anything else raises a ValueError that says how
to convert it.

Example::

    from generative.autoregressive import NADE
    nade = NADE((1, 28, 28), hidden=500)
    loss = nade.loss(x_binary)           # mean NLL (nats) to minimise
    nade.log_prob(x_binary)              # (N,) exact log-likelihoods, nats
    nade.sample(16)                      # (16, 1, 28, 28) ancestral samples
"""

from __future__ import annotations

from typing import Any

from dunno.registry import Registry

from ._base import AutoregressiveImageModel
from .masks import MaskedConv2d, causal_mask, channel_groups, shift_down
from .nade import NADE
from .pixelcnn import PixelCNN
from .pixelrnn import DiagonalBiLSTM, RowLSTM, skew, unskew

__all__ = [
    "AUTOREGRESSIVE_MODELS",
    "AutoregressiveImageModel",
    "DiagonalBiLSTM",
    "MaskedConv2d",
    "NADE",
    "PixelCNN",
    "RowLSTM",
    "causal_mask",
    "channel_groups",
    "create",
    "register_autoregressive_model",
    "shift_down",
    "skew",
    "unskew",
]

#: command-line names of the models (a :class:`dunno.registry.Registry`, read like a dict;
#: plugins of the entry-point group ``dunno.autoregressive`` included)
AUTOREGRESSIVE_MODELS: Registry[type[AutoregressiveImageModel]] = Registry(
    "autoregressive model", "dunno.autoregressive"
)
for _name, _cls in (("nade", NADE), ("pixelcnn", PixelCNN), ("row-lstm", RowLSTM),
                    ("diagonal-bilstm", DiagonalBiLSTM)):
    AUTOREGRESSIVE_MODELS.register(_name, _cls)
del _name, _cls


def register_autoregressive_model(name: str, cls=None):
    """Add ``cls`` (``cls(image_shape=..., **options)``) to :data:`AUTOREGRESSIVE_MODELS` as
    ``name``; without ``cls``, a class decorator. A name taken by another class is refused."""
    return AUTOREGRESSIVE_MODELS.register(name, cls)


def create(name: str, image_shape, **options: Any) -> AutoregressiveImageModel:
    """Build the model registered as ``name`` (:data:`AUTOREGRESSIVE_MODELS`) for images of
    shape ``(C, H, W)``; ``options`` are its keyword arguments (``hidden``, ``layers``,
    ``pixels``, ``gated``, ``order_agnostic``, ...)."""
    return AUTOREGRESSIVE_MODELS.create(name, image_shape=image_shape, **options)
