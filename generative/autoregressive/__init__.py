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
    "shift_down",
    "skew",
    "unskew",
]

#: command-line names of the models
AUTOREGRESSIVE_MODELS: dict[str, type[AutoregressiveImageModel]] = {
    "nade": NADE,
    "pixelcnn": PixelCNN,
    "row-lstm": RowLSTM,
    "diagonal-bilstm": DiagonalBiLSTM,
}


def create(name: str, image_shape, **options: Any) -> AutoregressiveImageModel:
    """Build the model registered as ``name`` (:data:`AUTOREGRESSIVE_MODELS`) for images of
    shape ``(C, H, W)``; ``options`` are its keyword arguments (``hidden``, ``layers``,
    ``pixels``, ``gated``, ``order_agnostic``, ...)."""
    if name not in AUTOREGRESSIVE_MODELS:
        raise ValueError(
            f"Unknown autoregressive model {name!r}. Available: "
            f"{', '.join(AUTOREGRESSIVE_MODELS)}."
        )
    return AUTOREGRESSIVE_MODELS[name](image_shape=image_shape, **options)
