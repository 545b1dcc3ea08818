"""Tiny files in the formats of the official CIFAR-10, CIFAR-100 and SVHN downloads, for the
tests: a few records per file, checksums and record counts patched into
``dunno.data.colour.COLOUR_SETS`` (the same hook the MNIST tests use for ``IDX_SETS``)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import torch

from dunno.data import colour

CIFAR10_TRAIN, CIFAR10_TEST = 4, 6  # records per training batch (x5), test records
CIFAR100_TRAIN, CIFAR100_TEST = 12, 5
SVHN_TRAIN, SVHN_TEST = 10, 7
N_VAL = 4


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A ``.tar.gz`` holding ``members`` (name -> bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def cifar_records(images: np.ndarray, *labels: np.ndarray) -> bytes:
    """Records of the label byte(s) then the R, G, B planes (rows first) of each image."""
    out = bytearray()
    for i, image in enumerate(images):  # image (3, 32, 32) uint8
        out += bytes(int(lab[i]) for lab in labels)
        for channel in range(3):
            for row in range(32):
                out += bytes(int(v) for v in image[channel, row])
    return bytes(out)


def write_svhn(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """An SVHN-style ``.mat``: ``X (32, 32, 3, N)`` uint8, ``y (N, 1)`` with 10 for digit 0."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.zeros((32, 32, 3, len(images)), dtype=np.uint8)
    for n, image in enumerate(images):
        for c in range(3):
            x[:, :, c, n] = image[c]  # X[h, w, c, n] = image[c, h, w]
    y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
    savemat(path, {"X": x, "y": y})
    return path


def install(root: Path, monkeypatch, seed: int = 0) -> dict:
    """Write tiny CIFAR-10, CIFAR-100 and SVHN files under ``root`` and patch their
    checksums, record counts and validation size in; returns the arrays written:
    ``{"cifar10": {"train": (x, y), "test": (x, y)}, "cifar100": {... (x, coarse, fine)},
    "svhn": {...}}`` with ``x (N, 3, 32, 32)`` uint8 and the training parts in file order."""
    rng = np.random.default_rng(seed)
    root = Path(root)

    def images(n):
        return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)

    written: dict = {}
    # CIFAR-10: five training batches and a test batch in one archive
    n = 5 * CIFAR10_TRAIN
    labels = rng.integers(0, 10, n)
    train_index = torch.randperm(n, generator=torch.Generator().manual_seed(0))[N_VAL:]
    labels[train_index.sort().values.numpy()] = np.arange(n - N_VAL) % 10  # every class trains
    batches = [(images(CIFAR10_TRAIN), labels[i * CIFAR10_TRAIN:(i + 1) * CIFAR10_TRAIN])
               for i in range(5)]
    test = (images(CIFAR10_TEST), rng.integers(0, 10, CIFAR10_TEST))
    members = {f"cifar-10-batches-bin/data_batch_{i + 1}.bin": cifar_records(x, y)
               for i, (x, y) in enumerate(batches)}
    members["cifar-10-batches-bin/test_batch.bin"] = cifar_records(*test)
    members["cifar-10-batches-bin/batches.meta.txt"] = b"airplane\n"
    path = write_tar(root / "cifar10" / "cifar-10-binary.tar.gz", members)
    spec = colour.COLOUR_SETS["cifar10"]
    monkeypatch.setitem(colour.COLOUR_SETS, "cifar10", {
        **spec, "files": {path.name: sha256(path)}, "n_val": N_VAL,
        "parts": {"train": [(m, CIFAR10_TRAIN) for m, _ in spec["parts"]["train"]],
                  "test": [(spec["parts"]["test"][0][0], CIFAR10_TEST)]}})
    written["cifar10"] = {"train": (np.concatenate([x for x, _ in batches]),
                                    np.concatenate([y for _, y in batches])), "test": test}
    # CIFAR-100: coarse and fine label bytes
    parts = {}
    for part, n in (("train", CIFAR100_TRAIN), ("test", CIFAR100_TEST)):
        parts[part] = (images(n), rng.integers(0, 20, n), rng.integers(0, 100, n))
    path = write_tar(root / "cifar100" / "cifar-100-binary.tar.gz", {
        f"cifar-100-binary/{part}.bin": cifar_records(*arrays) for part, arrays in parts.items()})
    spec = colour.COLOUR_SETS["cifar100"]
    monkeypatch.setitem(colour.COLOUR_SETS, "cifar100", {
        **spec, "files": {path.name: sha256(path)}, "n_val": N_VAL,
        "parts": {"train": [("cifar-100-binary/train.bin", CIFAR100_TRAIN)],
                  "test": [("cifar-100-binary/test.bin", CIFAR100_TEST)]}})
    written["cifar100"] = parts
    # SVHN: one .mat per part
    files, svhn = {}, {}
    for part, n in (("train", SVHN_TRAIN), ("test", SVHN_TEST)):
        x, y = images(n), rng.integers(0, 10, n)
        y[0] = 0  # stored as 10
        path = write_svhn(root / "svhn" / f"{part}_32x32.mat", x, y)
        files[path.name] = sha256(path)
        svhn[part] = (x, y)
    spec = colour.COLOUR_SETS["svhn"]
    monkeypatch.setitem(colour.COLOUR_SETS, "svhn", {
        **spec, "files": files, "n_val": N_VAL,
        "parts": {"train": [("train_32x32.mat", SVHN_TRAIN)],
                  "test": [("test_32x32.mat", SVHN_TEST)]}})
    written["svhn"] = svhn
    return written


def install_mnist(root: Path, monkeypatch, n: int = 6, seed: int = 0) -> np.ndarray:
    """Write tiny MNIST IDX files under ``root/mnist`` (``n`` images per part) and patch their
    checksums in; returns the test images ``(n, 28, 28)`` uint8."""
    import gzip
    import struct

    from dunno.data import images as images_module

    rng = np.random.default_rng(seed)
    folder = Path(root) / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    hashes, test = {}, None
    for part in ("train", "t10k"):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        for kind, array, dims in (("images-idx3", x, 3), ("labels-idx1", y, 1)):
            path = folder / f"{part}-{kind}-ubyte.gz"
            header = struct.pack(">BBBB", 0, 0, 0x08, dims) + struct.pack(
                ">" + "I" * array.ndim, *array.shape)
            with gzip.open(path, "wb") as handle:
                handle.write(header + array.tobytes())
            hashes[path.name] = sha256(path)
        test = x
    monkeypatch.setitem(images_module.IDX_SETS["mnist"], "files", hashes)
    return test
