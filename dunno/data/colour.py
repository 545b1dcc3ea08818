"""Colour image datasets: CIFAR-10, CIFAR-100 (binary versions) and SVHN (cropped digits).

Files (under the data directory, see :func:`dunno.data.data_dir`), read without pickle:

* ``cifar10/cifar-10-binary.tar.gz``: read straight from the archive (no extraction), members
  ``cifar-10-batches-bin/data_batch_{1..5}.bin`` (training) and ``test_batch.bin``, each
  10 000 records of 1 label byte (0..9) + 3072 pixel bytes: 1024 red, then 1024 green, then
  1024 blue, each plane a row-major 32x32 image (Krizhevsky 2009).
* ``cifar100/cifar-100-binary.tar.gz``: members ``cifar-100-binary/train.bin`` (50 000
  records) and ``test.bin`` (10 000), each record 1 coarse-label byte (0..19) + 1 fine-label
  byte (0..99) + the same 3072 pixel bytes. The fine labels are used unless the spec says
  ``cifar100:labels=coarse``.
* ``svhn/train_32x32.mat`` (73 257 digits) and ``test_32x32.mat`` (26 032): MATLAB v5 files
  read with :func:`scipy.io.loadmat`, ``X`` of shape ``(32, 32, 3, N)`` uint8 and ``y`` of
  shape ``(N, 1)`` with labels 1..10, where 10 means the digit 0 (Netzer et al. 2011); the
  labels returned are the digits 0..9.

Images are ``x (N, 3, 32, 32)`` float32 in [0, 1] (channels R, G, B), labels ``y (N,)``
int64. Splits: ``test`` is the test file; the training file is split by a fixed permutation
(seed 0) whose first :data:`N_VAL` = 5 000 images are ``val`` and the rest ``train``:
CIFAR-10/100 45 000 / 5 000, SVHN 68 257 / 5 000; ``train-full`` is the whole training
file. The networks normalise per channel themselves (the ``mean`` / ``std``
options of ``resnet18-cifar``), so the data stays in [0, 1].

Checksums: every file's sha256 is checked before it is read (``verify=True``). The sums are
those pinned, with the file sizes, by TensorFlow Datasets (``url_checksums/cifar10.txt``,
``cifar100.txt``, ``svhn_cropped.txt``) and, for SVHN, by torchvision's prototype datasets;
the archives' published MD5s (torchvision's) are recorded in :data:`COLOUR_SETS` as ``md5``
for reference. Downloads come from the official pages (``https://www.cs.toronto.edu/~kriz/``,
``http://ufldl.stanford.edu/housenumbers/``) or the mirrors in ``DUNNO_CIFAR10_MIRRORS``,
``DUNNO_CIFAR100_MIRRORS``, ``DUNNO_SVHN_MIRRORS`` (comma-separated base URLs), verified
while they stream (:func:`dunno.data.files.fetch_file`).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from dunno.data.base import ArrayDataset, DatasetInfo
from dunno.data.files import data_dir, download_files, files_status, mirror_list, verify_file
from dunno.errors import DataError

__all__ = ["COLOUR_SETS", "N_VAL", "colour_set_status", "download_colour_set",
           "load_colour_set", "read_cifar_records", "read_svhn_mat", "spec_loader"]

SPLIT_SEED = 0
#: Size of the ``val`` split carved from each training file (override per set with ``n_val``).
N_VAL = 5000
PIXELS = 3 * 32 * 32

_CIFAR10_BATCHES = "cifar-10-batches-bin/"
_CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                    "ship", "truck"]

#: name -> folder, ``files`` {file: sha256}, ``md5`` (reference only), ``parts`` {train|test:
#: [(member or file, records)]}, mirrors, description, class names, label bytes per record.
COLOUR_SETS: dict[str, dict] = {
    "cifar10": {
        "folder": "cifar10",
        "kind": "cifar",
        "files": {  # 170 052 171 bytes
            "cifar-10-binary.tar.gz":
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        },
        "md5": {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
        "parts": {
            "train": [(f"{_CIFAR10_BATCHES}data_batch_{i}.bin", 10000) for i in range(1, 6)],
            "test": [(f"{_CIFAR10_BATCHES}test_batch.bin", 10000)],
        },
        "label_bytes": 1,
        "num_classes": {"fine": 10},
        "classes": _CIFAR10_CLASSES,
        "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
        "env": "DUNNO_CIFAR10_MIRRORS",
        "augmentation": {"crop_padding": 4, "flip": True},
        "description": "CIFAR-10 colour photos, 32x32 RGB, 10 classes (Krizhevsky 2009)",
    },
    "cifar100": {
        "folder": "cifar100",
        "kind": "cifar",
        "files": {  # 168 513 733 bytes
            "cifar-100-binary.tar.gz":
                "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
        },
        "md5": {"cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8"},
        "parts": {
            "train": [("cifar-100-binary/train.bin", 50000)],
            "test": [("cifar-100-binary/test.bin", 10000)],
        },
        "label_bytes": 2,
        "num_classes": {"coarse": 20, "fine": 100},
        "classes": None,
        "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
        "env": "DUNNO_CIFAR100_MIRRORS",
        "augmentation": {"crop_padding": 4, "flip": True},
        "description": "CIFAR-100 colour photos, 32x32 RGB, 100 fine classes (labels=coarse: "
                       "20 superclasses) (Krizhevsky 2009)",
    },
    "svhn": {
        "folder": "svhn",
        "kind": "mat",
        "files": {
            "train_32x32.mat":  # 182 040 794 bytes
                "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
            "test_32x32.mat":  # 64 275 384 bytes
                "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
        },
        "md5": {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
                "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"},
        "parts": {"train": [("train_32x32.mat", 73257)], "test": [("test_32x32.mat", 26032)]},
        "num_classes": {"fine": 10},
        "classes": [str(d) for d in range(10)],
        "mirrors": ["http://ufldl.stanford.edu/housenumbers/"],
        "env": "DUNNO_SVHN_MIRRORS",
        "augmentation": None,
        "description": "SVHN cropped house-number digits, 32x32 RGB, 10 classes "
                       "(Netzer et al. 2011)",
    },
}


def _mirrors(name: str, mirrors: list[str] | None) -> list[str]:
    return mirror_list(COLOUR_SETS[name], mirrors)


def download_colour_set(name: str, root=None, mirrors: list[str] | None = None) -> Path:
    """Fetch the files of ``name`` that are missing or fail their sha256; returns the folder."""
    return download_files(COLOUR_SETS[name], root, mirrors)


def colour_set_status(name: str, root=None) -> tuple[str, str]:
    """``("verified" | "missing" | "corrupt", detail)`` for the files of a colour set."""
    return files_status(COLOUR_SETS[name], root)


def read_cifar_records(raw: bytes, label_bytes: int, where: str, records: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Decode CIFAR binary records: ``(images (N, 3, 32, 32) uint8, labels (N, label_bytes)
    uint8)``.

    Each record is ``label_bytes`` label bytes then 3072 pixel bytes (the red, green and blue
    32x32 planes, rows first). Raises :class:`DataError` naming ``where`` when the bytes are
    not a whole number of records, or not ``records`` of them when that is given.
    """
    size = label_bytes + PIXELS
    if len(raw) == 0 or len(raw) % size:
        raise DataError(
            f"{where} is truncated or not a CIFAR binary file: {len(raw)} bytes is not a whole "
            f"number of {size}-byte records ({label_bytes} label byte(s) + {PIXELS} pixels)."
        )
    n = len(raw) // size
    if records is not None and n != records:
        raise DataError(f"{where} holds {n} records; the official file holds {records}.")
    table = np.frombuffer(raw, dtype=np.uint8).reshape(n, size)
    images = table[:, label_bytes:].reshape(n, 3, 32, 32)  # (N, C=RGB, H, W)
    return images, table[:, :label_bytes].copy()


def _read_member(archive: tarfile.TarFile, member: str, where: str) -> bytes:
    try:
        handle = archive.extractfile(member)
    except KeyError:
        raise DataError(f"{where}: the archive has no member {member!r}.") from None
    if handle is None:
        raise DataError(f"{where}: member {member!r} is not a regular file.")
    with handle:
        return handle.read()


@functools.lru_cache(maxsize=4)
def _read_cifar(path: str, parts: tuple, label_bytes: int, mtime: int
                ) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    try:
        with gzip.open(path, "rb") as handle:  # read to the end: the gzip CRC is checked
            raw = handle.read()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            for member, records in parts:
                where = f"{path!r} (member {member!r})"
                raw = _read_member(archive, member, where)
                x, y = read_cifar_records(raw, label_bytes, where, records)
                images.append(x)
                labels.append(y)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path!r} is truncated or not a valid .tar.gz archive: {err}") from err
    return np.concatenate(images), np.concatenate(labels)


def read_svhn_mat(path: str | os.PathLike, records: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``*_32x32.mat`` file: ``(images (N, 3, 32, 32) uint8, digits (N,) int64)``.

    ``X (32, 32, 3, N)`` becomes ``(N, 3, 32, 32)`` (``X.transpose(3, 2, 0, 1)``); labels
    1..10 become digits with 10 -> 0. Raises :class:`DataError` naming the file for a file
    that is not a readable MATLAB v5 file, missing or mis-shaped ``X`` / ``y``, labels
    outside 1..10, or a record count other than ``records``.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = str(path)
    try:
        mat = loadmat(path)
    except NotImplementedError as err:  # MATLAB v7.3 (HDF5)
        raise DataError(f"{path!r} is not a MATLAB v5 file ({err}).") from err
    except (MatReadError, ValueError, TypeError, OSError, EOFError, zlib.error, IndexError,
            KeyError, OverflowError) as err:
        raise DataError(f"{path!r} is truncated or not a valid MATLAB file: {err}") from err
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path!r} has no 'X' and 'y' arrays (found {sorted(mat)}).")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(f"{path!r}: 'X' must be uint8 of shape (32, 32, 3, N). Got "
                        f"{x.dtype} {x.shape}.")
    n = x.shape[3]
    if y.shape not in ((n, 1), (n,)):
        raise DataError(f"{path!r}: 'y' must have shape ({n}, 1) to match 'X'. Got {y.shape}.")
    y = y.reshape(n)
    if not np.all((y >= 1) & (y <= 10) & (y == np.round(y))):
        bad = y[~((y >= 1) & (y <= 10) & (y == np.round(y)))]
        raise DataError(f"{path!r}: labels must be the integers 1..10 (10 = digit 0). Got "
                        f"{bad[:5].tolist()}.")
    if records is not None and n != records:
        raise DataError(f"{path!r} holds {n} records; the official file holds {records}.")
    digits = y.astype(np.int64) % 10  # (N,): 10 -> 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), digits  # (N, C, H, W)


@functools.lru_cache(maxsize=2)
def _read_mat(path: str, records: int | None, mtime: int) -> tuple[np.ndarray, np.ndarray]:
    return read_svhn_mat(path, records)


def _check_labels(y: np.ndarray, num_classes: int, where: str) -> None:
    if y.size and int(y.max()) >= num_classes:
        bad = sorted(set(y[y >= num_classes].tolist()))[:5]
        raise DataError(f"{where}: labels must be in 0..{num_classes - 1}. Got {bad}.")


def _load_part(name: str, part: str, root, labels: str, verify: bool, download: bool,
               mirrors) -> tuple[np.ndarray, np.ndarray]:
    spec = COLOUR_SETS[name]
    folder = data_dir(root) / spec["folder"]
    if download:
        download_colour_set(name, root, mirrors)
    entries = spec["parts"][part]
    filename = next(iter(spec["files"])) if spec["kind"] == "cifar" else entries[0][0]
    path = folder / filename
    if not path.is_file():
        raise DataError(
            f"Dataset {name!r}: file {filename!r} not found in {str(folder)!r} (data directory "
            "from the 'root' argument / --data-dir, else $DUNNO_DATA, else ~/.cache/dunno). Put "
            "the original file there, point $DUNNO_DATA at a folder holding it, or pass "
            f"download=True (`dunno datasets --download {name}`)."
        )
    if verify:
        verify_file(path, spec["files"][filename])
    mtime = os.stat(path).st_mtime_ns
    if spec["kind"] == "mat":
        return _read_mat(str(path), entries[0][1], mtime)
    x, y = _read_cifar(str(path), tuple(tuple(e) for e in entries), spec["label_bytes"], mtime)
    column = 0 if labels == "coarse" or spec["label_bytes"] == 1 else 1
    y = y[:, column].astype(np.int64)
    _check_labels(y, spec["num_classes"][labels], f"{str(path)!r} ({part})")
    return x, y


def load_colour_set(
    name: str,
    split: str,
    root=None,
    *,
    labels: str = "fine",
    verify: bool = True,
    download: bool = False,
    mirrors: list[str] | None = None,
) -> ArrayDataset:
    """Load ``cifar10``, ``cifar100`` or ``svhn`` as ``x (N, 3, 32, 32)`` float32 in [0, 1]
    and ``y (N,)`` int64; ``labels="coarse"`` gives CIFAR-100's 20 superclasses. See the
    module docstring for the files, checks and splits."""
    spec = COLOUR_SETS[name]
    if labels not in spec["num_classes"]:
        raise DataError(f"Dataset option 'labels' of {name!r} must be one of "
                        f"{sorted(spec['num_classes'])}. Got {labels!r}.")
    part = "test" if split == "test" else "train"
    x_np, y_np = _load_part(name, part, root, labels, verify, download, mirrors)
    if split in ("train", "val"):
        n_val = spec.get("n_val", N_VAL)
        if len(x_np) <= n_val:
            raise DataError(f"Dataset {name!r}: the training file holds {len(x_np)} images, "
                            f"too few to hold out {n_val} for 'val'.")
        g = torch.Generator()
        g.manual_seed(SPLIT_SEED)
        perm = torch.randperm(len(x_np), generator=g)
        index = (perm[n_val:] if split == "train" else perm[:n_val]).sort().values.numpy()
        x_np, y_np = x_np[index], y_np[index]
    x = torch.from_numpy(x_np.astype(np.float32) / 255.0)  # (N, 3, 32, 32)
    coarse = labels == "coarse"
    info = DatasetInfo(
        name=name,
        kind="image",
        shape=(3, 32, 32),
        num_classes=spec["num_classes"][labels],
        value_range=(0.0, 1.0),
        description=spec["description"] + (" (coarse labels)" if coarse else ""),
        extras={"classes": None if coarse else spec["classes"],
                "augmentation": spec["augmentation"]},
    )
    y = torch.from_numpy(np.array(y_np, dtype=np.int64))  # a copy: never the cached array
    return ArrayDataset(x.contiguous(), y, info)


def spec_loader(name: str):
    """The loader :mod:`dunno.data.registry` calls for dataset spec ``name`` (its only
    option: ``labels=fine|coarse``)."""

    def load(split, root, opts, *, download=False, mirrors=None, verify=True, **_):
        return load_colour_set(name, split, root, labels=str(opts.get("labels", "fine")),
                               verify=verify, download=download, mirrors=mirrors)

    return load
