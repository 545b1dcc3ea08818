"""User data: a folder of images or ``.npz`` / ``.npy`` arrays.

* A folder of PNG/JPEG images. If it has sub-folders, each sub-folder is a class (sorted
  names give labels 0, 1, ...); otherwise the images are unlabelled. When the folder holds
  a sub-folder named like the requested split (``train/``, ``test/``), that one is used.
  All images must have the same size; they become ``(N, 1, H, W)`` when every image is
  greyscale, else ``(N, 3, H, W)``, scaled to [0, 1].
* ``.npz`` with an array ``x`` and optionally ``y``; ``.npy`` with ``x`` only. ``(N, H, W)``
  gets a channel axis; uint8 arrays are scaled by 1/255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dunno.data.base import ArrayDataset, DatasetInfo
from dunno.errors import DataError

__all__ = ["load_user_data", "looks_like_user_path"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def looks_like_user_path(name: str) -> bool:
    """True when a dataset spec names a path rather than a registered dataset."""
    return (
        name.endswith((".npz", ".npy"))
        or name.startswith((".", "/", "~"))
        or Path(name).expanduser().exists()
    )


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.mode in ("1", "L", "I;16", "I", "F")
            arr = np.asarray(img.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"Cannot read image {str(path)!r}: {err}") from err
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def _load_folder(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    if (folder / split).is_dir():
        folder = folder / split
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    items: list[tuple[Path, int | None]] = []
    if classes:
        for label, cls in enumerate(classes):
            files = sorted(
                p for p in (folder / cls).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
            )
            items.extend((p, label) for p in files)
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items = [(p, None) for p in files]
    if not items:
        raise DataError(
            f"No PNG/JPEG images found in {str(folder)!r} (looked for {sorted(IMAGE_SUFFIXES)})."
        )
    arrays = [_read_image(p) for p, _ in items]
    first_size = arrays[0].shape[1:]
    for (path, _), arr in zip(items, arrays, strict=True):
        if arr.shape[1:] != first_size:
            raise DataError(
                f"Images in {str(folder)!r} have mixed sizes: {str(items[0][0])!r} is "
                f"{first_size[0]}x{first_size[1]} but {str(path)!r} is "
                f"{arr.shape[1]}x{arr.shape[2]}. Resize them to one size first."
            )
    channels = 3 if any(a.shape[0] == 3 for a in arrays) else 1
    arrays = [np.repeat(a, 3, axis=0) if a.shape[0] != channels else a for a in arrays]
    x = torch.from_numpy(np.stack(arrays))  # (N, C, H, W)
    y = None
    if classes:
        y = torch.tensor([label for _, label in items], dtype=torch.long)
    return x, y, {"classes": classes}


def _load_arrays(path: Path) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "x" not in archive.files:
                    raise DataError(
                        f"{str(path)!r} has arrays {archive.files}, but an array named 'x' "
                        "(the inputs) is required; 'y' (labels) is optional."
                    )
                x = archive["x"]
                y = archive["y"] if "y" in archive.files else None
        else:
            x, y = np.load(path, allow_pickle=False), None
    except DataError:
        raise
    except (ValueError, OSError) as err:
        raise DataError(f"Cannot read {str(path)!r} as NumPy data: {err}") from err
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{str(path)!r}: 'x' is empty.")
    if not np.isfinite(x).all():
        raise DataError(f"{str(path)!r}: 'x' contains NaN or inf.")
    if x.ndim == 3:
        x = x[:, None]
    yt = None
    if y is not None:
        if len(y) != len(x):
            raise DataError(f"{str(path)!r}: 'x' has {len(x)} rows but 'y' has {len(y)}.")
        yt = torch.from_numpy(np.asarray(y))
        if not yt.is_floating_point():
            yt = yt.long()
    return torch.from_numpy(x), yt, {}


def load_user_data(path: str, split: str = "test") -> ArrayDataset:
    """Load a folder of images or an ``.npz``/``.npy`` file (see the module docstring)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"User data path {str(p)!r} does not exist.")
    x, y, extras = _load_folder(p, split) if p.is_dir() else _load_arrays(p)
    kind = "image" if x.dim() == 4 else ("sequence" if x.dim() == 3 else "vector")
    num_classes = None
    if y is not None and not y.is_floating_point() and y.dim() == 1:
        if y.min() < 0:
            raise DataError(f"{str(p)!r}: labels must be >= 0, found {int(y.min())}.")
        num_classes = len(extras.get("classes", [])) or int(y.max()) + 1
    lo, hi = float(x.min()), float(x.max())
    info = DatasetInfo(
        name=str(path),
        kind=kind,
        shape=tuple(x.shape[1:]),
        num_classes=num_classes,
        value_range=(0.0, 1.0) if lo >= 0 and hi <= 1 else (lo, hi),
        description=f"user data from {p}",
        extras=extras,
    )
    return ArrayDataset(x.contiguous(), y, info)
