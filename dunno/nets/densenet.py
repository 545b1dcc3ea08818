"""DenseNet-BC (Huang et al., 2017, "Densely Connected Convolutional Networks", CVPR).

Inside a dense block every layer receives the concatenation of all earlier feature maps and adds
``growth_rate`` new channels. "B": each layer is a bottleneck ``BN-ReLU-conv1x1(4k)-BN-ReLU-
conv3x3(k)``; "C": transition layers ``BN-ReLU-conv1x1-avgpool2`` compress the channels by
``compression`` (0.5).

Adapted for small inputs (the paper's CIFAR variant, made smaller):

* a 3x3 stem convolution to ``2k`` channels and three dense blocks, as the paper's CIFAR nets;
* depth 40 with ``k = 12`` (6 bottleneck layers per block) by default; the paper's smallest
  DenseNet-BC has depth 100;
* the transitions' 2x2 average pools use ``ceil_mode`` so 8x8 inputs shrink 8 -> 4 -> 2 and
  never to zero; a global average pool after the final BN-ReLU makes any input size work.

The paper used dropout 0.2 after each convolution only without data augmentation; here
``dropout`` (default 0) is applied once, before the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dunno.nets.base import Backbone, check_image
from dunno.validation import check_float, check_int

__all__ = ["DenseNet"]


class _DenseLayer(nn.Module):
    """Bottleneck layer: ``(N, C, H, W) -> (N, C + k, H, W)`` (concatenates its input)."""

    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """See the class docstring for shapes."""
        out = self.conv1(F.relu(self.bn1(x)))  # (N, 4k, H, W)
        out = self.conv2(F.relu(self.bn2(out)))  # (N, k, H, W)
        return torch.cat([x, out], dim=1)  # (N, C + k, H, W)


class _Transition(nn.Module):
    """Compression + down-sampling: ``(N, C, H, W) -> (N, C', ceil(H/2), ceil(W/2))``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """See the class docstring for shapes."""
        return self.pool(self.conv(F.relu(self.bn(x))))


class DenseNet(Backbone):
    """A small DenseNet-BC with three dense blocks (Huang et al. 2017).

    Input ``(N, C, H, W)``, any ``H, W >= 1``; ``features(x)`` is ``(N, F)`` (F = 132 at the
    defaults).

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and number of logits.
    input_size : int or (int, int)
        Recorded in ``config``; the network works for any input size.
    depth : int
        Total depth ``6n + 4`` (``n`` bottleneck layers per block): 40, 64, 100, ...
    growth_rate : int
        ``k``, channels each layer adds.
    compression : float
        ``theta`` in ``(0, 1]``: the transitions keep ``floor(theta * C)`` channels.
    dropout : float
        Dropout before the head.
    """

    name = "densenet"
    summary = "DenseNet-BC: depth 40, growth 12, compression 0.5, three dense blocks"
    reference = "Huang et al. 2017, Densely Connected Convolutional Networks (CVPR)"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: int | tuple[int, int] = 28,
        depth: int = 40,
        growth_rate: int = 12,
        compression: float = 0.5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            {
                "input_size": input_size,
                "depth": depth,
                "growth_rate": growth_rate,
                "compression": compression,
                "dropout": dropout,
            },
        )
        owner = type(self).__name__
        check_int(depth, "depth", owner, low=10)
        if (depth - 4) % 6 != 0:
            raise ValueError(
                f"The 'depth' parameter of {owner} must be 6n + 4 with n >= 1 (10, 40, 100, ...). "
                f"Got {depth!r} instead."
            )
        growth_rate = check_int(growth_rate, "growth_rate", owner, low=1)
        compression = check_float(compression, "compression", owner, low=1e-6, high=1.0)
        n_layers = (depth - 4) // 6

        channels = 2 * growth_rate
        self.stem = nn.Conv2d(self.in_channels, channels, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        for b in range(3):
            for _ in range(n_layers):
                blocks.append(_DenseLayer(channels, growth_rate))
                channels += growth_rate
            if b < 2:
                out = max(1, int(compression * channels))
                blocks.append(_Transition(channels, out))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.num_features = channels
        self.head = nn.Linear(channels, self.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, num_features)``."""
        check_image(x, self.in_channels, type(self).__name__)
        x = self.stem(x)  # (N, 2k, H, W)
        x = self.blocks(x)  # (N, F, ceil(H / 4), ceil(W / 4))
        x = F.relu(self.norm(x))  # (N, F, H', W')
        x = self.pool(x).flatten(1)  # (N, F)
        return self.dropout(x)
