r"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016a), with the optional gated
variant of van den Oord et al. (2016b).

Every conditional :math:`p(x_d \mid x_{<d})` (raster order, channels R < G < B within a
pixel) is read off one convolutional pass over the image; masked convolutions
(:mod:`~generative.autoregressive.masks`) keep each output from seeing the present and the
future. The architecture of the paper (Sec. 3.4 and Figure 5, residual blocks of Sec. 3.5),
with ``2h`` feature maps in the residual stream:

.. math::

    z^{(0)} &= \mathrm{Conv}^{A}_{7\times 7}(x) \\
    z^{(l)} &= z^{(l-1)} + \mathrm{Conv}^{B}_{1\times1}\,\rho\,
        \mathrm{Conv}^{B}_{3\times3}\,\rho\,\mathrm{Conv}^{B}_{1\times1}\,\rho\,
        (z^{(l-1)}), \quad l = 1..L \\
    \ell &= \mathrm{Conv}^{B}_{1\times1}\,\rho\,\mathrm{Conv}^{B}_{1\times1}\,\rho\,(z^{(L)})

(:math:`\rho` = ReLU; the inner width of a block is ``h``). The output has one logit per
channel (binary pixels, sigmoid) or 256 per channel (8-bit pixels, softmax).

**Gated variant** (``gated=True``; van den Oord et al. 2016b): a vertical stack (a
:math:`(\lceil k/2 \rceil) \times k` view of the rows above, shifted down one row) and a
horizontal stack (a :math:`1 \times \lceil k/2 \rceil` view of the current row to the left)
remove the blind spot of masked 3x3 stacks; both use the gated unit

.. math::

    y = \tanh(W_f * z) \odot \sigma(W_g * z),

the vertical stack feeds the horizontal one through a 1x1 convolution, and the horizontal
stack is residual. The first horizontal layer is masked A (7 wide), later ones masked B.

References:
    van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
    van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, "Conditional Image
    Generation with PixelCNN Decoders", NIPS 2016.
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.checkpoints import register_model
from dunno.validation import check_bool, check_int

from ._base import LEVELS, AutoregressiveImageModel
from .masks import MaskedConv2d, channel_groups, shift_down

__all__ = ["PixelCNN"]


class _ResidualBlock(nn.Module):
    """``z + 1x1 (h -> 2h) . 3x3 (h -> h) . 1x1 (2h -> h)`` with ReLUs, all masked B."""

    def __init__(self, hidden: int, colors: int):
        super().__init__()
        self.reduce = MaskedConv2d(2 * hidden, hidden, 1, "B", colors=colors)
        self.conv = MaskedConv2d(hidden, hidden, 3, "B", colors=colors)
        self.expand = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors=colors)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, 2h, H, W)
        y = self.reduce(torch.relu(z))  # (N, h, H, W)
        y = self.conv(torch.relu(y))  # (N, h, H, W)
        return z + self.expand(torch.relu(y))  # (N, 2h, H, W)


def _gate_groups(channels: int, colors: int) -> torch.Tensor:
    """Groups of ``2 * channels`` pre-activations (tanh half, sigmoid half): the pair
    ``(i, i + channels)`` shares the group of output feature ``i``."""
    g = channel_groups(channels, colors)
    return torch.cat([g, g])


def _gate(z: torch.Tensor) -> torch.Tensor:
    f, g = z.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class _GatedLayer(nn.Module):
    """One gated layer with a vertical and a horizontal stack (van den Oord et al. 2016b).

    ``(v, h) -> (v', h')``, both ``(N, p, H, W)``. The vertical stack sees the rows up to the
    current one (mask ``"V"``) and reaches the horizontal stack only shifted down a row.
    """

    def __init__(self, in_channels: int, channels: int, kernel: int, colors: int,
                 first: bool, in_groups: torch.Tensor | None = None):
        super().__init__()
        groups2 = _gate_groups(channels, colors)
        self.first = first
        self.v_conv = MaskedConv2d(in_channels, 2 * channels, kernel, "V", colors=colors,
                                   in_groups=in_groups, out_groups=groups2)
        self.h_conv = MaskedConv2d(in_channels, 2 * channels, (1, kernel), "A" if first else "B",
                                   colors=colors, in_groups=in_groups, out_groups=groups2)
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)  # sees only rows above
        self.h_out = MaskedConv2d(channels, channels, 1, "B", colors=colors)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.v_conv(v)  # (N, 2p, H, W): rows <= r, all columns
        h_pre = self.h_conv(h) + self.v_to_h(shift_down(v_pre))  # (N, 2p, H, W)
        h_new = self.h_out(_gate(h_pre))  # (N, p, H, W)
        if not self.first:
            h_new = h + h_new
        return _gate(v_pre), h_new


@register_model("generative/pixelcnn")
class PixelCNN(AutoregressiveImageModel):
    """PixelCNN over images ``image_shape = (C, H, W)`` (C = 1 or 3).

    Args:
        image_shape: ``(C, H, W)``.
        pixels: ``"binary"`` (one sigmoid logit per channel) or ``"8bit"`` (256-way softmax
            per channel; integer data 0..255).
        hidden: ``h``; the residual stream has ``2h`` feature maps (gated: ``2h`` per stack).
        layers: residual blocks (gated: gated layers after the first).
        output_hidden: feature maps of the two 1x1 output layers (default ``2h``).
        gated: use the gated vertical/horizontal-stack variant (2016b).
        kernel_size: first-layer kernel (7 in the paper).
        gated_kernel: kernel of the later gated layers (3).

    ``forward(u (N, C, H, W)) -> logits (N, C, H, W)`` or ``(N, 256, C, H, W)``.
    """

    arch = "generative/pixelcnn"

    def __init__(
        self,
        image_shape=(1, 28, 28),
        pixels: str = "binary",
        hidden: int = 32,
        layers: int = 7,
        output_hidden: int | None = None,
        gated: bool = False,
        kernel_size: int = 7,
        gated_kernel: int = 3,
    ):
        super().__init__(image_shape, pixels)
        name = "PixelCNN"
        hidden = check_int(hidden, "hidden", name, low=1)
        layers = check_int(layers, "layers", name, low=0)
        output_hidden = check_int(
            output_hidden if output_hidden is not None else 2 * hidden, "output_hidden", name,
            low=1,
        )
        kernel_size = check_int(kernel_size, "kernel_size", name, low=1)
        gated_kernel = check_int(gated_kernel, "gated_kernel", name, low=1)
        for key, k in (("kernel_size", kernel_size), ("gated_kernel", gated_kernel)):
            if k % 2 == 0:
                raise ValueError(
                    f"The '{key}' parameter of PixelCNN must be an odd int. Got {k} instead."
                )
        check_bool(gated, "gated", "PixelCNN")
        c = self.image_shape[0]
        if hidden < c:
            raise ValueError(
                f"The 'hidden' parameter of PixelCNN must be >= the number of colours ({c}). "
                f"Got {hidden} instead."
            )
        self.gated = gated
        width = 2 * hidden
        image_groups = torch.arange(c)
        if gated:
            self.stack = nn.ModuleList(
                [_GatedLayer(c, width, kernel_size, c, first=True, in_groups=image_groups)]
                + [_GatedLayer(width, width, gated_kernel, c, first=False)
                   for _ in range(layers)]
            )
        else:
            self.input_conv = MaskedConv2d(c, width, kernel_size, "A", colors=c,
                                           in_groups=image_groups)
            self.blocks = nn.Sequential(*[_ResidualBlock(hidden, c) for _ in range(layers)])
        per_channel = 1 if pixels == "binary" else LEVELS
        out_groups = torch.arange(c).repeat_interleave(per_channel)  # channel k*L + v -> k
        self.output = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(width, output_hidden, 1, "B", colors=c),
            nn.ReLU(),
            MaskedConv2d(output_hidden, c * per_channel, 1, "B", colors=c,
                         out_groups=out_groups),
        )
        self.config = {
            "image_shape": list(self.image_shape),
            "pixels": pixels,
            "hidden": hidden,
            "layers": layers,
            "output_hidden": output_hidden,
            "gated": gated,
            "kernel_size": kernel_size,
            "gated_kernel": gated_kernel,
        }

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.gated:
            v, h = u, u
            for layer in self.stack:
                v, h = layer(v, h)  # (N, 2h, H, W) each
            z = h
        else:
            z = self.blocks(self.input_conv(u))  # (N, 2h, H, W)
        out = self.output(z)  # (N, C * L, H, W)
        if self.pixels == "binary":
            return out  # (N, C, H, W)
        n, _, h, w = out.shape
        c = self.image_shape[0]
        return out.view(n, c, LEVELS, h, w).transpose(1, 2)  # (N, 256, C, H, W)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gated={self.gated}"
