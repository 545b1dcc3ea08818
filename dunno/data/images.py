"""Image datasets: scikit-learn's digits (bundled), MNIST and Fashion-MNIST (IDX files).

Splits
------
* ``digits``: 1797 8x8 images (values 0..16 scaled to [0, 1]); a stratified split with
  seed 0 into ``train`` (1257), ``val`` (180) and ``test`` (360).
* ``mnist`` / ``fashion-mnist``: ``test`` is the 10 000-image t10k file; the 60 000 training
  images are split by a fixed permutation (seed 0) into ``train`` (55 000) and ``val``
  (5 000); ``train-full`` is all 60 000.
* ``mnist-binary`` / ``fashion-mnist-binary``: the same images binarised once by a fixed
  Bernoulli draw ``x_b ~ Bernoulli(x)`` (torch generator seeded with 2011 for the training
  file and 2012 for the test file), so every user sees the same binary pixels. For dynamic
  binarisation during training use :class:`dunno.data.transforms.DynamicBinarize`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from dunno.data.base import ArrayDataset, DatasetInfo
from dunno.data.files import data_dir, download_files, files_status, mirror_list, verify_file
from dunno.data.idx import read_idx
from dunno.errors import DataError

__all__ = ["IDX_SETS", "load_digits", "load_idx_set", "idx_set_status", "download_idx_set"]

SPLIT_SEED = 0
N_VAL = 5000

# name -> folder, {file: sha256}, mirrors, description, class names
IDX_SETS = {
    "mnist": {
        "folder": "mnist",
        "files": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ],
        "env": "DUNNO_MNIST_MIRRORS",
        "description": "MNIST handwritten digits, 28x28 grey, 10 classes (LeCun et al. 1998)",
    },
    "fashion-mnist": {
        "folder": "fashion-mnist",
        "files": {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "env": "DUNNO_FASHION_MNIST_MIRRORS",
        "description": "Fashion-MNIST clothing images, 28x28 grey, 10 classes (Xiao et al. 2017)",
    },
}


def _mirrors(name: str, mirrors: list[str] | None) -> list[str]:
    return mirror_list(IDX_SETS[name], mirrors)


def download_idx_set(name: str, root=None, mirrors: list[str] | None = None) -> Path:
    """Fetch the four IDX files of ``name`` that are missing or fail their sha256."""
    return download_files(IDX_SETS[name], root, mirrors)


def idx_set_status(name: str, root=None) -> tuple[str, str]:
    """``("verified" | "missing" | "corrupt", detail)`` for the files of an IDX set."""
    return files_status(IDX_SETS[name], root)


@functools.lru_cache(maxsize=8)
def _read_pair(images: str, labels: str, mtimes: tuple) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataError(
            f"{images!r} and {labels!r} do not form an image/label pair "
            f"(shapes {x.shape} and {y.shape})."
        )
    return x, y


def _load_file_pair(name: str, part: str, root, verify: bool, download: bool, mirrors):
    spec = IDX_SETS[name]
    folder = data_dir(root) / spec["folder"]
    wanted = [f"{part}-images-idx3-ubyte.gz", f"{part}-labels-idx1-ubyte.gz"]
    if download:
        download_idx_set(name, root, mirrors)
    for filename in wanted:
        path = folder / filename
        if not path.is_file():
            raise DataError(
                f"Dataset {name!r}: file {filename!r} not found in {str(folder)!r} (data "
                "directory from the 'root' argument / --data-dir, else $DUNNO_DATA, else "
                "~/.cache/dunno). Put the original IDX .gz files there, point $DUNNO_DATA at "
                "a folder holding them, or pass download=True (`dunno datasets --download "
                f"{name}`)."
            )
        if verify:
            verify_file(path, spec["files"][filename])
    paths = [str(folder / f) for f in wanted]
    mtimes = tuple(os.stat(p).st_mtime_ns for p in paths)
    return _read_pair(paths[0], paths[1], mtimes)


def _binarize(x: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator()
    g.manual_seed(seed)
    return (torch.rand(x.shape, generator=g) < x).float()


def load_idx_set(
    name: str,
    split: str,
    root=None,
    *,
    binary: bool = False,
    verify: bool = True,
    download: bool = False,
    mirrors: list[str] | None = None,
) -> ArrayDataset:
    """Load ``mnist`` or ``fashion-mnist`` as ``x (N, 1, 28, 28)`` float32 in [0, 1] and
    ``y (N,)`` int64. See the module docstring for the splits and the binarisation."""
    part = "t10k" if split == "test" else "train"
    x_np, y_np = _load_file_pair(name, part, root, verify, download, mirrors)
    x = torch.from_numpy(x_np.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28)
    y = torch.from_numpy(y_np.astype(np.int64))
    if binary:
        x = _binarize(x, 2012 if part == "t10k" else 2011)
    if split in ("train", "val"):
        g = torch.Generator()
        g.manual_seed(SPLIT_SEED)
        perm = torch.randperm(len(x), generator=g)
        index = perm[N_VAL:] if split == "train" else perm[:N_VAL]
        index = index.sort().values
        x, y = x[index], y[index]
    full = name + ("-binary" if binary else "")
    info = DatasetInfo(
        name=full,
        kind="image",
        shape=tuple(x.shape[1:]),
        num_classes=10,
        value_range=(0.0, 1.0),
        description=IDX_SETS[name]["description"] + (" (binarised)" if binary else ""),
    )
    return ArrayDataset(x.contiguous(), y, info)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


def load_digits(split: str) -> ArrayDataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes) in [0, 1].

    Stratified, seeded split (seed 0): 360 test, then 180 validation, 1257 training.
    """
    from sklearn.model_selection import train_test_split

    images, labels = _digits_arrays()
    index = np.arange(len(images))
    rest, test = train_test_split(index, test_size=360, stratify=labels, random_state=SPLIT_SEED)
    train, val = train_test_split(
        rest, test_size=180, stratify=labels[rest], random_state=SPLIT_SEED
    )
    chosen = {"train": train, "val": val, "test": test, "train-full": rest}[split]
    chosen = np.sort(chosen)
    x = torch.from_numpy(images[chosen]).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(labels[chosen])
    info = DatasetInfo(
        name="digits",
        kind="image",
        shape=(1, 8, 8),
        num_classes=10,
        value_range=(0.0, 1.0),
        description="scikit-learn's bundled 8x8 handwritten digits, 10 classes (UCI optdigits)",
    )
    return ArrayDataset(x.contiguous(), y, info)
