"""Datasets: one registry, :func:`load_dataset`, and :func:`make_loader`.

>>> from dunno.data import load_dataset, make_loader
>>> train = load_dataset("digits", "train")           # bundled, zero setup
>>> train.x.shape, train.y.shape                       # (1257, 1, 8, 8), (1257,)
>>> loader = make_loader(train, batch_size=64, shuffle=True, seed=0)

Colour sets: ``cifar10``, ``cifar100`` (``cifar100:labels=coarse`` for the 20 superclasses)
and ``svhn``, ``(N, 3, 32, 32)`` in [0, 1], from the official files (:mod:`~dunno.data.colour`).

See :mod:`dunno.data.registry` for the spec language (``mnist:rotate=90``,
``digits:classes=0-4``, ``uci/yacht:k=3``, ``gaussian-noise``), the module docstrings
of :mod:`~dunno.data.images` and :mod:`~dunno.data.uci` for splits and verification, and
:mod:`~dunno.data.user` for the user's own folders and arrays and the rule that splits them
(``mine.npz:val=0.15:test=0.15:split_seed=0``) so that no split shares an example.
"""

from dunno.data.base import ArrayDataset, DatasetInfo, RegressionDataset
from dunno.data.files import data_dir, fetch_file, sha256_of
from dunno.data.idx import read_idx
from dunno.data.loaders import BatchLoader, make_loader
from dunno.data.registry import (
    available_datasets,
    check_same_split,
    dataset_status,
    describe_split,
    is_user_data,
    load_dataset,
    parse_spec,
)
from dunno.data.transforms import (
    DynamicBinarize,
    channel_stats,
    gaussian_blur,
    invert,
    pixel_noise,
    resize_images,
    rotate,
)

__all__ = [
    "ArrayDataset",
    "BatchLoader",
    "DatasetInfo",
    "DynamicBinarize",
    "RegressionDataset",
    "available_datasets",
    "channel_stats",
    "data_dir",
    "dataset_status",
    "check_same_split",
    "describe_split",
    "fetch_file",
    "gaussian_blur",
    "invert",
    "is_user_data",
    "load_dataset",
    "make_loader",
    "parse_spec",
    "pixel_noise",
    "read_idx",
    "resize_images",
    "rotate",
    "sha256_of",
]
