"""Validation of the pixel kind and of the images given to an autoregressive model (the
scalar parameters are checked with :mod:`dunno.validation`).

Two pixel kinds, never guessed from the data:

* ``"binary"``: every value exactly 0 or 1 (any float or integer dtype). Grey images must be
  binarised by the caller (a fixed Bernoulli draw, :class:`dunno.data.DynamicBinarize`, the
  ``mnist-binary`` dataset, or a threshold).
* ``"8bit"``: integer values 0..255, as ``uint8`` or as an integer/float tensor holding
  whole numbers. Data scaled to [0, 1] (``uint8 / 255``) is rejected with a hint to pass
  ``(x * 255).round()``.
"""

from __future__ import annotations

import torch

from dunno.validation import check_choice
from generative.pixels import as_images, flat_note

__all__ = ["PIXEL_KINDS", "check_images", "check_pixels"]

PIXEL_KINDS = ("binary", "8bit")


def check_pixels(pixels, owner: str, allowed: tuple[str, ...] = PIXEL_KINDS) -> str:
    """The pixel kind of a model: one of ``allowed`` (a subset of :data:`PIXEL_KINDS`)."""
    return check_choice(pixels, "pixels", owner, allowed)


def check_images(
    x, image_shape: tuple[int, int, int], pixels: str, owner: str, name: str = "x"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate images for a model and return ``(x_float, target)``.

    ``x`` is ``(N, C, H, W)``, or flat ``(N, H * W)`` for a single-channel model
    (:func:`generative.pixels.as_images`). ``x_float (N, C, H, W)`` float32 holds the pixel
    values (0/1, or 0..255); ``target (N, C, H, W)`` is float 0/1 for binary pixels and int64
    0..255 for 8-bit ones. Errors name the argument ``name`` of ``owner`` and the value.
    """
    arg = f"The '{name}' argument of {owner}"
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{arg} must be a torch.Tensor of images (N, C, H, W). Got {type(x).__name__} "
            "instead."
        )
    x = as_images(x, image_shape)
    c, h, w = image_shape
    if x.dim() != 4 or tuple(x.shape[1:]) != (c, h, w):
        got = "x".join(str(v) for v in x.shape[1:]) if x.dim() == 4 else f"shape {tuple(x.shape)}"
        raise ValueError(
            f"{arg} does not fit the model: it was built for images of shape (N, {c}, {h}, "
            f"{w}) (C x H x W = {c}x{h}x{w}){flat_note(image_shape)}; got {got}. A model (or "
            "a trained checkpoint) only scores images of the size it was built for."
        )
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{arg} must hold real-valued images. Got dtype {x.dtype} instead.")
    if x.dtype == torch.uint8:
        if pixels == "binary" and x.numel() and int(x.max()) > 1:
            raise _not_binary(x.float(), arg)
        xf = x.float()
    else:
        xf = x.float()
        # 0/1 values only: one fast check (any other value, NaN and inf included, fails it)
        binary = pixels == "binary" and torch.equal(xf, xf.bool().to(xf.dtype))
        if not binary and x.numel() and not torch.isfinite(xf).all():
            bad = xf[~torch.isfinite(xf)][0].item()
            row = int((~torch.isfinite(xf)).flatten(1).any(1).nonzero()[0])
            raise ValueError(f"{arg} contains NaN or infinite values (e.g. {bad} in row "
                             f"{row}).")
        if pixels == "binary":
            if not binary and x.numel():
                raise _not_binary(xf, arg)
        elif x.numel():
            if not (xf == xf.round()).all():
                bad = xf[xf != xf.round()][0].item()
                hint = ""
                if xf.min() >= 0 and xf.max() <= 1:
                    hint = (
                        " The values lie in [0, 1]: if they are 8-bit intensities divided by "
                        "255, pass (x * 255).round() instead."
                    )
                raise ValueError(
                    f"{arg} must hold 8-bit pixels (the model has a 256-way softmax): integer "
                    f"values 0..255 (uint8, or floats holding whole numbers). Got a "
                    f"non-integer value {bad:g} instead.{hint}"
                )
            if xf.min() < 0 or xf.max() > 255:
                raise ValueError(
                    f"{arg} must hold 8-bit pixels, values in 0..255. Got values in "
                    f"[{xf.min().item():g}, {xf.max().item():g}] instead."
                )
    target = xf if pixels == "binary" else xf.long()
    return xf, target


def _not_binary(xf: torch.Tensor, arg: str) -> ValueError:
    bad = xf[(xf != 0) & (xf != 1)][0].item()
    return ValueError(
        f"{arg} must hold 0/1 values: the model has binary pixels (Bernoulli). Got values other "
        f"than 0 and 1 (e.g. {bad:g}; range [{xf.min().item():g}, {xf.max().item():g}]). "
        "Binarize them "
        "first: a fixed draw (torch.rand_like(x) < x).float(), dynamic binarisation with "
        "dunno.data.DynamicBinarize, a pre-binarised dataset such as 'mnist-binary', or a "
        "threshold (x > 0.5).float(); for 8-bit data use a model with pixels='8bit'."
    )
