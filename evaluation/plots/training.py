"""Training curves: per-epoch losses and metrics of a run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._figure import _check_path_early, _finish, _new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_training_history"]


#: bookkeeping, not metrics (and the learning rates ``lr``, ``lr_<name>``)
_NOT_DRAWN = ("epoch", "seconds", "train_seconds", "examples", "lr", "member")


def plot_training_history(history, *, title: str = "Training", path=None) -> Figure:
    """Per-epoch curves of a training run: losses on the left axes, other metrics (accuracy,
    ...) on the right one; the best epoch is marked when known.

    Args:
        history: a ``dunno.training.History`` (anything with an ``epochs`` list) or a sequence
            of per-epoch dicts mapping metric names to floats; ``epoch`` (1-based, else the
            position) gives the x axis; ``seconds`` and the running totals
            ``train_seconds`` and ``examples`` and the learning rates ``lr`` / ``lr_<name>``
            are not drawn. Keys ending in ``loss`` go
            to the loss axes.
        title: figure title.
        path: optional ``.png`` / ``.svg`` / ``.pdf`` file to save to.

    Returns:
        The figure (two axes: losses, other metrics).
    """
    _check_path_early(path)
    epochs = getattr(history, "epochs", history)
    if isinstance(epochs, Mapping) or not isinstance(epochs, Sequence) or len(epochs) == 0:
        raise ValueError(
            "The 'history' argument must be a History or a non-empty sequence of per-epoch "
            f"dicts; got {type(history).__name__}."
        )
    if not all(isinstance(e, Mapping) for e in epochs):
        raise ValueError("The 'history' argument must hold one dict of metrics per epoch.")
    x = [float(e.get("epoch", i + 1)) for i, e in enumerate(epochs)]
    keys: list[str] = []
    for e in epochs:
        keys.extend(k for k in e if k not in _NOT_DRAWN and not k.startswith("lr_")
                    and k not in keys)
    fig = _new_figure(10.0, 4.0)
    ax_loss, ax_other = fig.subplots(1, 2)
    for key in keys:
        pts = [(xi, float(e[key])) for xi, e in zip(x, epochs, strict=True) if key in e]
        ax = ax_loss if key.endswith("loss") else ax_other
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                label=f"{key} (last {pts[-1][1]:.4g})")
    best = getattr(history, "best_epoch", None)
    for ax, what in ((ax_loss, "Loss"), (ax_other, "Metric")):
        if best is not None:
            ax.axvline(float(best), color="gray", linestyle=":", label=f"best epoch {best}")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(what)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="small")
    ax_loss.set_title("Losses")
    ax_other.set_title("Other metrics")
    fig.suptitle(title)
    return _finish(fig, path)
