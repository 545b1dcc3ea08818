"""The CIFAR ResNet-18 (He et al., 2016, "Deep Residual Learning for Image Recognition", CVPR),
in the layout of the common CIFAR recipe (kuangliu/pytorch-cifar; OpenOOD v1.5's ResNet-18):

* stem: one 3x3 convolution, stride 1, 64 channels, batch norm, ReLU -- no 7x7 convolution
  and no max pool, so a 32x32 image keeps its resolution into the first stage;
* four stages of two :class:`~dunno.nets.resnet.BasicBlock` s with 64, 128, 256, 512
  channels, strides 1, 2, 2, 2 (32x32 -> 32, 16, 8, 4), 1x1-projection shortcuts with batch
  norm where the shape changes;
* global average pool -> 512-d ``features``, then the linear ``head``.

11 173 962 parameters for 3 input channels and 10 classes. The same network as
``dunno.nets.create("resnet", 3, 10, depth=18)`` plus per-channel input normalisation: with
``mean`` and ``std`` (one value per input channel) the network computes
``(x - mean) / std`` first, so it takes images in [0, 1] and every caller (calibration, OOD
detectors that perturb the input, the user's own arrays) feeds the same pixels.
``dunno train classifier`` fills ``mean`` / ``std`` with the training split's per-channel
statistics (:func:`dunno.data.channel_stats`) unless they are given; the values live in
``config`` (and the checkpoint's JSON), not in the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dunno.nets.resnet import ResNet
from dunno.validation import check_float

__all__ = ["ResNet18CIFAR"]


def _per_channel(value, name: str, channels: int, owner: str, positive: bool) -> list[float]:
    if (not isinstance(value, Sequence) or isinstance(value, str)
            or len(value) != channels):
        raise ValueError(
            f"The '{name}' parameter of {owner} must be a list of {channels} numbers (one per "
            f"input channel) or None. Got {value!r} instead."
        )
    if positive:
        return [check_float(v, name, owner, low=0.0, low_open=True) for v in value]
    return [check_float(v, name, owner) for v in value]


class ResNet18CIFAR(ResNet):
    """ResNet-18 for 32x32 images: 3x3 stride-1 stem, no max pool, ``[2, 2, 2, 2]`` basic
    blocks of 64-128-256-512 channels, global average pool, linear head (He et al. 2016).

    Input ``(N, C, H, W)`` (any ``H, W``; built for 32x32), ``features(x)`` ``(N, 512)``,
    logits ``(N, num_classes)``.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and number of logits.
    input_size : int or (int, int)
        Recorded in ``config`` (default 32).
    mean, std : list of float or None
        Per-channel input normalisation :math:`\\tilde x_c = (x_c - \\mu_c) / \\sigma_c`
        applied first (both or neither; ``std > 0``). None: the inputs are used as given.
    dropout : float
        Dropout before the head (0: none, as in the recipe).
    """

    name = "resnet18-cifar"
    summary = ("ResNet-18 for CIFAR: 3x3 stride-1 stem, no max pool, [2,2,2,2] x 64-512, "
               "per-channel input normalisation")
    reference = "He et al. 2016, Deep Residual Learning (CVPR); the kuangliu / OpenOOD recipe"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: int | tuple[int, int] = 32,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_channels, num_classes, input_size=input_size, depth=18, width=64,
                         dropout=dropout)
        owner = type(self).__name__
        if (mean is None) != (std is None):
            raise ValueError(f"The 'mean' and 'std' parameters of {owner} go together: give "
                             f"both or neither. Got mean={mean!r}, std={std!r} instead.")
        if mean is not None:
            mean = _per_channel(mean, "mean", self.in_channels, owner, positive=False)
            std = _per_channel(std, "std", self.in_channels, owner, positive=True)
            shape = (1, self.in_channels, 1, 1)
            # not in the state dict: config holds the values, the weights stay those of ResNet-18
            self.register_buffer("input_mean", torch.tensor(mean).view(shape), persistent=False)
            self.register_buffer("input_std", torch.tensor(std).view(shape), persistent=False)
        self.normalise = mean is not None
        self.config = {"name": self.name, "in_channels": self.in_channels,
                       "num_classes": self.num_classes,
                       "input_size": self.config["input_size"], "mean": mean, "std": std,
                       "dropout": self.config["dropout"]}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, 512)``; normalised per channel first when ``mean`` is set."""
        if self.normalise and x.dim() == 4 and x.shape[1] == self.in_channels:
            x = (x - self.input_mean) / self.input_std  # (N, C, H, W)
        return super().features(x)
