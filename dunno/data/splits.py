"""The split rule for user data: a seeded, stratified split that never shares an example.

User data (:mod:`dunno.data.user`) may come with its own splits (``train/``, ``val/``,
``test/`` folders; ``x_train``, ``x_val``, ``x_test`` arrays) or as one pool. Whatever is
missing is *carved* from the training pool (all the data when no split is given) by one
rule:

* the examples are grouped by content (a hash of their pixels/values): identical examples
  form one group and always land in the same split, so no split shares an example with
  another even when the data holds duplicates;
* per class (all groups as one class when there are no labels), the groups are shuffled by
  ``numpy.random.default_rng(split_seed)`` (classes in increasing label order) and the first
  ``round(val * n_c)`` go to ``val``, the next ``round(test * n_c)`` to ``test`` and the rest
  stay in ``train`` (rounded half up; at least one of every class in each split whose
  fraction is > 0, and at least one left in ``train``; a class too small for that is an error);
* ``val`` and ``test`` are fractions of the pool they are carved from (defaults
  :data:`DEFAULT_VAL` = :data:`DEFAULT_TEST` = 0.15, so one pool becomes 0.70 / 0.15 / 0.15);
  ``train-full`` is ``train`` + ``val``.

Given splits are checked the same way: an example (by content) in two given splits is an
error naming both.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np

from dunno.errors import DataError
from dunno.validation import check_float

__all__ = [
    "DEFAULT_SPLIT_SEED",
    "DEFAULT_TEST",
    "DEFAULT_VAL",
    "carve",
    "check_disjoint",
    "check_fraction",
    "content_hashes",
]

DEFAULT_VAL = 0.15
DEFAULT_TEST = 0.15
DEFAULT_SPLIT_SEED = 0


def check_fraction(value: float, name: str, source: str) -> float:
    """``value`` as a float in ``[0, 1)``, else a :class:`DataError` naming option ``name``
    and the data ``source`` (the message of :func:`dunno.validation.check_float`)."""
    try:
        return check_float(value, name, f"user data {source!r}", low=0.0, high=1.0,
                           high_open=True)
    except ValueError as err:
        raise DataError(str(err)) from None


def content_hashes(x: np.ndarray) -> list[bytes]:
    """One 16-byte BLAKE2b digest per example of ``x (N, ...)`` (of its float32 values)."""
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def _groups(hashes: list[bytes]) -> np.ndarray:
    """``(N,)`` the index of the first example with the same content, per example."""
    first: dict[bytes, int] = {}
    return np.array([first.setdefault(h, i) for i, h in enumerate(hashes)], dtype=np.int64)


def _count(fraction: float, n: int) -> int:
    if fraction <= 0:
        return 0
    return max(1, math.floor(fraction * n + 0.5))


def carve(
    hashes: list[bytes],
    labels: np.ndarray | None,
    fractions: dict[str, float],
    seed: int,
    *,
    source: str,
    class_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Split a pool of ``N`` examples by the rule of the module docstring.

    Parameters
    ----------
    hashes : list of bytes
        :func:`content_hashes` of the pool (length ``N``).
    labels : ndarray of int, optional
        ``(N,)`` class labels to stratify by; ``None`` for unlabelled data.
    fractions : dict
        The carved splits in order, e.g. ``{"val": 0.15, "test": 0.15}`` (fractions of the
        pool); the rest is ``"train"``.
    seed : int
        The split seed.
    source : str
        Names the data in error messages.
    class_names : list of str, optional
        Names of the classes, for error messages.

    Returns
    -------
    dict
        ``{"train": idx, **{name: idx}}``: sorted int64 indices into the pool, disjoint,
        covering it.
    """
    groups = _groups(hashes)
    reps = np.unique(groups)  # (G,) the first example of each group
    rng = np.random.default_rng(seed)
    names = list(fractions)
    chosen: dict[str, list[np.ndarray]] = {name: [] for name in ["train", *names]}
    group_labels = np.zeros(len(reps), dtype=np.int64) if labels is None else labels[reps]
    needed = 1 + sum(1 for f in fractions.values() if f > 0)
    for c in np.unique(group_labels):
        members = rng.permutation(reps[group_labels == c])
        n_c = len(members)
        counts = [_count(fractions[name], n_c) for name in names]
        if n_c - sum(counts) < 1:
            what = "The data" if labels is None else (
                f"Class {class_names[c]!r}" if class_names else f"Class {int(c)}"
            )
            plan = ", ".join(f"{name}={fractions[name]:g}" for name in names)
            raise DataError(
                f"{what} of {source!r} has {n_c} "
                f"distinct example(s); the seeded split into train and {'/'.join(names)} "
                f"({plan}) needs at least {needed} of {'it' if labels is None else 'every class'}"
                " (one per split). Add examples, lower the fractions (val=0, test=0), or give "
                "the splits yourself (train/, val/, test/ folders or x_train/x_val/x_test "
                "arrays)."
            )
        start = 0
        for name, k in zip(names, counts, strict=True):
            chosen[name].append(members[start:start + k])
            start += k
        chosen["train"].append(members[start:])
    out = {}
    for name, parts in chosen.items():
        picked = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        out[name] = np.flatnonzero(np.isin(groups, picked))  # every copy of each group
    return out


def check_disjoint(
    hashes: dict[str, list[bytes]], describe: Callable[[str, int], str], source: str
) -> None:
    """Refuse given splits that share an example (identical content in two splits).

    ``hashes`` maps a split name to its :func:`content_hashes`; ``describe(split, i)`` names
    example ``i`` of a split (a file path or an array row) for the message.
    """
    seen: dict[bytes, tuple[str, int]] = {}
    for split, digests in hashes.items():
        own: dict[bytes, int] = {}
        for i, digest in enumerate(digests):
            own.setdefault(digest, i)
        for digest, i in own.items():
            if digest in seen:
                other, j = seen[digest]
                shared = len(set(own) & {d for d, (s, _) in seen.items() if s == other})
                raise DataError(
                    f"The splits of {source!r} share examples: {describe(split, i)} is "
                    f"identical to {describe(other, j)} ({shared} identical example(s) in "
                    f"'{other}' and '{split}'). An example in two splits inflates the held-out "
                    "numbers; remove the copies from one split."
                )
        for digest, i in own.items():
            seen[digest] = (split, i)
