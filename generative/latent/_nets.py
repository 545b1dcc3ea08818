r"""Encoder and decoder networks shared by the latent-variable models, and the validation of
the images they are given (their parameters are checked with :mod:`dunno.validation`).

Two families, chosen with ``net``:

* ``"mlp"``: the image is flattened to :math:`D = CHW` values and passed through fully
  connected ReLU layers of widths ``hidden`` (Kingma & Welling 2014 and Burda et al. 2016 use
  one or two hidden layers on MNIST).
* ``"conv"``: two stride-2 4x4 convolutions (``channels``, ReLU), then one fully connected
  ReLU layer of width ``hidden[-1]``; the decoder mirrors it with two 4x4 stride-2
  transposed convolutions from a :math:`\lceil H/4 \rceil \times \lceil W/4 \rceil` map,
  cropped to :math:`H \times W`.

Encoders map images ``(N, C, H, W)`` to ``(N, out)`` features; decoders map codes
``(N, L)`` to logits ``(N, C, H, W)``. Pixel kinds of the inputs, never guessed:
``"binary"`` (every value exactly 0 or 1) and ``"grey"`` (values in [0, 1]).
"""

from __future__ import annotations

import torch
from torch import nn

from generative.pixels import as_images, flat_note

__all__ = [
    "NETS",
    "check_latent_images",
    "make_decoder",
    "make_encoder",
    "mlp",
]

NETS = ("mlp", "conv")


# ----------------------------------------------------------------------------- images
def check_latent_images(x, image_shape, pixels: str, owner: str, name: str = "x"
                        ) -> torch.Tensor:
    """Validate images for a latent-variable model; returns them as float ``(N, C, H, W)``.

    ``x`` is ``(N, C, H, W)``, or flat ``(N, H * W)`` for a single-channel model
    (:func:`generative.pixels.as_images`).

    ``pixels="binary"`` needs every value exactly 0 or 1; ``pixels="grey"`` values in
    [0, 1]. NaN/inf, a wrong shape or a non-tensor raise with the argument's name, what was
    expected and what was given.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"The '{name}' argument of {owner} must be a torch.Tensor of shape "
                        f"(N, C, H, W). Got {type(x).__name__} instead.")
    x = as_images(x, image_shape)
    c, h, w = image_shape
    if x.dim() != 4 or tuple(x.shape[1:]) != (c, h, w):
        raise ValueError(
            f"The '{name}' argument of {owner} must have shape (N, {c}, {h}, {w})"
            f"{flat_note(image_shape)} (the image size the model was built for). Got shape "
            f"{tuple(x.shape)} instead."
        )
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"The '{name}' argument of {owner} must hold real numbers. Got dtype "
                        f"{x.dtype} instead.")
    xf = x if x.is_floating_point() else x.float()
    if xf.numel() == 0:
        return xf
    if not torch.isfinite(xf).all():
        bad = xf[~torch.isfinite(xf)][0].item()
        row = int((~torch.isfinite(xf)).flatten(1).any(1).nonzero()[0])
        raise ValueError(f"The '{name}' argument of {owner} contains NaN or infinite values "
                         f"(e.g. {bad} in row {row}).")
    if pixels == "binary":
        if not ((xf == 0) | (xf == 1)).all():
            bad = xf[(xf != 0) & (xf != 1)][0].item()
            raise ValueError(
                f"The '{name}' argument of {owner} must hold binary values (0 or 1) for a "
                f"Bernoulli likelihood. Got a value {bad:g} (range [{xf.min().item():g}, "
                f"{xf.max().item():g}]) instead. Binarize the images first (e.g. "
                "(torch.rand_like(x) < x).float(), dunno.data.DynamicBinarize, or the "
                "'mnist-binary' dataset), or use likelihood='continuous-bernoulli' for grey "
                "values in [0, 1]."
            )
    elif xf.min() < 0 or xf.max() > 1:
        raise ValueError(
            f"The '{name}' argument of {owner} must hold grey values in [0, 1]. Got values in "
            f"[{xf.min().item():g}, {xf.max().item():g}] instead (8-bit images: divide by 255)."
        )
    return xf


# ----------------------------------------------------------------------------- networks
def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ReLU between them (none after
    the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _down(size: int) -> int:
    """Spatial size after a 4x4, stride-2, padding-1 convolution."""
    return (size + 2 - 4) // 2 + 1


class _ConvEncoder(nn.Module):
    def __init__(self, image_shape, hidden: tuple[int, ...], channels: tuple[int, int],
                 out: int):
        super().__init__()
        c, h, w = image_shape
        c1, c2 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(c, c1, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, 2, 1), nn.ReLU(),
        )
        h2, w2 = _down(_down(h)), _down(_down(w))
        if h2 < 1 or w2 < 1:
            raise ValueError(f"net='conv' needs images of at least 4x4 pixels. Got {h}x{w}.")
        self.head = mlp((c2 * h2 * w2, hidden[-1], out))
        self.head.insert(0, nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))  # (N, out)


class _ConvDecoder(nn.Module):
    def __init__(self, image_shape, hidden: tuple[int, ...], channels: tuple[int, int],
                 latent: int):
        super().__init__()
        c, h, w = image_shape
        c1, c2 = channels
        self.image_shape = (c, h, w)
        self.h4, self.w4 = -(-h // 4), -(-w // 4)
        self.fc = nn.Sequential(mlp((latent, hidden[-1], c2 * self.h4 * self.w4)), nn.ReLU())
        self.c2 = c2
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c1, c, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _, h, w = self.image_shape
        a = self.fc(z).view(-1, self.c2, self.h4, self.w4)  # (N, C2, H/4, W/4)
        return self.deconv(a)[:, :, :h, :w]  # (N, C, H, W)


class _MLPEncoder(nn.Module):
    def __init__(self, image_shape, hidden: tuple[int, ...], out: int):
        super().__init__()
        c, h, w = image_shape
        self.net = mlp((c * h * w, *hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (N, out)


class _MLPDecoder(nn.Module):
    def __init__(self, image_shape, hidden: tuple[int, ...], latent: int):
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = image_shape
        self.net = mlp((latent, *reversed(hidden), c * h * w))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)  # (N, C, H, W)


def make_encoder(net: str, image_shape, hidden: tuple[int, ...], out: int,
                 channels: tuple[int, int] = (32, 64)) -> nn.Module:
    """Encoder ``(N, C, H, W) -> (N, out)`` of family ``net`` (``"mlp"`` or ``"conv"``)."""
    if net == "mlp":
        return _MLPEncoder(image_shape, hidden, out)
    return _ConvEncoder(image_shape, hidden, channels, out)


def make_decoder(net: str, image_shape, hidden: tuple[int, ...], latent: int,
                 channels: tuple[int, int] = (32, 64)) -> nn.Module:
    """Decoder ``(N, L) -> logits (N, C, H, W)`` mirroring :func:`make_encoder`."""
    if net == "mlp":
        return _MLPDecoder(image_shape, hidden, latent)
    return _ConvDecoder(image_shape, hidden, channels, latent)

