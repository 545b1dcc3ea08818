"""GoogLeNet (Szegedy et al., 2015, "Going Deeper with Convolutions", CVPR).

Inception modules run four branches in parallel and concatenate them along channels: a 1x1
convolution, a 1x1 reduction then 3x3, a 1x1 reduction then 5x5, and a 3x3 max pool then 1x1
projection. The 1x1 reductions keep the cost of the larger kernels low.

Adapted for small inputs:

* the 7x7/stride-2 stem, the early max pools and local response normalisation are replaced by
  a single 3x3 convolution at full resolution (as for CIFAR in most re-implementations);
* only the paper's inception 3a, 3b, (max pool 3x3/2), 4a and 4b modules are kept, with every
  channel count scaled by ``width`` (default 0.25: 3a has 64 output channels, 4b 128);
* no auxiliary classifiers;
* global average pooling and dropout (paper: 0.4) before the linear head, as in the paper.

The paper predates batch normalisation; ``batch_norm=True`` adds it after every convolution
(as in Inception-v2), default off.
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.nets.base import Backbone, check_image
from dunno.validation import check_bool, check_float

__all__ = ["GoogLeNet", "Inception"]

# Channel counts of the paper's Table 1: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj).
_PAPER_BLOCKS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
}


def _conv(cin: int, cout: int, kernel: int, batch_norm: bool) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=not batch_norm)
    layers: list[nn.Module] = [conv]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Inception(nn.Module):
    """One inception module with dimension reductions (Szegedy et al. 2015, Fig. 2b).

    ``(N, C, H, W) -> (N, c1 + c3 + c5 + cp, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        c1: int,
        c3_reduce: int,
        c3: int,
        c5_reduce: int,
        c5: int,
        pool_proj: int,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.branch1 = _conv(in_channels, c1, 1, batch_norm)
        self.branch3 = nn.Sequential(
            _conv(in_channels, c3_reduce, 1, batch_norm), _conv(c3_reduce, c3, 3, batch_norm)
        )
        self.branch5 = nn.Sequential(
            _conv(in_channels, c5_reduce, 1, batch_norm), _conv(c5_reduce, c5, 5, batch_norm)
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), _conv(in_channels, pool_proj, 1, batch_norm)
        )
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, out_channels, H, W)``."""
        branches = [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)  # (N, out_channels, H, W)


class GoogLeNet(Backbone):
    """A small GoogLeNet: stem + inception 3a, 3b, pool, 4a, 4b (Szegedy et al. 2015).

    Input ``(N, C, H, W)``, any ``H, W >= 1``; ``features(x)`` is ``(N, F)`` with ``F = 128`` at
    the default ``width=0.25``.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and number of logits.
    input_size : int or (int, int)
        Recorded in ``config``; the network works for any input size.
    width : float
        Multiplier on the paper's channel counts (each rounded, at least 1).
    batch_norm : bool
        Batch norm after every convolution (not in the paper).
    dropout : float
        Dropout before the head (paper: 0.4).
    """

    name = "googlenet"
    summary = "GoogLeNet: 3x3 stem + inception 3a,3b,4a,4b at 1/4 width, dropout 0.4"
    reference = "Szegedy et al. 2015, Going Deeper with Convolutions (CVPR)"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: int | tuple[int, int] = 28,
        width: float = 0.25,
        batch_norm: bool = False,
        dropout: float = 0.4,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            {
                "input_size": input_size,
                "width": width,
                "batch_norm": batch_norm,
                "dropout": dropout,
            },
        )
        owner = type(self).__name__
        width = check_float(width, "width", owner, low=0.01, high=4.0)
        check_bool(batch_norm, "batch_norm", owner)

        def scaled(channels: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(max(1, round(c * width)) for c in channels)

        stem = max(1, round(192 * width))  # the paper's stem ends with 192 channels
        self.stem = _conv(self.in_channels, stem, 3, batch_norm)
        self.inception3a = Inception(stem, *scaled(_PAPER_BLOCKS["3a"]), batch_norm=batch_norm)
        c = self.inception3a.out_channels
        self.inception3b = Inception(c, *scaled(_PAPER_BLOCKS["3b"]), batch_norm=batch_norm)
        c = self.inception3b.out_channels
        self.pool3 = nn.MaxPool2d(3, stride=2, padding=1)
        self.inception4a = Inception(c, *scaled(_PAPER_BLOCKS["4a"]), batch_norm=batch_norm)
        c = self.inception4a.out_channels
        self.inception4b = Inception(c, *scaled(_PAPER_BLOCKS["4b"]), batch_norm=batch_norm)
        c = self.inception4b.out_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.num_features = c
        self.head = nn.Linear(c, self.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # He init keeps the signal alive without BN
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, num_features)``."""
        check_image(x, self.in_channels, type(self).__name__)
        x = self.stem(x)  # (N, 48, H, W)
        x = self.inception3b(self.inception3a(x))  # (N, 120, H, W)
        x = self.pool3(x)  # (N, 120, ceil(H/2), ceil(W/2))
        x = self.inception4b(self.inception4a(x))  # (N, 128, H/2, W/2)
        x = self.pool(x).flatten(1)  # (N, 128)
        return self.dropout(x)
