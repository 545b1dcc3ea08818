r"""PixelRNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016a): Row LSTM and Diagonal BiLSTM.

Both models share the paper's frame (Sec. 3, Table 1): a masked-A 7x7 convolution maps the
image to ``2h`` feature maps; ``L`` LSTM layers with ``h`` hidden maps follow, each wrapped in
a residual connection (its ``h`` outputs are brought back to ``2h`` by a masked-B 1x1
convolution and added to its input, Sec. 3.5); two masked-B 1x1 output layers (ReLU) give
one logit per channel (binary pixels) or 256 per channel (8-bit softmax). Colour channels
are handled by splitting every feature map into R, G, B groups and masking all
input-to-state convolutions (:mod:`~generative.autoregressive.masks`); the LSTM gates of a
hidden map share its group, so channel ``k`` of a pixel only sees channels ``< k`` of that
pixel.

Both use the LSTM update, with the four gates computed from an input-to-state term
:math:`K^{is} \circledast x` and a state-to-state term :math:`K^{ss} \circledast h_{prev}`:

.. math::

    [o, f, i, g] = [\sigma, \sigma, \sigma, \tanh]\big(K^{ss} \circledast h_{prev}
        + K^{is} \circledast x\big), \qquad
    c = f \odot c_{prev} + i \odot g, \qquad h = o \odot \tanh(c).

**Row LSTM** processes the image a row at a time, top to bottom: :math:`K^{is}` is a
masked-B 1x3 convolution along the row (computed for all rows at once), :math:`K^{ss}` a
1-D convolution of width 3 over the previous row's hidden state. Its receptive field is a
triangle above the pixel.

**Diagonal BiLSTM** *skews* the input map (row :math:`r` shifted right by :math:`r`, giving
:math:`H \times (W + H - 1)`) so that each column of the skewed map is a diagonal of the
image, then runs a column-wise LSTM left to right: :math:`K^{is}` is a masked-B 1x1
convolution, :math:`K^{ss}` a 2x1 convolution over the previous column's state, so the state
at :math:`(r, c)` combines its left neighbour :math:`(r, c-1)` and the pixel above
:math:`(r-1, c)`. A second LSTM does the same on the left-right mirrored map; its output at
:math:`(r, c)` has seen pixels to the right in row :math:`r`, so it is shifted down one row
before being added to the left-to-right output. Unskewing restores :math:`H \times W`. (The
layer computes exactly this, diagonal by diagonal on the pixels only, without forming the
skewed map: :mod:`~generative.autoregressive._diagonal`.)

*Receptive field and its blind spot.* The left-to-right state at :math:`(r, c)` sees the
layer's input at every :math:`(r', c')` with :math:`r' \le r, c' \le c`; the shifted
right-to-left output at :math:`(r, c)` is the state at :math:`(r - 1, c)`, which sees
:math:`r' \le r - 1, c' \ge c`. Every earlier pixel is reached except one: the output at
:math:`(r, c)` never depends on the last pixel of the previous row, :math:`(r - 1, W - 1)`,
when :math:`c < W - 1 - k/2` (:math:`k` the odd width of the masked-A input convolution,
:math:`k/2` rounded down; :math:`c < W - 4` for the default 7). The only path to pixels
right of column :math:`c` in earlier rows is the right-to-left LSTM, taken one row up, so
it must pass through a feature of row :math:`\le r - 1`; but no feature of row
:math:`r - 1` or above depends on :math:`(r - 1, W - 1)` (the masked input convolution
gives a feature only pixels of earlier rows and pixels to its left in its own row, and no
pixel lies right of column :math:`W - 1`; the LSTMs and the 1x1 layers never pass
information up a row). The features that do depend on it are in rows :math:`\ge r`, in row
:math:`r` only at columns :math:`\ge W - 1 - k/2` (the input convolution's reach), which
the left-to-right LSTM at :math:`(r, c)` sees only for :math:`c \ge W - 1 - k/2`. Stacking
layers does not change this, since no layer moves information to an earlier row or to the
left within a row. The paper's architecture (the same masked 7x7 input convolution and
the same one-row shift of the right-to-left map) has the same blind spot, although the
paper describes the Diagonal BiLSTM's receptive field as the whole available context.

References:
    van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dunno.checkpoints import register_model
from dunno.validation import check_int

from ._base import LEVELS, AutoregressiveImageModel
from ._diagonal import DiagonalRecursion
from ._products import FeatureLinear
from .masks import MaskedConv2d, channel_groups

__all__ = ["DiagonalBiLSTM", "RowLSTM", "skew", "unskew"]


def _check_4d(x, owner: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"The 'x' argument of {owner} must be a 4-D tensor (N, C, H, W); "
                         f"got {got}.")


def skew(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W) -> (N, C, H, W + H - 1)``: row ``r`` shifted right by ``r`` (zeros
    elsewhere), so column ``j`` holds the anti-diagonal ``{(r, j - r)}``."""
    _check_4d(x, "skew")
    n, c, h, w = x.shape
    s = w + h - 1
    out = x.new_zeros(n, c, h, s)
    # row r of the image starts at element r * s + r of the skewed row-major map
    out.as_strided((n, c, h, w), (c * h * s, h * s, s + 1, 1)).copy_(x)
    return out


def unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    """Inverse of :func:`skew`: ``(N, C, H, W + H - 1) -> (N, C, H, W)``."""
    _check_4d(x, "unskew")
    width = check_int(width, "width", "unskew", low=1)
    n, c, h, s = x.shape
    if s != width + h - 1:
        raise ValueError(
            f"The 'x' argument of unskew must have width + H - 1 = {width + h - 1} columns "
            f"for width {width}; got shape {tuple(x.shape)}."
        )
    x = x.contiguous()
    return x.as_strided((n, c, h, width), (c * h * s, h * s, s + 1, 1), x.storage_offset())


def _lstm_gates(
    z: torch.Tensor, c_prev: torch.Tensor, dim: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-activations ``z`` holding ``[o, f, i, g]`` (``4h`` along ``dim``) and the previous
    cell ``c_prev`` -> ``(h, c)`` (``h`` along ``dim``)."""
    o, f, i, g = z.chunk(4, dim=dim)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _conv1x1(conv: MaskedConv2d, x: torch.Tensor) -> torch.Tensor:
    """A masked 1x1 convolution on features laid out as ``(in, P)`` -> ``(out, P)``."""
    weight = (conv.weight * conv.mask).flatten(1)  # (out, in)
    return FeatureLinear.apply(x, weight, conv.bias)


def _state_groups(hidden: int, colors: int, copies: int) -> torch.Tensor:
    """Colour groups of ``copies * 4 * hidden`` gate maps: gate ``q`` of hidden map ``j`` is
    in the group of ``j``."""
    return channel_groups(hidden, colors).repeat(4 * copies)


class _RowLSTMLayer(nn.Module):
    """Row LSTM with a residual connection: ``(N, 2h, H, W) -> (N, 2h, H, W)``."""

    def __init__(self, hidden: int, colors: int):
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedConv2d(
            2 * hidden, 4 * hidden, (1, 3), "B", colors=colors,
            out_groups=_state_groups(hidden, colors, 1),
        )
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, 3, padding=1)
        self.out = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors=colors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, rows, w = x.shape
        gates_in = self.input_to_state(x)  # (N, 4h, H, W)
        h = x.new_zeros(n, self.hidden, w)  # (N, h, W)
        c = x.new_zeros(n, self.hidden, w)
        outputs = []
        for row in gates_in.unbind(2):  # top to bottom
            z = row + self.state_to_state(h)  # (N, 4h, W)
            h, c = _lstm_gates(z, c)
            outputs.append(h)
        hid = torch.stack(outputs, dim=2)  # (N, h, H, W)
        return x + self.out(hid)


class _DiagonalBiLSTMLayer(nn.Module):
    """Diagonal BiLSTM with a residual connection: ``(N, 2h, H, W) -> (N, 2h, H, W)``.

    Works on the residual stream laid out as ``(2h, H, W, N)`` in memory: the output is an
    ``(N, 2h, H, W)`` view of such a tensor, so stacked layers hand it on without a copy
    (any other layout is copied once). Both directions' input-to-state (masked 1x1) and
    state-to-state (2x1) kernels and the input-to-state bias form one ``(2, 4h, 4h + 1)``
    kernel applied diagonal by diagonal by :class:`~._diagonal.DiagonalRecursion` (pixels
    only, hand-written backward), which also shifts the right-to-left output down a row and
    adds the two; the masked 1x1 output convolution and the residual are one matrix
    product.
    """

    def __init__(self, hidden: int, colors: int):
        super().__init__()
        self.hidden = hidden
        # [left-to-right gates (4h), right-to-left gates (4h)]
        self.input_to_state = MaskedConv2d(
            2 * hidden, 8 * hidden, 1, "B", colors=colors,
            out_groups=_state_groups(hidden, colors, 2),
        )
        bound = 1.0 / math.sqrt(2 * hidden)  # as nn.Conv1d(h, 4h, kernel_size=2)
        # [direction, (row above | same row) x h, 4h]
        self.state_to_state = nn.Parameter(
            torch.empty(2, 2 * hidden, 4 * hidden).uniform_(-bound, bound)
        )
        self.out = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors=colors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ch, rows, w = x.shape
        hd = self.hidden
        xs = x.permute(1, 2, 3, 0).contiguous()  # (2h, H, W, N); no copy after a layer
        conv = self.input_to_state
        w_is = (conv.weight * conv.mask).view(2, 4 * hd, ch)  # (2, 4h, 2h)
        kernel = torch.cat([w_is, self.state_to_state.transpose(1, 2)], dim=2)  # (2, 4h, 4h)
        # the recursion computes in the input's dtype (under autocast: the input layer's)
        with torch.autocast(device_type=xs.device.type, enabled=False):
            combined = DiagonalRecursion.apply(xs, kernel.to(xs.dtype),
                                               conv.bias.view(2, 4 * hd).to(xs.dtype))
        w_out = (self.out.weight * self.out.mask).view(ch, hd)
        y = FeatureLinear.apply(combined.view(hd, -1), w_out, self.out.bias,
                                xs.view(ch, -1))  # x + out(comb)
        y = y.view(ch, rows, w, n)  # (2h, H, W, N)
        return y.permute(3, 0, 1, 2)  # (N, 2h, H, W) view


class _PixelRNN(AutoregressiveImageModel):
    """The shared frame: masked-A 7x7 input layer, residual LSTM layers, 1x1 output layers."""

    _layer_type: type[nn.Module] = nn.Module

    def __init__(self, image_shape, pixels, hidden, layers, output_hidden, kernel_size):
        super().__init__(image_shape, pixels)
        name = type(self).__name__
        hidden = check_int(hidden, "hidden", name, low=1)
        layers = check_int(layers, "layers", name, low=1)
        output_hidden = check_int(
            output_hidden if output_hidden is not None else 2 * hidden, "output_hidden", name,
            low=1,
        )
        kernel_size = check_int(kernel_size, "kernel_size", name, low=1)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"The 'kernel_size' parameter of {name} must be an odd int. Got {kernel_size}."
            )
        c = self.image_shape[0]
        if hidden < c:
            raise ValueError(
                f"The 'hidden' parameter of {name} must be >= the number of colours ({c}). "
                f"Got {hidden} instead."
            )
        self.input_conv = MaskedConv2d(c, 2 * hidden, kernel_size, "A", colors=c,
                                       in_groups=torch.arange(c))
        self.layers = nn.Sequential(*[self._layer_type(hidden, c) for _ in range(layers)])
        per_channel = 1 if pixels == "binary" else LEVELS
        self.output = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(2 * hidden, output_hidden, 1, "B", colors=c),
            nn.ReLU(),
            MaskedConv2d(output_hidden, c * per_channel, 1, "B", colors=c,
                         out_groups=torch.arange(c).repeat_interleave(per_channel)),
        )
        self.config = {
            "image_shape": list(self.image_shape),
            "pixels": pixels,
            "hidden": hidden,
            "layers": layers,
            "output_hidden": output_hidden,
            "kernel_size": kernel_size,
        }

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        out = self.output(self.layers(self.input_conv(u)))  # (N, C * L, H, W)
        if self.pixels == "binary":
            return out  # (N, C, H, W)
        n, _, h, w = out.shape
        return out.view(n, self.image_shape[0], LEVELS, h, w).transpose(1, 2)


@register_model("generative/row-lstm")
class RowLSTM(_PixelRNN):
    """PixelRNN with Row LSTM layers (see the module docstring).

    Args:
        image_shape: ``(C, H, W)``, C = 1 or 3.
        pixels: ``"binary"`` or ``"8bit"``.
        hidden: ``h``, hidden maps per LSTM (the residual stream has ``2h``).
        layers: Row LSTM layers.
        output_hidden: maps of the two 1x1 output layers (default ``2h``).
        kernel_size: the masked-A input convolution (7).

    ``forward(u (N, C, H, W)) -> logits (N, C, H, W)`` or ``(N, 256, C, H, W)``.
    """

    arch = "generative/row-lstm"
    _layer_type = _RowLSTMLayer

    def __init__(self, image_shape=(1, 28, 28), pixels: str = "binary", hidden: int = 16,
                 layers: int = 4, output_hidden: int | None = None, kernel_size: int = 7):
        super().__init__(image_shape, pixels, hidden, layers, output_hidden, kernel_size)


@register_model("generative/diagonal-bilstm")
class DiagonalBiLSTM(_PixelRNN):
    """PixelRNN with Diagonal BiLSTM layers (see the module docstring); the paper's MNIST
    model has 7 layers (79.20 nats).

    Args: as :class:`RowLSTM`.
    """

    arch = "generative/diagonal-bilstm"
    _layer_type = _DiagonalBiLSTMLayer

    def __init__(self, image_shape=(1, 28, 28), pixels: str = "binary", hidden: int = 16,
                 layers: int = 7, output_hidden: int | None = None, kernel_size: int = 7):
        super().__init__(image_shape, pixels, hidden, layers, output_hidden, kernel_size)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        # the layers hand on (N, 2h, H, W) views of (2h, H, W, N) memory; the 1x1 output
        # layers are matrix products in that layout (same parameters as self.output)
        x = self.layers(self.input_conv(u))
        n, ch, h, w = x.shape
        feats = x.permute(1, 2, 3, 0).reshape(ch, h * w * n)  # (2h, H W N)
        _, first, _, last = self.output
        hid = _conv1x1(first, torch.relu(feats)).relu_()
        out = _conv1x1(last, hid)  # (C * L, H W N)
        c = self.image_shape[0]
        if self.pixels == "binary":
            return out.view(c, h, w, n).permute(3, 0, 1, 2)  # (N, C, H, W)
        return out.view(c, LEVELS, h, w, n).permute(4, 1, 0, 2, 3)  # (N, 256, C, H, W)
