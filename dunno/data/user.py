"""User data: a folder of images or ``.npz`` / ``.npy`` arrays, split so that no split
shares an example with another.

Forms
-----
* **Split folders**: a folder with ``train/`` and optionally ``val/`` and ``test/``. The
  classes are the sub-folders of ``train/`` (sorted names give labels 0, 1, ...); ``val/``
  and ``test/`` are mapped to them by folder *name* (a class unknown to ``train/`` is an
  error). ``train/`` without class folders holds unlabelled images.
* **A folder of class folders** (each sub-folder is a class, images at any depth below it)
  or **a folder of unlabelled images**: one pool.
* **``.npz``** with ``x`` (and optionally ``y``): one pool; or with per-split arrays
  ``x_train, y_train, x_val, y_val, x_test, y_test`` (any of them, labelled all or none).
  An optional string array ``classes`` names the classes. **``.npy``**: ``x`` only.

Images must all have one size; they become ``(N, 1, H, W)`` when every image is greyscale,
else ``(N, 3, H, W)``, in [0, 1] (8-bit files scaled by 1/255, 16-bit greyscale by 1/65535,
32-bit float greyscale used as stored and refused outside [0, 1], 32-bit integer files
refused). Arrays ``(N, H, W)`` get a channel axis; ``uint8`` arrays are scaled by 1/255 (and
refused when they hold only 0 and 1: binary images go as bool or float); a 4-D array that
looks channels-last (``(N, H, W, C)`` with ``C`` in 1, 3, 4 and ``H > 4``) is refused, not
guessed; other arrays are used as stored. Labels are integers ``0..K-1`` (``K`` at most
``max(1000, N)`` and 100 000, or the length of ``classes``). Hidden and system entries (dot-names,
``__MACOSX``, ``Thumbs.db``, ``desktop.ini``, ``.ipynb_checkpoints``) are ignored.

The split rule
--------------
Splits the data gives itself are used as they are (and must not share an example). A
missing ``val`` / ``test`` is carved from the training pool -- ``train/`` or ``x_train``,
or all the data when it gives no split -- by :mod:`dunno.data.splits`: a seeded split,
stratified by label, in which ``val`` takes the fraction ``val`` (default 0.15) and
``test`` the fraction ``test`` (default 0.15) of the pool, and identical examples stay
together. ``train-full`` is ``train`` + ``val``; ``all`` is every example (e.g. for an OOD
set). The fractions and the seed are the spec options ``val=``, ``test=`` and
``split_seed=`` (``mine.npz:val=0.1:test=0.2:split_seed=3``, or the same names as keywords
of :func:`dunno.data.load_dataset`); an option for a split the data gives itself is an
error. The sizes of every split, the rule and the class names are recorded in
``info.extras`` (``split_sizes``, ``split_rule``, ``classes``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dunno.data.base import ArrayDataset, DatasetInfo
from dunno.data.splits import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST,
    DEFAULT_VAL,
    carve,
    check_disjoint,
    check_fraction,
)
from dunno.data.user_files import SPLIT_NAMES, UserSource, read_user_source
from dunno.errors import DataError

__all__ = ["USER_OPTIONS", "USER_SPLITS", "describe_user_split", "load_user_data",
           "looks_like_user_path", "user_split_plan"]

USER_OPTIONS = ("val", "test", "split_seed")
USER_SPLITS = ("train", "val", "test", "train-full", "all")


def looks_like_user_path(name: str) -> bool:
    """True when a dataset spec names a path rather than a registered dataset."""
    return (
        name.endswith((".npz", ".npy"))
        or name.startswith((".", "/", "~"))
        or Path(name).expanduser().exists()
    )


def _check_path(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"User data path {str(p)!r} does not exist.")
    if p.is_file() and p.suffix.lower() not in (".npz", ".npy"):
        raise DataError(
            f"User data {str(p)!r} must be a folder of images, an .npz or an .npy file; got a "
            f"{p.suffix or 'suffix-less'} file."
        )
    return p


def user_split_plan(source: UserSource, where: str, *, val: float | None = None,
                    test: float | None = None, split_seed: int | None = None) -> dict:
    """How ``source`` is split: ``{"pieces": {split: [(part, index), ...]}, "rule": str,
    "sizes": {split: n}, "seed": int | None, "fractions": dict}`` for train/val/test (a split
    with no pieces is unavailable). See the module docstring for the rule."""
    given = [s for s in SPLIT_NAMES if s in source.parts]
    pool = "pool" if "pool" in source.parts else ("train" if "train" in source.parts else None)
    for name, value in (("val", val), ("test", test)):
        if value is not None:
            check_fraction(value, name, where)
            if name in given:
                raise DataError(
                    f"The split option '{name}={value}' carves a {name} split from {where!r}, "
                    f"but it has its own ({name}/ or x_{name}); drop the option."
                )
            if pool is None:
                raise DataError(
                    f"The split option '{name}={value}' carves a {name} split from the "
                    f"training pool, but {where!r} has none (no train/ or x_train)."
                )
    fractions = {"val": DEFAULT_VAL if val is None else float(val),
                 "test": DEFAULT_TEST if test is None else float(test)}
    missing = [s for s in ("val", "test") if s not in given]
    if split_seed is not None and (pool is None or not missing):
        raise DataError(
            f"The split option 'split_seed={split_seed}' has no effect on {where!r}: it gives "
            f"its splits {given} itself and nothing is carved; drop the option."
        )
    pieces: dict[str, list[tuple[str, np.ndarray]]] = {s: [] for s in SPLIT_NAMES}
    for s in given:
        pieces[s] = [(s, np.arange(len(source.parts[s].x)))]
    if len(given) > 1:
        check_disjoint({s: source.parts[s].hashes for s in given},
                       lambda s, i: source.parts[s].describe(i), where)
    seed, carved = None, {}
    if pool is not None and missing:
        seed = DEFAULT_SPLIT_SEED if split_seed is None else split_seed
        carved = {s: fractions[s] for s in missing}
        if sum(carved.values()) >= 1:
            raise DataError(
                f"The split options of {where!r} leave nothing for train: "
                + " + ".join(f"{s}={f:g}" for s, f in carved.items())
                + f" = {sum(carved.values()):g}, but they must sum to < 1."
            )
        part = source.parts[pool]
        index = carve(part.hashes, part.y, carved, seed, source=where,
                      class_names=source.classes)
        pieces["train"] = [(pool, index["train"])]
        for s in missing:
            pieces[s] = [(pool, index[s])]
    how = "stratified" if source.num_classes is not None else "random (unlabelled)"
    if pool == "pool":
        rule = (f"seeded {how} split of all {len(source.parts[pool].x)} examples: "
                f"val={fractions['val']:g}, test={fractions['test']:g}, split_seed={seed}")
    elif carved:
        rule = (f"given {'/'.join(given)}; {' and '.join(carved)} carved from train by a "
                f"seeded {how} split: " + ", ".join(f"{s}={f:g}" for s, f in carved.items())
                + f", split_seed={seed}")
    else:
        rule = f"given {'/'.join(given)}"
    sizes = {s: sum(len(i) for _, i in pieces[s]) for s in SPLIT_NAMES if pieces[s]}
    return {"pieces": pieces, "rule": rule, "sizes": sizes, "seed": seed, "fractions": carved}


def _pieces_of(plan: dict, split: str) -> list[tuple[str, np.ndarray]]:
    if split == "train-full":
        return plan["pieces"]["train"] + plan["pieces"]["val"]
    return plan["pieces"][split]


def describe_user_split(path: str, *, val: float | None = None, test: float | None = None,
                        split_seed: int | None = None) -> tuple[dict[str, int], str]:
    """``(sizes, rule)``: the size of each split of the user data at ``path`` and the rule
    that made them (see :func:`load_user_data` for the arguments)."""
    plan = user_split_plan(read_user_source(_check_path(path)), str(path), val=val, test=test,
                           split_seed=split_seed)
    return plan["sizes"], plan["rule"]


def load_user_data(path: str, split: str = "test", *, val: float | None = None,
                   test: float | None = None, split_seed: int | None = None) -> ArrayDataset:
    """Load split ``split`` of a folder of images or an ``.npz``/``.npy`` file.

    Parameters
    ----------
    path : str
        The folder or file (see the module docstring for the forms).
    split : {"train", "val", "test", "train-full", "all"}
        Which part; ``all`` is every example.
    val, test : float in [0, 1), optional
        Fractions of the training pool carved into ``val`` / ``test`` where the data does
        not give those splits itself (default 0.15 each).
    split_seed : int, optional
        Seed of the carved split (default 0).

    Returns
    -------
    ArrayDataset
        ``x (n, ...)`` float32, ``y (n,)`` int64 or ``None``; ``info.extras`` holds
        ``split_sizes`` (``{"train": ..., "val": ..., "test": ...}``), ``split_rule``,
        ``split_seed``, ``layout`` and, where known, ``classes`` (the class names).
    """
    if split not in USER_SPLITS:
        raise DataError(f"The 'split' argument must be one of {USER_SPLITS}. Got {split!r}.")
    p = _check_path(path)
    source = read_user_source(p)
    if split == "all":  # every example; nothing to split, so nothing to check
        pieces = [(part, np.arange(len(source.parts[part].x))) for part in source.parts]
        plan = {"rule": "all examples", "seed": None, "fractions": {},
                "sizes": {"all": sum(len(i) for _, i in pieces)}}
    else:
        plan = user_split_plan(source, str(path), val=val, test=test, split_seed=split_seed)
        pieces = _pieces_of(plan, split)
    if not pieces:
        raise DataError(
            f"{str(path)!r} has no {split!r} split: it gives {sorted(plan['sizes'])} and no "
            "training pool (train/ or x_train) to carve the others from."
        )
    n = sum(len(i) for _, i in pieces)
    if n == 0:
        raise DataError(
            f"The {split!r} split of {str(path)!r} is empty ({plan['rule']}); raise the "
            f"option {split}= above 0 or give the split yourself."
        )
    x = np.concatenate([source.parts[part].x[index] for part, index in pieces])
    y = None
    if source.num_classes is not None:
        y = torch.from_numpy(np.concatenate([source.parts[part].y[index]
                                             for part, index in pieces]))
    kind = "image" if x.ndim == 4 else ("sequence" if x.ndim == 3 else "vector")
    extras = {"layout": source.layout, "split_sizes": dict(plan["sizes"]),
              "split_rule": plan["rule"], "split_seed": plan["seed"]}
    if plan["fractions"]:
        extras["split_fractions"] = dict(plan["fractions"])
    if source.classes is not None:
        extras["classes"] = list(source.classes)
    labels = "" if source.num_classes is not None else "unlabelled "
    info = DatasetInfo(
        name=str(path),
        kind=kind,
        shape=tuple(x.shape[1:]),
        num_classes=source.num_classes,
        value_range=source.value_range,
        description=f"{labels}user data from {p} ({source.layout}); split {split!r} of: "
                    f"{plan['rule']}",
        extras=extras,
    )
    return ArrayDataset(torch.from_numpy(x).contiguous(), y, info)
