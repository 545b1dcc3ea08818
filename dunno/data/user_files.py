"""Reading user data from disk: image folders and ``.npz`` / ``.npy`` arrays.

:func:`read_user_source` turns a path into a :class:`UserSource`: its *parts* (the splits
it gives itself -- ``train``, ``val``, ``test`` -- or one ``pool``), each as float32 inputs
and optional int64 labels, plus the class names. Splitting is :mod:`dunno.data.user`'s job.
Hidden and system entries (names starting with ``.``, :data:`IGNORED_NAMES`) are skipped at
every depth; everything unexpected is refused with a :class:`~dunno.errors.DataError`
naming the file, the array and the value.
"""

from __future__ import annotations

import functools
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dunno.data.splits import content_hashes
from dunno.errors import DataError

__all__ = [
    "IGNORED_NAMES",
    "IMAGE_SUFFIXES",
    "MAX_CLASSES",
    "NPZ_ARRAYS",
    "SPLIT_NAMES",
    "UserPart",
    "UserSource",
    "is_ignored",
    "read_user_source",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IGNORED_NAMES = frozenset({
    "__macosx", "__pycache__", "thumbs.db", "ehthumbs.db", "desktop.ini", "$recycle.bin",
    "system volume information",
})
SPLIT_NAMES = ("train", "val", "test")
NPZ_ARRAYS = ("x", "y", "classes", "x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
MAX_CLASSES = 100_000
MIN_CLASS_LIMIT = 1000


def is_ignored(name: str) -> bool:
    """True for hidden and system entries: dot-names (``.DS_Store``, ``.ipynb_checkpoints``,
    ``._a.png``) and :data:`IGNORED_NAMES` (``__MACOSX``, ``Thumbs.db``, ``desktop.ini``, ...)."""
    return name.startswith(".") or name.lower() in IGNORED_NAMES


@dataclass(frozen=True)
class UserPart:
    """One part of the data: ``x (N, ...)`` float32, ``y (N,)`` int64 or ``None``,
    ``hashes`` (one content digest per example) and ``describe(i)`` naming example ``i``."""

    x: np.ndarray
    y: np.ndarray | None
    hashes: list[bytes]
    describe: Callable[[int], str]


@dataclass(frozen=True)
class UserSource:
    """What a user path holds: ``parts`` (keys ``"pool"`` or a subset of ``train``, ``val``,
    ``test``), ``classes`` (names, or ``None``), ``num_classes`` (``None``: unlabelled),
    ``layout`` (one phrase) and ``value_range`` over all parts."""

    parts: dict[str, UserPart]
    classes: list[str] | None
    num_classes: int | None
    layout: str
    value_range: tuple[float, float]


# --------------------------------------------------------------------------- folders
def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not is_ignored(p.name))


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _images_below(folder: Path) -> list[Path]:
    found = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_ignored(d))
        found.extend(Path(here) / f for f in files if not is_ignored(f)
                     and Path(f).suffix.lower() in IMAGE_SUFFIXES)
    return sorted(found)


#: Pillow modes of 16-bit greyscale images (scaled by 1/65535)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _read_image(path: Path) -> np.ndarray:
    """``(C, H, W)`` float32 in [0, 1] (``C`` = 1 for greyscale, else 3 RGB): 8-bit images
    scaled by 1/255, 16-bit greyscale by 1/65535, 32-bit float greyscale used as stored
    (it must lie in [0, 1]); 32-bit integer images, whose range no convention fixes, are
    refused (converting any of these to 8 bits would clip or flatten them)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in _SIXTEEN_BIT:
                arr = np.asarray(img, dtype=np.float32) / 65535.0
            elif mode in ("F", "I"):
                arr = np.asarray(img, dtype=np.float64)
            else:
                grey = mode in ("1", "L")
                arr = np.asarray(img.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"Cannot read image {str(path)!r}: {err}") from err
    if mode == "I":
        raise DataError(
            f"Image {str(path)!r} is a 32-bit integer image (mode 'I'), whose value range "
            "is not defined; save it as 8-bit, 16-bit or 32-bit float in [0, 1], or pass "
            "the arrays scaled to [0, 1] in an .npz."
        )
    if mode == "F":
        finite = np.isfinite(arr)
        if not finite.all() or arr.min() < 0 or arr.max() > 1:
            shown = (f"[{arr[finite].min():g}, {arr[finite].max():g}]" if finite.all()
                     else "NaN or inf")
            raise DataError(
                f"Image {str(path)!r} is a 32-bit float image (mode 'F') with values "
                f"{shown}; float images are used as stored and must lie in [0, 1]."
            )
        arr = arr.astype(np.float32)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def _class_files(folder: Path, classes: list[str], defines: bool) -> list[tuple[Path, int | None]]:
    """The images of one split folder (or the pool), with their labels."""
    entries = _visible(folder)
    subdirs = [p.name for p in entries if p.is_dir()]
    loose = [p for p in entries if _is_image(p)]
    items: list[tuple[Path, int | None]] = []
    if classes:
        unknown = [d for d in subdirs if d not in classes]
        if unknown:
            raise DataError(
                f"{str(folder)!r} has class folder(s) {unknown} that 'train/' does not have; "
                f"the classes are the sub-folders of 'train/': {classes}. Rename or remove them."
            )
        if loose:
            raise DataError(
                f"{str(folder)!r} has class sub-folders and also images directly inside it "
                f"(e.g. {str(loose[0])!r}); put every image in its class folder."
            )
        for label, cls in enumerate(classes):
            if not (folder / cls).is_dir():
                continue
            files = _images_below(folder / cls)
            if defines and not files:
                raise DataError(
                    f"Class folder {str(folder / cls)!r} has no images (looked for "
                    f"{list(IMAGE_SUFFIXES)}); remove it or add its images."
                )
            items.extend((p, label) for p in files)
    else:
        if subdirs:
            raise DataError(
                f"{str(folder)!r} has sub-folders {subdirs}, but 'train/' holds unlabelled "
                "images (no class folders); use class folders in every split or in none."
            )
        items = [(p, None) for p in loose]
    if not items:
        raise DataError(
            f"No images found in {str(folder)!r} (looked for {list(IMAGE_SUFFIXES)}, "
            "skipping hidden and system entries)."
        )
    return items


def _read_folder(root: Path) -> UserSource:
    entries = _visible(root)
    dirs = [p for p in entries if p.is_dir()]
    split_dirs = [p.name for p in dirs if p.name in SPLIT_NAMES]
    if split_dirs:
        if "train" not in split_dirs:
            raise DataError(
                f"{str(root)!r} has split folder(s) {split_dirs} but no 'train/'; the classes "
                "are the sub-folders of 'train/', so a split layout needs one."
            )
        others = [p.name for p in dirs if p.name not in SPLIT_NAMES]
        loose = [p.name for p in entries if _is_image(p)]
        if others or loose:
            raise DataError(
                f"{str(root)!r} holds split folders {split_dirs} and also "
                f"{others + loose}; a split layout holds only train/, val/ and test/."
            )
        classes = [p.name for p in _visible(root / "train") if p.is_dir()]
        files = {s: _class_files(root / s, classes, s == "train")
                 for s in SPLIT_NAMES if s in split_dirs}
        layout = f"split folders {'/, '.join(split_dirs)}/"
    else:
        classes = [p.name for p in dirs]
        files = {"pool": _class_files(root, classes, True)}
        layout = "a folder of class folders" if classes else "a folder of unlabelled images"
    arrays = {s: [_read_image(p) for p, _ in items] for s, items in files.items()}
    first_path, first = next(iter(files.values()))[0][0], next(iter(arrays.values()))[0]
    channels = 1
    for s, items in files.items():
        for (path, _), arr in zip(items, arrays[s], strict=True):
            if arr.shape[1:] != first.shape[1:]:
                raise DataError(
                    f"Images in {str(root)!r} have mixed sizes: {str(first_path)!r} is "
                    f"{first.shape[1]}x{first.shape[2]} but {str(path)!r} is "
                    f"{arr.shape[1]}x{arr.shape[2]}. Resize them to one size first."
                )
            channels = max(channels, arr.shape[0])
    parts = {}
    for s, items in files.items():
        x = np.stack([np.repeat(a, channels, axis=0) if a.shape[0] != channels else a
                      for a in arrays[s]])  # (N, C, H, W)
        y = np.array([label for _, label in items], dtype=np.int64) if classes else None
        paths = [p for p, _ in items]
        parts[s] = UserPart(x, y, content_hashes(x), lambda i, paths=paths: repr(str(paths[i])))
    return UserSource(parts, classes or None, len(classes) or None, layout, (0.0, 1.0))


# --------------------------------------------------------------------------- arrays
def _inputs(arr: np.ndarray, path: Path, name: str) -> np.ndarray:
    where = f"{name!r} in {str(path)!r}"
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where} must hold numbers; got dtype {arr.dtype}.")
    if arr.ndim < 2:
        raise DataError(
            f"{where} must have one row per example -- (N, D), (N, H, W) or (N, C, H, W); "
            f"got shape {arr.shape}."
        )
    if len(arr) == 0:
        raise DataError(f"{where} is empty (shape {arr.shape}).")
    if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] > 4:
        raise DataError(
            f"{where} has shape {arr.shape}, which looks channels-last (N, H, W, C); "
            "images are read as (N, C, H, W). Store x.transpose(0, 3, 1, 2)."
        )
    if arr.dtype == np.uint8 and arr.max() == 1:
        raise DataError(
            f"{where} is uint8 and holds only 0 and 1; uint8 arrays are read as 8-bit "
            "pixels 0..255 and scaled by 1/255, which would make them 0 and 0.0039. "
            "Store binary images as bool or float32 0/1."
        )
    x = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{where} contains NaN or inf (first at index {tuple(bad.tolist())}).")
    return x[:, None] if x.ndim == 3 else x  # (N, H, W) -> (N, 1, H, W)


def _labels(arr: np.ndarray, path: Path, name: str, rows: int) -> np.ndarray:
    where = f"{name!r} in {str(path)!r}"
    if arr.ndim != 1:
        raise DataError(
            f"{where} must be 1-D class labels (N,); got shape {arr.shape} (for one-hot "
            "labels store y.argmax(1))."
        )
    if len(arr) != rows:
        raise DataError(f"{where} has {len(arr)} labels but its inputs have {rows} rows.")
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if len(bad):
            raise DataError(
                f"{where} must hold integer class labels; {name}[{bad[0]}] = "
                f"{arr[bad[0]].item()!r} is not an integer."
            )
    elif arr.dtype.kind not in "iu":
        raise DataError(
            f"{where} must hold integer class labels 0..K-1; got dtype {arr.dtype} (store "
            "class names in an array named 'classes' and the labels as their indices)."
        )
    if len(arr) and arr.min() < 0:
        i = int(np.argmin(arr))
        raise DataError(f"{where} must hold labels >= 0; {name}[{i}] = {arr[i].item()!r}.")
    if len(arr) and arr.max() >= np.iinfo(np.int64).max:
        i = int(np.argmax(arr))
        raise DataError(
            f"{where} has a label too large for int64: {name}[{i}] = {arr[i].item()!r}."
        )
    return arr.astype(np.int64)


def _check_label_range(parts: dict[str, UserPart], names: dict[str, str], path: Path,
                       classes: list[str] | None) -> int:
    total = sum(len(p.x) for p in parts.values())
    limit = len(classes) if classes is not None else min(MAX_CLASSES, max(MIN_CLASS_LIMIT, total))
    for s, part in parts.items():
        if len(part.y) and part.y.max() >= limit:
            i = int(np.argmax(part.y))
            why = (f"but 'classes' names {limit} classes (labels 0..{limit - 1})"
                   if classes is not None else
                   f"but labels must be 0..K-1 with K at most max({MIN_CLASS_LIMIT}, number of "
                   f"examples = {total}) and at most {MAX_CLASSES}: a label this large would "
                   "make a model with that many outputs")
            raise DataError(
                f"{names[s]!r} in {str(path)!r} has label {names[s]}[{i}] = {int(part.y[i])}, "
                f"{why}. Re-number the labels 0..K-1."
            )
    return limit if classes is not None else 1 + max(int(p.y.max()) for p in parts.values())


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None


def _check_declared_sizes(path: Path) -> None:
    """Refuse an ``.npz`` whose arrays declare more float32 values than this machine's memory
    holds (a small compressed file can declare terabytes), before decompressing anything."""
    memory = _memory_bytes()
    if memory is None:
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                with archive.open(member) as handle:
                    major, _ = np.lib.format.read_magic(handle)
                    read = (np.lib.format.read_array_header_1_0 if major == 1
                            else np.lib.format.read_array_header_2_0)
                    shape, _, _ = read(handle)
                needed = math.prod(shape) * 4  # as float32
                if needed > memory:
                    raise DataError(
                        f"{member.filename.removesuffix('.npy')!r} in {str(path)!r} declares "
                        f"shape {tuple(shape)}: {needed / 2**30:.1f} GiB as float32, more "
                        f"than this machine's memory ({memory / 2**30:.1f} GiB)."
                    )
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return  # not a well-formed archive: np.load below names the problem


def _read_arrays(path: Path) -> UserSource:
    try:
        if path.suffix.lower() == ".npz":
            _check_declared_sizes(path)
            with np.load(path, allow_pickle=False) as archive:
                raw = {k: archive[k] for k in archive.files}
        else:
            raw = {"x": np.load(path, allow_pickle=False)}
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"Cannot read {str(path)!r} as NumPy data: {err}") from err
    given = [s for s in SPLIT_NAMES if f"x_{s}" in raw]
    if "x" in raw and given:
        raise DataError(
            f"{str(path)!r} has both 'x' and {[f'x_{s}' for s in given]}; give one pool 'x' "
            "(split by the seeded rule) or per-split arrays, not both."
        )
    if "x" not in raw and not given:
        raise DataError(
            f"{str(path)!r} has arrays {sorted(raw)}, but an array named 'x' (the inputs) is "
            "required, or per-split x_train / x_val / x_test; 'y' (labels) is optional."
        )
    unknown = sorted(set(raw) - set(NPZ_ARRAYS))
    if unknown:
        raise DataError(
            f"{str(path)!r} has array(s) {unknown} this format does not know; it takes 'x' "
            "(inputs), 'y' (labels), 'classes' (class names), or per split x_train, y_train, "
            "x_val, y_val, x_test, y_test."
        )
    keys = {"pool": ("x", "y")} if "x" in raw else {s: (f"x_{s}", f"y_{s}") for s in given}
    stray = [y for y in ("y", *(f"y_{s}" for s in SPLIT_NAMES))
             if y in raw and y not in {k[1] for k in keys.values()}]
    if stray:
        raise DataError(f"{str(path)!r} has labels {stray} without the matching inputs.")
    with_y = [xk for xk, yk in keys.values() if yk in raw]
    if with_y and len(with_y) != len(keys):
        raise DataError(
            f"{str(path)!r} has labels for {with_y} but not for "
            f"{[xk for xk, yk in keys.values() if yk not in raw]}; label every split or none."
        )
    classes = None
    if "classes" in raw:
        names = raw["classes"]
        if not with_y or names.dtype.kind not in "US" or names.ndim != 1 or len(names) == 0 \
                or len(set(names.tolist())) != len(names):
            raise DataError(
                f"'classes' in {str(path)!r} must be a 1-D array of distinct class names "
                f"(strings) next to labels; got dtype {names.dtype}, shape {names.shape}"
                f"{'' if with_y else ' and no labels'}."
            )
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    parts, shape = {}, None
    for s, (xk, yk) in keys.items():
        x = _inputs(raw[xk], path, xk)
        if shape is not None and x.shape[1:] != shape[1]:
            raise DataError(
                f"{str(path)!r}: {xk!r} has examples of shape {x.shape[1:]} but {shape[0]!r} "
                f"has {shape[1]}; every split must have the same input shape."
            )
        shape = shape or (xk, x.shape[1:])
        y = _labels(raw[yk], path, yk, len(x)) if yk in raw else None
        parts[s] = UserPart(x, y, content_hashes(x),
                            lambda i, xk=xk: f"{xk}[{i}] of {str(path)!r}")
    num_classes = None
    if with_y:
        num_classes = _check_label_range(parts, {s: k[1] for s, k in keys.items()}, path,
                                         classes)
    lo = min(float(p.x.min()) for p in parts.values())
    hi = max(float(p.x.max()) for p in parts.values())
    layout = "arrays " + ", ".join(k[0] for k in keys.values())
    value_range = (0.0, 1.0) if lo >= 0 and hi <= 1 else (lo, hi)
    return UserSource(parts, classes, num_classes, layout, value_range)


# --------------------------------------------------------------------------- cached entry
def _signature(path: Path) -> tuple:
    if path.is_file():
        st = path.stat()
        return (st.st_size, st.st_mtime_ns)
    sig = []
    for here, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not is_ignored(d))
        for f in sorted(files):
            st = (Path(here) / f).stat()
            sig.append((here, f, st.st_size, st.st_mtime_ns))
    return tuple(sig)


@functools.lru_cache(maxsize=2)
def _read_cached(path: str, signature: tuple) -> UserSource:
    p = Path(path)
    return _read_folder(p) if p.is_dir() else _read_arrays(p)


def read_user_source(path: Path) -> UserSource:
    """Read ``path`` (a folder, ``.npz`` or ``.npy``) once; repeated calls on unchanged files
    reuse the result (the arrays must not be modified in place)."""
    path = path.resolve()
    return _read_cached(str(path), _signature(path))
