"""The dataset registry and the dataset-spec mini-language.

A *spec* is a registered name (or a path to user data) followed by ``:``-separated
options, e.g. ``mnist``, ``mnist:rotate=90``, ``fashion-mnist:invert:blur=1.5``,
``digits:classes=0-4``, ``uci/yacht:k=3``, ``gaussian-noise:n=1000``. Options every image
set understands:

==============  ===================================================================
``classes=A-B``  keep only these classes (also ``0+2+7``); labels are re-numbered
                 0..k-1 in increasing order of the original class
``n=N``          a seeded random subset of N examples (``seed=`` sets the seed, default 0)
``rotate=DEG``   rotate counter-clockwise by DEG degrees
``invert``       photometric inversion ``1 - x``
``blur=SIGMA``   Gaussian blur with standard deviation SIGMA pixels
``noise=STD``    additive Gaussian pixel noise, clipped to [0, 1] (seeded)
==============  ===================================================================

User data (a folder or an ``.npz``/``.npy`` path, :mod:`dunno.data.user`) also takes
``val=F`` and ``test=F`` (the fractions carved from the training pool where the data gives
no such split; default 0.15 each) and ``split_seed=S`` (default 0), e.g.
``mine.npz:val=0.1:test=0.2``, and has the extra split ``all``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dunno.data import colour, images, noise, toy, transforms, uci, user
from dunno.data.base import ArrayDataset, DatasetInfo, RegressionDataset
from dunno.errors import DataError

__all__ = ["available_datasets", "dataset_status", "describe_split", "is_user_data",
           "load_dataset", "parse_spec"]

MAX_VALUES = 2**30  # a synthetic set holds at most this many float32 values (4 GiB)
MAX_SEED = 2**63 - 1
GENERIC_OPTIONS = ("classes", "n", "seed", "rotate", "invert", "blur", "noise")
SPLITS = ("train", "val", "test", "train-full")


@dataclass(frozen=True)
class _Entry:
    name: str
    description: str
    source: str  # "bundled" | "files" | "synthetic"
    loader: Callable[..., ArrayDataset]
    options: tuple[str, ...] = ()
    status: Callable[[Any], tuple[str, str]] | None = None


_REGISTRY: dict[str, _Entry] = {}


def _register(entry: _Entry) -> None:
    _REGISTRY[entry.name] = entry


def parse_spec(spec: str) -> tuple[str, dict[str, str | bool]]:
    """Split ``"mnist:rotate=90:invert"`` into ``("mnist", {"rotate": "90", "invert": True})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"A dataset name must be a non-empty string. Got {spec!r}.")
    base, *parts = spec.strip().split(":")
    options: dict[str, str | bool] = {}
    for part in parts:
        if not part:
            continue
        key, sep, value = part.partition("=")
        options[key.strip()] = value.strip() if sep else True
    return base, options


def _as_float(options, key) -> float:
    value = options[key]
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"Dataset option '{key}' needs a number. Got {value!r}.") from None
    if not math.isfinite(out):
        raise DataError(f"Dataset option '{key}' must be finite. Got {value!r}.")
    return out


def _as_int(options, key, minimum: int = 0, maximum: int | None = None) -> int:
    value = options[key]
    try:
        out = int(str(value))
    except ValueError:
        raise DataError(f"Dataset option '{key}' needs an integer. Got {value!r}.") from None
    if out < minimum:
        raise DataError(f"Dataset option '{key}' must be >= {minimum}. Got {out}.")
    if maximum is not None and out > maximum:
        raise DataError(f"Dataset option '{key}' must be <= {maximum}. Got {out}.")
    return out


def _seed(options, key: str = "seed") -> int:
    return _as_int(options, key, 0, MAX_SEED) if key in options else 0


def _check_size(n: int, shape: tuple[int, ...], name: str) -> None:
    """Refuse a synthetic set of more than :data:`MAX_VALUES` values (a memory bomb)."""
    values = n * math.prod(shape)
    if values > MAX_VALUES:
        raise DataError(
            f"Dataset option 'n={n}' of {name!r} asks for {n} examples of shape {shape}, "
            f"{values} values ({values * 4 / 2**30:.1f} GiB of float32); at most {MAX_VALUES} "
            "values are drawn at once. Lower n."
        )


def _parse_classes(value, num_classes: int, name: str) -> list[int]:
    text = str(value)
    try:
        if "-" in text and "+" not in text:
            lo, hi = (int(v) for v in text.split("-"))
            bad = [c for c in (lo, hi) if not 0 <= c < num_classes]  # before building the range
            classes = [] if bad or lo > hi else list(range(lo, hi + 1))
        else:
            classes = [int(v) for v in text.split("+")]
            bad = [c for c in classes if not 0 <= c < num_classes]
    except ValueError:
        raise DataError(
            f"Dataset option 'classes' must look like '0-4' or '1+3+5'. Got {text!r}."
        ) from None
    if bad:
        raise DataError(
            f"Option 'classes' names {bad}, outside 0..{num_classes - 1} of {name!r}."
        )
    if not classes:
        raise DataError(f"Dataset option 'classes={text}' selects no class.")
    return sorted(set(classes))


def _split_seed(split: str, seed: int) -> int:
    return seed + {"train": 0, "val": 1, "test": 2, "train-full": 3}.get(split, 0)


# --------------------------------------------------------------------------- base loaders
def _load_digits(split, root, opts, **_):
    return images.load_digits(split)


def _idx_loader(name: str, binary: bool):
    def load(split, root, opts, *, download=False, mirrors=None, verify=True, **_):
        return images.load_idx_set(
            name, split, root, binary=binary, verify=verify, download=download, mirrors=mirrors
        )

    return load


def _uci_loader(folder: str):
    def load(split, root, opts, *, verify=True, k=None, **_):
        if k is None:
            k = _as_int(opts, "k") if "k" in opts else 0
        if split not in ("train", "test"):
            raise DataError(f"UCI datasets have splits 'train' and 'test'. Got {split!r}.")
        return uci.load_uci(folder, split, root, k=k, verify=verify)

    return load


def _noise_loader(kind: str):
    def load(split, root, opts, *, like=None, **_):
        if "shape" in opts:
            try:
                shape = tuple(int(v) for v in str(opts["shape"]).split("x"))
            except ValueError:
                shape = ()
            if not 1 <= len(shape) <= 3 or min(shape) < 1:
                raise DataError(
                    "Dataset option 'shape' must look like 1x28x28 (1 to 3 sizes >= 1). Got "
                    f"{opts['shape']!r}."
                )
            value_range = (0.0, 1.0)
        elif like is not None:
            info = like.info if isinstance(like, ArrayDataset) else like
            shape, value_range = tuple(info.shape), info.value_range or (0.0, 1.0)
        else:
            raise DataError(
                f"'{kind}-noise' needs the shape to match: pass like=<in-distribution "
                "dataset> or the option shape=CxHxW (e.g. gaussian-noise:shape=1x28x28)."
            )
        default_n = len(like) if isinstance(like, ArrayDataset) else 10000
        n = _as_int(opts, "n", 1) if "n" in opts else default_n
        _check_size(n, shape, f"{kind}-noise")
        seed = _split_seed(split, _seed(opts))
        make = noise.gaussian_noise if kind == "gaussian" else noise.uniform_noise
        x = make(n, shape, value_range, seed=seed)
        info = DatasetInfo(
            name=f"{kind}-noise",
            kind="image" if len(shape) == 3 else "vector",
            shape=shape,
            value_range=tuple(value_range),
            description=f"synthetic {kind} noise matching the in-distribution shape and range",
        )
        return ArrayDataset(x, None, info)

    return load


def _toy_loader(name: str):
    def load(split, root, opts, **_):
        seed = _split_seed(split, _seed(opts))
        n = _as_int(opts, "n", 1) if "n" in opts else None
        if n is not None:
            _check_size(n, (2,), name)  # x and y of a 1-D set, or a 2-D x
        if name == "two-moons":
            x, y = toy.two_moons(n or 1000, _as_float(opts, "noise") if "noise" in opts else 0.1,
                                 seed=seed)
            info = DatasetInfo(name, "vector", (2,), 2, None, "two interleaving half circles")
            return ArrayDataset(x, y, info)
        if name == "ring-of-gaussians":
            x, y = toy.ring_of_gaussians(n or 1000, seed=seed)
            info = DatasetInfo(name, "vector", (2,), 8, None, "8 Gaussians on a ring, std 0.02")
            return ArrayDataset(x, y, info)
        if name == "cubic":
            if split == "test":
                x, y = toy.cubic(n or 200, low=-6.0, high=6.0, seed=seed)
            else:
                x, y = toy.cubic(n or 20, seed=seed)
            desc = "y = x^3 + N(0, 3^2); train x ~ U(-4, 4), test x ~ U(-6, 6)"
        else:
            x, y = toy.inverse_sine(n or 1000, seed=seed)
            desc = "Bishop's inverse problem: predict t from x = t + 0.3 sin(2 pi t) + noise"
        one, zero = torch.ones(1), torch.zeros(1)
        info = DatasetInfo(name, "regression", (1,), None, None, desc)
        return RegressionDataset(
            x, y, info, x_mean=zero, x_std=one, y_mean=zero.clone(), y_std=one.clone()
        )

    return load


_register(_Entry("digits", "scikit-learn's 8x8 digits (bundled; the zero-setup default)",
                 "bundled", _load_digits))
for _name, _spec in images.IDX_SETS.items():
    _register(_Entry(_name, _spec["description"], "files", _idx_loader(_name, False),
                     status=lambda root, n=_name: images.idx_set_status(n, root)))
    _register(_Entry(f"{_name}-binary", f"{_name}, binarised by a fixed seeded Bernoulli draw",
                     "files", _idx_loader(_name, True),
                     status=lambda root, n=_name: images.idx_set_status(n, root)))
for _name, _spec in colour.COLOUR_SETS.items():
    _register(_Entry(_name, _spec["description"], "files", colour.spec_loader(_name),
                     options=("labels",) if len(_spec["num_classes"]) > 1 else (),
                     status=lambda root, n=_name: colour.colour_set_status(n, root)))
for _folder in uci.UCI_SETS:
    _register(_Entry(f"uci/{_folder}", f"UCI regression: {_folder} (fixed splits, k=0..)",
                     "files", _uci_loader(_folder), options=("k",),
                     status=lambda root, f=_folder: uci.uci_status(f, root)))
for _kind in ("gaussian", "uniform"):
    _register(_Entry(f"{_kind}-noise", f"synthetic {_kind} noise (OOD set), shaped like the "
                     "in-distribution data", "synthetic", _noise_loader(_kind),
                     options=("shape", "n", "seed")))
_TOYS = {
    "two-moons": "two interleaving half circles (2-D, 2 classes)",
    "ring-of-gaussians": "8 Gaussians on a ring of radius 2, std 0.02 (2-D)",
    "cubic": "y = x^3 + N(0, 3^2); train x ~ U(-4, 4) (n=20), test x ~ U(-6, 6) (n=200)",
    "inverse-sine": "Bishop's inverse problem: predict t from x = t + 0.3 sin(2 pi t) + noise",
}
for _toy, _description in _TOYS.items():
    _register(_Entry(_toy, _description, "synthetic", _toy_loader(_toy),
                     options=("n", "seed", "noise")))


# --------------------------------------------------------------------------- public API
def available_datasets() -> list[dict[str, str]]:
    """Every registered dataset: ``name``, ``source`` and ``description``."""
    return [
        {"name": e.name, "source": e.source, "description": e.description}
        for e in _REGISTRY.values()
    ]


def dataset_status(root=None) -> list[dict[str, str]]:
    """Whether each dataset can be loaded here: ``verified``, ``missing``, ``corrupt``,
    ``bundled`` or ``synthetic``, with a detail line."""
    rows = []
    for entry in _REGISTRY.values():
        if entry.status is None:
            status, detail = entry.source, "always available"
        else:
            status, detail = entry.status(root)
        rows.append({"name": entry.name, "status": status, "detail": detail})
    return rows


def _resolve(base: str) -> str:
    if base in _REGISTRY:
        return base
    if base.startswith("uci/"):
        folder = uci.canonical(base[4:])
        return f"uci/{folder}"
    raise DataError(
        f"Unknown dataset {base!r}. Known datasets: {', '.join(_REGISTRY)}; or a path to a "
        "folder of images or an .npz/.npy file."
    )


def _apply_generic(ds: ArrayDataset, opts: dict, split: str) -> ArrayDataset:
    seed = _seed(opts)
    if "classes" in opts:
        if ds.y is None or ds.info.num_classes is None:
            raise DataError(f"Option 'classes' needs labelled data; {ds.info.name!r} has none.")
        classes = _parse_classes(opts["classes"], ds.info.num_classes, ds.info.name)
        keep = torch.isin(ds.y, torch.tensor(classes))
        remap = torch.full((ds.info.num_classes,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        x, y = ds.x[keep], remap[ds.y[keep]]
        extras = {**ds.info.extras, "original_classes": classes}
        if ds.info.extras.get("classes") is not None:  # names follow the re-numbering
            extras["classes"] = [ds.info.extras["classes"][c] for c in classes]
        info = DatasetInfo(
            ds.info.name, ds.info.kind, ds.info.shape, len(classes), ds.info.value_range,
            ds.info.description + f" (classes {classes})", extras,
        )
        ds = ArrayDataset(x, y, info)
    if "n" in opts:
        n = _as_int(opts, "n", 1)
        if n < len(ds):
            g = torch.Generator()
            g.manual_seed(_split_seed(split, seed))
            ds = ds.subset(torch.randperm(len(ds), generator=g)[:n].sort().values)
    shifts = [k for k in ("rotate", "blur", "invert", "noise") if k in opts]
    if shifts and ds.info.kind != "image":
        raise DataError(f"Options {shifts} apply to images; {ds.info.name!r} is {ds.info.kind}.")
    x = ds.x
    value_range = ds.info.value_range or (0.0, 1.0)
    if "rotate" in opts:
        x = transforms.rotate(x, _as_float(opts, "rotate"))
    if "blur" in opts:
        sigma, side = _as_float(opts, "blur"), max(ds.info.shape[-2:])
        if not 0 < sigma <= side:  # a wider kernel is flat, and its size unbounded
            raise DataError(
                f"Dataset option 'blur' must be in (0, {side}] pixels (the image side of "
                f"{ds.info.name!r}). Got {opts['blur']!r}."
            )
        x = transforms.gaussian_blur(x, sigma)
    if "invert" in opts:
        x = transforms.invert(x, value_range)
    if "noise" in opts:
        if _as_float(opts, "noise") < 0:
            raise DataError(f"Dataset option 'noise' (a standard deviation) must be >= 0. "
                            f"Got {opts['noise']!r}.")
        g = torch.Generator()
        g.manual_seed(_split_seed(split, seed) + 7919)
        x = transforms.pixel_noise(x, _as_float(opts, "noise"), generator=g,
                                   value_range=value_range)
    if x is not ds.x:
        ds = ArrayDataset(x.contiguous(), ds.y, ds.info)
    return ds


def is_user_data(spec: str) -> bool:
    """True when dataset spec ``spec`` names user data (a folder, ``.npz`` or ``.npy``
    path) rather than a registered dataset."""
    base = parse_spec(spec)[0]
    return base not in _REGISTRY and not base.startswith("uci/") \
        and user.looks_like_user_path(base)


def describe_split(spec: str, root=None) -> str | None:
    """One line with the split sizes and the split rule of user data ``spec`` (e.g.
    ``"mine.npz: train 1081, val 232, test 232 (seeded stratified split of all 1545
    examples: val=0.15, test=0.15, split_seed=0)"``); ``None`` for a registered dataset,
    whose splits are fixed and documented."""
    if not is_user_data(spec):
        return None
    base, opts = parse_spec(spec)
    sizes, rule = user.describe_user_split(base, **_user_options(opts))
    return f"{spec}: " + ", ".join(f"{s} {n}" for s, n in sizes.items()) + f" ({rule})"


def check_same_split(spec: str, trained_on: str | None, trained_rule: str | None, *,
                     flag: str = "--data", root=None) -> None:
    """Refuse user data ``spec`` whose splits differ from those of the run that trained the
    model (``trained_on`` and ``trained_rule``, recorded in its checkpoint).

    The same file split by other fractions or another seed (``mine.npz:val=0.3`` after
    training on ``mine.npz``), or a file whose contents changed, gives validation and test
    examples that may be training examples of the model: calibration fitted on them, or OOD
    detectors scored on them, would report numbers that do not hold. Registered datasets have
    fixed splits and pass; so does user data other than the training file, and a model with no
    recorded rule (a TorchScript file, a factory).
    """
    if not trained_on or not trained_rule or not is_user_data(spec) or not is_user_data(
            trained_on):
        return
    base_now, opts = parse_spec(spec)
    base_then, _ = parse_spec(trained_on)
    if Path(base_now).expanduser().resolve() != Path(base_then).expanduser().resolve():
        return
    _, rule = user.describe_user_split(base_now, **_user_options(opts))
    if rule != trained_rule:
        raise DataError(
            f"{flag} {spec!r} splits {base_now!r} differently from the run that trained the "
            f"model (trained on {trained_on!r}: {trained_rule}; now: {rule}), so its val/test "
            f"examples may be training examples of the model. Pass {trained_on!r}."
        )


def _user_options(opts: dict) -> dict:
    """The split options of user data (``val``, ``test``, ``split_seed``) as keywords."""
    return {
        "val": _as_float(opts, "val") if "val" in opts else None,
        "test": _as_float(opts, "test") if "test" in opts else None,
        "split_seed": _seed(opts, "split_seed") if "split_seed" in opts else None,
    }


def load_dataset(
    name: str,
    split: str = "train",
    root=None,
    *,
    download: bool = False,
    mirrors: list[str] | None = None,
    verify: bool = True,
    like: ArrayDataset | DatasetInfo | None = None,
    **options,
) -> ArrayDataset:
    """Load a dataset by spec (see the module docstring) as an in-memory dataset.

    Parameters
    ----------
    name : str
        A registered name with options (``"mnist:rotate=90"``) or a path to user data.
    split : {"train", "val", "test", "train-full"}
        Which part. UCI sets have ``train``/``test`` only (``k=`` picks the split index).
        User data also has ``all`` (every example), and its splits follow the rule of
        :mod:`dunno.data.user` (options ``val=``, ``test=``, ``split_seed=``).
    root : path-like, optional
        Data directory; default ``$DUNNO_DATA``, else ``~/.cache/dunno``.
    download : bool
        Fetch missing MNIST/Fashion-MNIST/CIFAR/SVHN files from the mirrors (``mirrors=``
        or the ``DUNNO_<NAME>_MIRRORS`` variables, e.g. ``DUNNO_CIFAR10_MIRRORS``).
    verify : bool
        Check every file's sha256 (default).
    like : ArrayDataset, optional
        For the noise sets: the in-distribution data whose shape, range and size to match.
    **options
        Spec options given as keywords (override those in ``name``), e.g. ``k=3``, or for
        user data ``val=0.1, test=0.2, split_seed=3``.

    Returns
    -------
    ArrayDataset
        ``x (N, ...)`` float32, ``y (N,)`` int64 labels or ``(N, 1)`` float targets, and
        ``info`` describing shape, classes and range.
    """
    base, opts = parse_spec(name)
    opts.update({k: v for k, v in options.items() if k != "k"})
    if is_user_data(base):
        allowed = (*GENERIC_OPTIONS, *user.USER_OPTIONS)
        unknown = sorted(set(opts) - set(allowed))
        if unknown:
            raise DataError(f"Unknown option(s) {unknown} for user data {base!r}; it accepts "
                            f"{sorted(allowed)}.")
        ds = user.load_user_data(base, split, **_user_options(opts))
    else:
        if split not in SPLITS:
            raise DataError(f"The 'split' argument must be one of {SPLITS}. Got {split!r}.")
        entry = _REGISTRY[_resolve(base)]
        allowed = set(GENERIC_OPTIONS) | set(entry.options)
        unknown = sorted(set(opts) - allowed)
        if unknown:
            raise DataError(
                f"Unknown option(s) {unknown} for dataset {entry.name!r}; it accepts "
                f"{sorted(allowed)}."
            )
        ds = entry.loader(split, root, opts, download=download, mirrors=mirrors,
                          verify=verify, like=like, k=options.get("k"))
        if entry.source == "synthetic" and "n" in opts:
            opts = {k: v for k, v in opts.items() if k != "n"}  # already drawn with n
    ds = _apply_generic(ds, opts, split)
    if len(ds) == 0:
        raise DataError(f"Dataset {name!r} (split {split!r}) is empty after its options.")
    ds.info = ds.info.with_name(name)
    return ds
