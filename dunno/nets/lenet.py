"""LeNet-5 (LeCun et al., 1998, "Gradient-Based Learning Applied to Document Recognition").

The common modern variant: ReLU instead of scaled tanh, max pooling instead of trainable
sub-sampling, a full C3 connection table and a linear head instead of RBF units::

    conv 6@5x5 -> max-pool 2 -> conv 16@5x5 -> max-pool -> fc 120 -> fc 84 -> [dropout] -> head

Adapted for small inputs:

* ``conv1`` uses padding 2 for inputs smaller than 32 (so 28x28 MNIST follows the classic
  32x32 path 28 -> 14 -> 10 -> 5) and no padding for 32x32 and larger (the original layout);
* ``conv2`` uses padding 2 when the pooled map is smaller than 10 (e.g. 8x8 ``digits``:
  8 -> 4 -> 4 -> 5), and any input still too small for it is zero-padded up to 5x5;
* the second pooling is an adaptive max pool to 5x5, equal to a 2x2 max pool on the classic
  10x10 map, so ``fc1`` always sees ``16 * 5 * 5`` inputs.

Features are the 84-d ``fc2`` activations (after the optional dropout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dunno.nets.base import Backbone, check_image

__all__ = ["LeNet5"]


class LeNet5(Backbone):
    """LeNet-5 with ReLU and max pooling (LeCun et al. 1998); 84-d features.

    Input ``(N, C, H, W)`` with any ``H, W >= 2``; ``features(x)`` is ``(N, 84)``.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and number of logits.
    input_size : int or (int, int)
        The expected ``(H, W)``; chooses the paddings (see the module docstring).
    dropout : float
        Dropout rate in front of the head (0: none, as in the paper).
    """

    name = "lenet5"
    summary = "LeNet-5 (ReLU, max-pool): conv6-conv16-fc120-fc84, 84-d features, ~62k params"
    reference = "LeCun et al. 1998, Gradient-Based Learning Applied to Document Recognition"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: int | tuple[int, int] = 28,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_channels, num_classes, {"input_size": input_size, "dropout": dropout})
        h, w = self.input_size
        pad1 = 2 if min(h, w) < 32 else 0
        pooled = (min(h, w) + 2 * pad1 - 4) // 2
        pad2 = 0 if pooled >= 10 else 2
        self.conv1 = nn.Conv2d(self.in_channels, 6, 5, padding=pad1)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad2)
        self.pool2 = nn.AdaptiveMaxPool2d(5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.num_features = 84
        self.head = nn.Linear(84, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, 84)``."""
        check_image(x, self.in_channels, type(self).__name__)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (N, 6, H1, W1)
        # Zero-pad maps too small for conv2 (only for inputs far below input_size).
        short_h = max(0, 5 - x.shape[-2] - 2 * self.conv2.padding[0])
        short_w = max(0, 5 - x.shape[-1] - 2 * self.conv2.padding[1])
        if short_h or short_w:
            top, left = short_h // 2, short_w // 2
            x = F.pad(x, (left, short_w - left, top, short_h - top))
        x = self.pool2(F.relu(self.conv2(x)))  # (N, 16, 5, 5)
        x = F.relu(self.fc1(x.flatten(1)))  # (N, 120)
        x = F.relu(self.fc2(x))  # (N, 84)
        return self.dropout(x)
