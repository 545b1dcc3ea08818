r"""Masked convolutions for autoregressive image models (van den Oord et al. 2016a, Sec. 3.4).

Pixels are generated in raster order (row by row, left to right) and, within a pixel, in
channel order (R, then G, then B). A masked convolution zeroes the kernel weights that would
let an output at pixel :math:`(r, c)` see the input at :math:`(r', c')` with
:math:`(r', c') \succ (r, c)` in raster order:

.. math::

    M[o, i, y, x] = \begin{cases}
        1 & y < y_0 \ \text{or}\ (y = y_0,\ x < x_0) \\
        [g(i) < g(o)] & (y, x) = (y_0, x_0),\ \text{type A} \\
        [g(i) \le g(o)] & (y, x) = (y_0, x_0),\ \text{type B} \\
        0 & \text{otherwise}
    \end{cases}

where :math:`(y_0, x_0)` is the kernel centre and :math:`g(\cdot) \in \{0, \dots, C-1\}` is
the *colour group* of a feature map: the input image's channel ``k`` has group ``k``; hidden
feature maps are split into ``C`` contiguous groups (:func:`channel_groups`). Type A is used
once, on the image itself (a pixel's own value and later channels are hidden); type B on every
later layer (a feature may use features of the same location that only depend on the past).
With one channel, type A hides the centre and type B keeps it.

Mask type ``"V"`` (the *vertical stack* of the gated PixelCNN, van den Oord et al. 2016b)
keeps every row up to and including the centre row, all columns; its output must be shifted
down one row (:func:`shift_down`) before a pixel may use it.

References:
    van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
    van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", NIPS 2016.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MaskedConv2d", "causal_mask", "channel_groups", "shift_down"]

MASK_TYPES = ("A", "B", "V")


def channel_groups(num_channels: int, colors: int) -> torch.Tensor:
    """Colour group of each of ``num_channels`` feature maps: ``floor(i * colors / n)``,
    i.e. ``colors`` contiguous, near-equal groups. ``(num_channels,)`` int64."""
    if num_channels < colors:
        raise ValueError(
            f"A masked layer needs at least one channel per colour: {num_channels} channels "
            f"for {colors} colours."
        )
    return torch.arange(num_channels) * colors // num_channels


def causal_mask(
    kernel_size: tuple[int, int],
    mask_type: str,
    in_groups: torch.Tensor,
    out_groups: torch.Tensor,
) -> torch.Tensor:
    """The mask ``(out, in, kh, kw)`` of the formula in the module docstring.

    Args:
        kernel_size: ``(kh, kw)``, both odd; the centre is ``(kh // 2, kw // 2)``.
        mask_type: ``"A"``, ``"B"`` or ``"V"``.
        in_groups: ``(in,)`` colour group of each input channel.
        out_groups: ``(out,)`` colour group of each output channel.
    """
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"Masked convolutions need odd kernel sizes. Got {kernel_size}.")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"The 'mask_type' must be one of {MASK_TYPES}. Got {mask_type!r}.")
    cy, cx = kh // 2, kw // 2
    mask = torch.zeros(len(out_groups), len(in_groups), kh, kw)  # (O, I, kh, kw)
    if mask_type == "V":
        mask[:, :, : cy + 1, :] = 1.0
        return mask
    mask[:, :, :cy, :] = 1.0
    mask[:, :, cy, :cx] = 1.0
    o, i = out_groups[:, None], in_groups[None, :]
    centre = (i < o) if mask_type == "A" else (i <= o)  # (O, I)
    mask[:, :, cy, cx] = centre.to(mask.dtype)
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 2-D convolution whose kernel is multiplied by a fixed causal mask on every call.

    ``(N, in_channels, H, W) -> (N, out_channels, H, W)`` ("same" zero padding, stride 1).

    Args:
        in_channels, out_channels: feature maps in and out.
        kernel_size: int or ``(kh, kw)``, odd.
        mask_type: ``"A"`` (first layer, on the image), ``"B"`` (later layers) or ``"V"``
            (vertical stack: rows up to the centre row; shift its output down).
        colors: number of colour channels ``C`` of the image (1 or 3).
        in_groups, out_groups: explicit colour group per channel; default
            :func:`channel_groups` (for the image itself pass ``torch.arange(C)``).
        bias: add a learned bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: str,
        *,
        colors: int = 1,
        in_groups: torch.Tensor | None = None,
        out_groups: torch.Tensor | None = None,
        bias: bool = True,
    ):
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size, kernel_size)
        kernel_size = (int(kernel_size[0]), int(kernel_size[1]))
        super().__init__(
            in_channels, out_channels, kernel_size,
            padding=(kernel_size[0] // 2, kernel_size[1] // 2), bias=bias,
        )
        if in_groups is None:
            in_groups = channel_groups(in_channels, colors)
        if out_groups is None:
            out_groups = channel_groups(out_channels, colors)
        if len(in_groups) != in_channels or len(out_groups) != out_channels:
            raise ValueError("in_groups / out_groups must give one group per channel.")
        self.mask_type = mask_type
        self.register_buffer(
            "mask", causal_mask(kernel_size, mask_type, in_groups, out_groups),
            persistent=False,
        )
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mask_type={self.mask_type!r}"


def shift_down(x: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """Shift feature maps ``(N, C, H, W)`` down by ``rows``: row ``r`` of the output is row
    ``r - rows`` of the input, the top rows are zero."""
    return F.pad(x, (0, 0, rows, 0))[:, :, : x.shape[2], :]
