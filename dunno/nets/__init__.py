"""The backbone zoo: classifiers with ``features(x) -> (N, F)``, ``head`` and ``config``.

::

    import torch

    from dunno import nets

    model = nets.create("resnet", in_channels=1, num_classes=10, input_size=8, depth=8)
    logits = model(torch.zeros(2, 1, 8, 8))  # (N, num_classes)
    feats = model.features(torch.zeros(2, 1, 8, 8))  # (N, model.num_features)
    same = nets.create(**model.config)  # rebuild, e.g. from a checkpoint's JSON config
    same.load_state_dict(model.state_dict())

Backbones (see :func:`describe` for options and defaults): ``lenet5``, ``vgg``, ``googlenet``,
``resnet`` (with DDU spectral normalisation), ``resnet18-cifar`` (the CIFAR ResNet-18 with
per-channel input normalisation), ``densenet``, ``vit``, ``lstm``, ``gru``,
``transformer``.

Every backbone ends ``features`` with an :class:`torch.nn.Dropout` (``model.dropout``, rate
given by the ``dropout`` option) so MC-Dropout can sample it; in eval mode
``model(x) == model.head(model.features(x))``.
"""

from dunno.nets.base import Backbone, UnknownOptionError
from dunno.nets.densenet import DenseNet
from dunno.nets.googlenet import GoogLeNet
from dunno.nets.lenet import LeNet5
from dunno.nets.recurrent import GRU, LSTM
from dunno.nets.registry import (
    BACKBONES,
    available,
    backbone_class,
    count_parameters,
    create,
    default_options,
    describe,
    register_backbone,
)
from dunno.nets.resnet import ResNet
from dunno.nets.resnet_cifar import ResNet18CIFAR
from dunno.nets.spectral import (
    ConvSpectralNorm,
    SoftSpectralNorm,
    SpectralBatchNorm2d,
    conv_spectral_norm,
    soft_spectral_norm,
)
from dunno.nets.transformer import Transformer
from dunno.nets.vgg import VGG
from dunno.nets.vit import ViT

__all__ = [
    "BACKBONES",
    "GRU",
    "LSTM",
    "VGG",
    "Backbone",
    "ConvSpectralNorm",
    "DenseNet",
    "GoogLeNet",
    "LeNet5",
    "ResNet",
    "ResNet18CIFAR",
    "SoftSpectralNorm",
    "SpectralBatchNorm2d",
    "Transformer",
    "UnknownOptionError",
    "ViT",
    "available",
    "backbone_class",
    "count_parameters",
    "conv_spectral_norm",
    "create",
    "default_options",
    "describe",
    "register_backbone",
    "soft_spectral_norm",
]
