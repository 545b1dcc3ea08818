"""Figures of the generative recipes: learning curves, sample grids, 2-D sample scatter
plots, GAN losses and InfoGAN code sweeps.

As in :mod:`evaluation.plots`, every function returns a :class:`matplotlib.figure.Figure`
built directly (no ``pyplot``) and saves it when given ``path=`` (``.png``, ``.svg`` or
``.pdf``, through :func:`evaluation.plots.save_figure`); matplotlib is imported inside the
functions only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from evaluation.plots import image_grid, save_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "EpochSamplePlots",
    "gan_loss_plot",
    "infogan_code_grid",
    "learning_curve_plot",
    "sample_grid",
    "sample_plot",
]


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path, dpi: int = 120) -> Figure:
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


def learning_curve_plot(records: Sequence[Mapping[str, float]], *, title: str = "",
                        path=None) -> Figure:
    """Training and validation NLL (nats per image) of a density model against training
    minutes (``minutes`` of each epoch record, else the epoch), the best validation NLL
    marked."""
    fig = _figure(5.5, 3.8)
    ax = fig.subplots()
    minutes = [r.get("minutes", r["epoch"]) for r in records]
    ax.plot(minutes, [r["loss"] for r in records], "o-", label="train NLL (epoch mean)")
    if any("val_loss" in r for r in records):
        ax.plot(minutes, [r.get("val_loss", float("nan")) for r in records], "s-",
                label="validation NLL")
        best = min(r["val_loss"] for r in records if "val_loss" in r)
        ax.axhline(best, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{title}  (best val {best:.2f} nats)" if title else f"best {best:.2f}")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("NLL (nats / image)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def sample_grid(samples: torch.Tensor, *, pixels: str = "binary", title: str | None = None,
                ncols: int | None = None, path=None) -> Figure:
    """A square-ish grid of image samples ``(N, C, H, W)``: values 0..255 for
    ``pixels="8bit"``, else in [0, 1]."""
    value_range = (0.0, 255.0) if pixels == "8bit" else (0.0, 1.0)
    n = len(samples)
    return image_grid(samples, ncols=ncols or max(1, math.ceil(math.sqrt(n))),
                      value_range=value_range, title=title, path=path)


def sample_plot(samples: torch.Tensor, *, title: str = "", data: torch.Tensor | None = None,
                path=None) -> Figure:
    """Samples of a GAN: a grid for images ``(N, C, H, W)`` in [0, 1], a scatter plot (over
    ``data`` in grey when given) for 2-D points ``(N, 2)``."""
    samples = samples.detach().cpu()
    if samples.dim() == 4:
        return image_grid(samples, ncols=max(1, math.ceil(math.sqrt(len(samples)))),
                          value_range=(0.0, 1.0), title=title or None, path=path)
    if samples.dim() != 2 or samples.shape[1] != 2:
        raise ValueError(f"sample_plot draws images (N, C, H, W) or 2-D points (N, 2); got "
                         f"shape {tuple(samples.shape)}.")
    fig = _figure(4.2, 4.2)
    ax = fig.subplots()
    if data is not None:
        ax.scatter(data[:, 0], data[:, 1], s=2, c="0.75", label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c="C3", alpha=0.6, label="samples")
    ax.set_aspect("equal")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.legend(fontsize="small", loc="upper right")
    if title:
        ax.set_title(title, fontsize="small")
    return _save(fig, path, dpi=110)


def infogan_code_grid(model, *, code: int = 0, steps: int = 10, low: float = -2.0,
                      high: float = 2.0, seed: int = 0, path=None) -> Figure:
    """Vary one continuous code of an :class:`~generative.adversarial.InfoGAN`: rows are the
    categorical values, columns sweep continuous code ``code`` from ``low`` to ``high`` (the
    other codes 0), one fixed noise vector (from the model's noise distribution) for the
    whole grid (Chen et al. 2016, Figure 2)."""
    from generative.adversarial import InfoGAN

    if not isinstance(model, InfoGAN):
        raise TypeError(f"infogan_code_grid needs an InfoGAN; got {type(model).__name__}.")
    if not 0 <= code < model.continuous:
        raise ValueError(f"The 'code' parameter of infogan_code_grid must be in "
                         f"[0, {model.continuous}). Got {code!r} instead.")
    k = model.categorical
    noise = model.draw_noise(1, torch.Generator().manual_seed(seed))
    cat = torch.arange(k).repeat_interleave(steps)  # (k * steps,) row-major
    cont = torch.zeros(k * steps, model.continuous)
    cont[:, code] = torch.linspace(low, high, steps).repeat(k)
    images = model.sample_codes(cat, cont, noise=noise.expand(k * steps, -1)).cpu()
    return image_grid(images, ncols=steps, value_range=(0.0, 1.0), path=path,
                      title=f"rows: categorical code; columns: c{code + 1} from {low:g} to "
                      f"{high:g}")


def gan_loss_plot(records: Sequence[Mapping[str, float]], *, title: str = "",
                  path=None) -> Figure:
    """Epoch means of the discriminator, generator (and InfoGAN Q) losses against epoch."""
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    epochs = [r["epoch"] for r in records]
    for key in ("d_loss", "g_loss", "q_loss"):
        if all(key in r for r in records):
            ax.plot(epochs, [r[key] for r in records], "o-", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats, epoch mean)")
    ax.set_title(title, fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path, dpi=110)


class EpochSamplePlots:
    """An ``on_epoch_end(model, epoch, record)`` for :func:`~generative.train_gan` that
    draws, after every epoch, the samples of one fixed latent batch
    (:func:`~generative.adversarial.training.fixed_latents` with seed ``seed + 1``: ``grid``
    images, or 1000 points over ``data_points`` for 2-D sets) to ``folder/epoch_NNN.png``
    with :func:`sample_plot` and, for an InfoGAN, one :func:`infogan_code_grid` per
    continuous code to ``folder/epoch_NNN_cK.png``. ``grid=0`` draws nothing."""

    def __init__(self, folder, grid: int = 64, seed: int = 0, title: str = "",
                 data_points: torch.Tensor | None = None):
        self.folder, self.grid, self.seed = Path(folder), grid, seed
        self.title, self.data_points = title, data_points
        self.latents: torch.Tensor | None = None

    def fixed_samples(self, model) -> torch.Tensor:
        """``model.decode`` of the fixed latent batch (drawn on the first call)."""
        from generative.adversarial.training import fixed_latents

        if self.latents is None:
            n = 1000 if model.data_shape == (2,) else (self.grid or 1)
            self.latents = fixed_latents(model, n, self.seed + 1)
        return model.decode(self.latents)

    def __call__(self, model, epoch: int, record: Mapping[str, float]) -> None:
        from generative.adversarial import InfoGAN

        if not self.grid:
            return
        sample_plot(self.fixed_samples(model), title=f"{self.title}, epoch {epoch}",
                    data=self.data_points, path=self.folder / f"epoch_{epoch:03d}.png")
        if isinstance(model, InfoGAN):
            for code in range(model.continuous):
                infogan_code_grid(model, code=code, seed=self.seed,
                                  path=self.folder / f"epoch_{epoch:03d}_c{code + 1}.png")
