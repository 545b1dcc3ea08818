"""What every figure of :mod:`evaluation.plots` shares: a new constrained-layout figure (built
directly, no ``pyplot``), the ``path=`` check and the save. matplotlib is imported inside the
functions only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__: list[str] = []

_SUFFIXES = (".png", ".svg")


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        path = Path(path)
        if path.suffix.lower() not in _SUFFIXES:
            raise ValueError(
                f"The 'path' argument must end in .png or .svg; got {str(path)!r}."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=path.suffix.lower()[1:], dpi=120)
    return fig


def _check_path_early(path) -> None:
    if path is not None and Path(path).suffix.lower() not in _SUFFIXES:
        raise ValueError(f"The 'path' argument must end in .png or .svg; got {str(path)!r}.")


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
