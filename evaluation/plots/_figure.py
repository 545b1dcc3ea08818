"""What every figure of :mod:`evaluation.plots` shares: a new constrained-layout figure (built
directly, no ``pyplot``), the ``path=`` check and the save (:func:`save_figure`, the one place
figures are written, also used by :mod:`generative.plots`). matplotlib is imported inside the
functions only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["FIGURE_SUFFIXES", "check_figure_path", "save_figure"]

#: The file types a figure is saved as, chosen by the path's suffix (case-insensitive).
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def check_figure_path(path, name: str = "path") -> Path | None:
    """``path`` as a :class:`~pathlib.Path` (``None`` stays ``None``) when it ends in one of
    :data:`FIGURE_SUFFIXES`; else a ValueError naming the argument, the suffixes and the path.
    Plot functions call it before any drawing, so a bad path fails fast."""
    if path is None:
        return None
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"The {name!r} argument must be a file path ending in "
                         f"{_suffix_list()}; got {type(path).__name__}.")
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"The {name!r} argument must end in {_suffix_list()}; got "
                         f"{str(path)!r}.")
    return path


def _suffix_list() -> str:
    return ", ".join(FIGURE_SUFFIXES[:-1]) + " or " + FIGURE_SUFFIXES[-1]


def save_figure(fig: Figure, path, *, dpi: int = 120) -> Path:
    """Save ``fig`` to ``path`` as PNG, SVG or PDF (by the suffix, :data:`FIGURE_SUFFIXES`),
    atomically: the figure is rendered in memory and then renamed into place, so a reader
    never sees half a file. Returns the path; an unknown suffix raises ValueError first."""
    import io

    from dunno.checkpoints import atomic_write_bytes

    path = check_figure_path(path)
    if path is None:
        raise ValueError("The 'path' argument of save_figure must be a file path; got None.")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lower()[1:], dpi=dpi)
    return atomic_write_bytes(buffer.getvalue(), path)


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _check_path_early(path) -> None:
    check_figure_path(path)


def _named_pairs(detectors: Mapping, what: str) -> list[tuple[str, object, object]]:
    if not isinstance(detectors, Mapping) or len(detectors) == 0:
        raise ValueError(
            f"The 'detectors' argument must be a non-empty mapping name -> ({what}); "
            f"got {type(detectors).__name__}."
        )
    out = []
    for name, pair in detectors.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(
                f"The 'detectors' argument must map each name to a pair ({what}); "
                f"{name!r} maps to {type(pair).__name__}."
            )
        out.append((str(name), pair[0], pair[1]))
    return out
