"""VGG (Simonyan & Zisserman, 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR), with batch normalisation (Ioffe & Szegedy, 2015) as in the common
``vgg*_bn`` variants.

Stages of ``convs_per_stage`` 3x3 convolutions (padding 1) + BN + ReLU, each stage followed by a
2x2 max pool; then the paper's classifier ``fc-ReLU-dropout-fc-ReLU-dropout-head``.

Adapted for small inputs:

* three stages of width 32/64/128 by default (the paper: five stages of 64..512);
* the max pools use ``ceil_mode`` so that no stage shrinks a map to zero (8x8 -> 4 -> 2 -> 1);
* a global average pool replaces the paper's flatten of a 7x7 map, so any input size works;
* the two hidden fully connected layers have ``hidden`` (default 256) units instead of 4096.

Dropout defaults to 0.5 as in the paper, in both hidden layers; the second one is the last
module of ``features`` (``model.dropout``).
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.nets.base import Backbone, check_image
from dunno.validation import check_bool, check_int, check_int_sequence

__all__ = ["VGG"]


class VGG(Backbone):
    """A small VGG with batch norm (Simonyan & Zisserman 2015).

    Input ``(N, C, H, W)``, any ``H, W >= 1``; ``features(x)`` is ``(N, hidden)``.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and number of logits.
    input_size : int or (int, int)
        Recorded in ``config``; the network works for any input size.
    widths : sequence of int
        Channels of each stage (one max pool per stage).
    convs_per_stage : int
        3x3 convolutions per stage (the paper's VGG-11..19 use 1-4).
    hidden : int
        Units of the two hidden fully connected layers (= ``num_features``).
    batch_norm : bool
        Batch norm after every convolution.
    dropout : float
        Dropout after each hidden fully connected layer (paper: 0.5).
    """

    name = "vgg"
    summary = "VGG-BN: 3 stages x 2 convs 3x3 (32/64/128), global pool, 2 fc 256, dropout 0.5"
    reference = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks (ICLR)"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: int | tuple[int, int] = 28,
        widths: tuple[int, ...] = (32, 64, 128),
        convs_per_stage: int = 2,
        hidden: int = 256,
        batch_norm: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            {
                "input_size": input_size,
                "widths": widths,
                "convs_per_stage": convs_per_stage,
                "hidden": hidden,
                "batch_norm": batch_norm,
                "dropout": dropout,
            },
        )
        owner = type(self).__name__
        widths = check_int_sequence(widths, "widths", owner)
        check_int(convs_per_stage, "convs_per_stage", owner, low=1)
        check_int(hidden, "hidden", owner, low=1)
        check_bool(batch_norm, "batch_norm", owner)

        layers: list[nn.Module] = []
        channels = self.in_channels
        for width in widths:
            for _ in range(convs_per_stage):
                layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                channels = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(self.dropout_rate),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(self.dropout_rate)
        self.num_features = hidden
        self.head = nn.Linear(hidden, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, hidden)``."""
        check_image(x, self.in_channels, type(self).__name__)
        x = self.body(x)  # (N, widths[-1], H', W')
        x = self.pool(x).flatten(1)  # (N, widths[-1])
        x = self.classifier(x)  # (N, hidden)
        return self.dropout(x)
