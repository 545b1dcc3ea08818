"""ResNet with basic blocks (He et al., 2016, "Deep Residual Learning for Image Recognition",
CVPR), optionally spectrally normalised with leaky ReLUs as in DDU (Mukhoti et al., 2021,
"Deterministic Neural Networks with Appropriate Inductive Biases Capture Epistemic and Aleatoric
Uncertainty").

Two layouts, both with a CIFAR-style 3x3 stride-1 stem (no 7x7 convolution, no max pool):

* ``depth = 6n + 2`` (8, 14, 20, 32, 44, 56, 110): the paper's CIFAR family, three stages of
  ``n`` basic blocks with widths ``w, 2w, 4w`` (default ``w = 16``), strides 1, 2, 2;
* ``depth = 18`` or ``34``: the ImageNet layouts ``[2, 2, 2, 2]`` / ``[3, 4, 6, 3]`` with widths
  ``w, 2w, 4w, 8w`` (default ``w = 64``), strides 1, 2, 2, 2.

A global average pool makes any input size work. Shortcuts that change shape are 1x1
projections with batch norm (the paper's option B; its CIFAR experiments used zero-padding
option A).

``spectral_norm=True`` applies soft spectral normalisation with coefficient ``sn_coeff`` to
every convolution, including the stem and the 1x1 shortcut projections. ``sn_mode`` says what
is bounded (:mod:`dunno.nets.spectral`): ``"kernel"`` the reshaped kernel (Miyato et al. 2018;
the convolution's own gain may then reach ``3 * sn_coeff`` for a 3x3 kernel), ``"operator"``
the operator norm of each convolution at the inputs it sees for ``input_size`` (DDU's choice,
Gouk et al. 2021). Combined with the residual connections
this encourages the feature extractor to be bi-Lipschitz ("sensitive and smooth", DDU Sec. 4),
which feature-density OOD detectors rely on. Batch norm can undo the bound (a channel with a small
running variance is amplified without limit); ``spectral_bn=True`` bounds every batch norm's
Lipschitz constant by ``sn_coeff`` too (:class:`~dunno.nets.spectral.SpectralBatchNorm2d`, van
Amersfoort et al. 2021), which makes the whole feature extractor Lipschitz. The linear head is not
normalised. ``leaky_relu=True`` replaces every ReLU by a leaky ReLU (slope 0.01), also as in DDU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dunno.nets.base import Backbone, as_hw, check_image
from dunno.nets.spectral import SpectralBatchNorm2d, conv_spectral_norm, soft_spectral_norm
from dunno.validation import check_bool, check_choice, check_float, check_int

__all__ = ["BasicBlock", "ResNet"]

_IMAGENET_LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

#: ``conv(in_channels, out_channels, kernel, stride, input_hw)`` -> a convolution (padding
#: ``kernel // 2``); ``input_hw`` is the spatial size it sees, for the operator-norm bound.
ConvFactory = Callable[[int, int, int, int, tuple[int, int]], nn.Conv2d]
NormFactory = Callable[[int], nn.Module]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity or projection shortcut.

    ``(N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))`` (He et al. 2016).
    ``input_hw`` is the ``(H, W)`` the block is built for (passed on to ``conv``);
    ``output_hw`` the ``(H', W')`` it produces.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        conv: ConvFactory,
        activation: Callable[[], nn.Module],
        norm: NormFactory = nn.BatchNorm2d,
        input_hw: tuple[int, int] = (28, 28),
    ) -> None:
        super().__init__()
        self.output_hw = (-(-input_hw[0] // stride), -(-input_hw[1] // stride))  # ceil
        self.conv1 = conv(in_channels, out_channels, 3, stride, input_hw)
        self.bn1 = norm(out_channels)
        self.act1 = activation()
        self.conv2 = conv(out_channels, out_channels, 3, 1, self.output_hw)
        self.bn2 = norm(out_channels)
        self.act2 = activation()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, out_channels, 1, stride, input_hw), norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W) -> (N, C_out, H', W')``."""
        out = self.act1(self.bn1(self.conv1(x)))  # (N, C_out, H', W')
        out = self.bn2(self.conv2(out))  # (N, C_out, H', W')
        return self.act2(out + self.shortcut(x))


class ResNet(Backbone):
    """ResNet-8/20/18-style backbone with optional DDU spectral norm (He et al. 2016).

    Input ``(N, C, H, W)``, any ``H, W >= 1``; ``features(x)`` is ``(N, 4w)`` for the CIFAR
    family and ``(N, 8w)`` for depths 18/34 (64 and 512 at the defaults).

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and number of logits.
    input_size : int or (int, int)
        Recorded in ``config``; the network works for any input size.
    depth : int
        ``6n + 2`` (CIFAR family) or 18 / 34 (ImageNet layouts with a small stem).
    width : int or None
        Channels of the first stage; None: 16 for the CIFAR family, 64 for 18/34.
    spectral_norm : bool
        Soft spectral normalisation of every convolution (Miyato et al. 2018; DDU 2021).
    sn_coeff : float
        The bound ``c`` on each convolution's spectral norm (DDU uses 3), and on each batch
        norm's Lipschitz constant with ``spectral_bn``.
    sn_mode : {"kernel", "operator"}
        What ``spectral_norm`` bounds: the reshaped kernel (Miyato et al. 2018) or the
        convolution's operator norm at ``input_size`` (Gouk et al. 2021; DDU).
    spectral_bn : bool
        Bound every batch norm's Lipschitz constant by ``sn_coeff`` (van Amersfoort et al.
        2021); without it batch norm can undo the convolutions' bound.
    leaky_relu : bool
        Leaky ReLU (slope 0.01) instead of ReLU everywhere (DDU).
    dropout : float
        Dropout before the head (0: none, as in the paper).
    """

    name = "resnet"
    summary = "ResNet (basic blocks, 3x3 stem): depth 6n+2 (8, 20, ...) or 18/34; DDU spectral norm"
    reference = "He et al. 2016, Deep Residual Learning (CVPR); Mukhoti et al. 2021 (DDU)"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        input_size: int | tuple[int, int] = 28,
        depth: int = 20,
        width: int | None = None,
        spectral_norm: bool = False,
        sn_coeff: float = 3.0,
        sn_mode: str = "kernel",
        spectral_bn: bool = False,
        leaky_relu: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            {
                "input_size": input_size,
                "depth": depth,
                "width": width,
                "spectral_norm": spectral_norm,
                "sn_coeff": sn_coeff,
                "sn_mode": sn_mode,
                "spectral_bn": spectral_bn,
                "leaky_relu": leaky_relu,
                "dropout": dropout,
            },
        )
        owner = type(self).__name__
        check_int(depth, "depth", owner, low=8)
        if depth in _IMAGENET_LAYOUTS:
            blocks = _IMAGENET_LAYOUTS[depth]
            default_width = 64
        elif (depth - 2) % 6 == 0:
            blocks = ((depth - 2) // 6,) * 3
            default_width = 16
        else:
            raise ValueError(
                f"The 'depth' parameter of {owner} must be 6n + 2 (8, 14, 20, 32, ...) or one of "
                f"18, 34. Got {depth!r} instead."
            )
        width = default_width if width is None else check_int(width, "width", owner, low=1)
        check_bool(spectral_norm, "spectral_norm", owner)
        sn_coeff = check_float(sn_coeff, "sn_coeff", owner, low=1e-6)
        check_choice(sn_mode, "sn_mode", owner, ("kernel", "operator"))
        check_bool(spectral_bn, "spectral_bn", owner)
        check_bool(leaky_relu, "leaky_relu", owner)

        def conv(cin: int, cout: int, kernel: int, stride: int,
                 input_hw: tuple[int, int]) -> nn.Conv2d:
            layer = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if spectral_norm and sn_mode == "operator":
                conv_spectral_norm(layer, sn_coeff, input_hw)
            elif spectral_norm:
                soft_spectral_norm(layer, sn_coeff)
            return layer

        def norm(channels: int) -> nn.Module:
            if spectral_bn:
                return SpectralBatchNorm2d(channels, sn_coeff)
            return nn.BatchNorm2d(channels)

        activation: Callable[[], nn.Module] = nn.LeakyReLU if leaky_relu else nn.ReLU

        hw = as_hw(input_size, owner)
        self.stem = nn.Sequential(
            conv(self.in_channels, width, 3, 1, hw), norm(width), activation())
        stages: list[nn.Module] = []
        channels = width
        for i, n_blocks in enumerate(blocks):
            out = width * 2**i
            stage = []
            for j in range(n_blocks):
                stage.append(BasicBlock(channels if j == 0 else out, out,
                                        2 if (i > 0 and j == 0) else 1, conv, activation, norm,
                                        hw))
                hw = stage[-1].output_hw
            stages.append(nn.Sequential(*stage))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.num_features = channels
        self.head = nn.Linear(channels, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, num_features)``."""
        check_image(x, self.in_channels, type(self).__name__)
        x = self.stem(x)  # (N, w, H, W)
        x = self.stages(x)  # (N, num_features, H / 4, W / 4) (or / 8 for depth 18/34)
        x = self.pool(x).flatten(1)  # (N, num_features)
        return self.dropout(x)
