"""Heat maps of 2-D densities, with data points on top."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from dunno.validation import check_int, check_real, to_numpy

from ._figure import _check_path_early, _finish, _new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["density_heatmap"]


def density_heatmap(
    log_prob_fn: Callable,
    *,
    xlim: tuple[float, float] = (-4.0, 4.0),
    ylim: tuple[float, float] = (-4.0, 4.0),
    resolution: int = 200,
    samples=None,
    log_scale: bool = False,
    title: str = "Density",
    path=None,
) -> Figure:
    """Heat map of a 2-D density on a grid, optionally with data points on top.

    Args:
        log_prob_fn: callable mapping a float32 torch tensor of points ``(M, 2)`` to their
            log-densities ``(M,)`` (tensor or array), e.g. a density model's ``log_prob``. It
            is called under ``torch.no_grad()`` on the CPU, in chunks of at most 65536 points.
        xlim, ylim: the plotted square.
        resolution: grid points per axis (default 200).
        samples: optional ``(S, 2)`` points (e.g. training data or model samples) drawn on top.
        log_scale: colour the log-density instead of the density.
        title: figure title.
        path: optional ``.png`` / ``.svg`` / ``.pdf`` file to save to.
    """
    import torch

    _check_path_early(path)
    if not callable(log_prob_fn):
        raise TypeError("The 'log_prob_fn' argument must be callable: (M, 2) -> (M,).")
    resolution = check_int(resolution, "resolution", "density_heatmap", low=2)
    xs = np.linspace(float(xlim[0]), float(xlim[1]), resolution)
    ys = np.linspace(float(ylim[0]), float(ylim[1]), resolution)
    gx, gy = np.meshgrid(xs, ys)  # (R, R) each
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)  # (R*R, 2)
    chunks = []
    with torch.no_grad():
        for start in range(0, points.shape[0], 65536):
            chunk = torch.from_numpy(points[start:start + 65536])
            out = to_numpy(log_prob_fn(chunk), "log_prob_fn output")
            if out.shape != (chunk.shape[0],):
                raise ValueError(
                    f"The 'log_prob_fn' argument must return shape ({chunk.shape[0]},) for "
                    f"{chunk.shape[0]} points; got {out.shape}."
                )
            chunks.append(out.astype(np.float64))
    log_density = np.concatenate(chunks).reshape(resolution, resolution)  # (R, R)
    if np.isnan(log_density).any() or (log_density == np.inf).any():
        raise ValueError("The 'log_prob_fn' output must not be NaN or +inf.")
    values = log_density if log_scale else np.exp(log_density)
    if log_scale:
        finite = np.isfinite(values)
        floor = values[finite].min() if finite.any() else 0.0
        values = np.where(finite, values, floor)
    fig = _new_figure(5.5, 4.5)
    ax = fig.subplots()
    mesh = ax.pcolormesh(xs, ys, values, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="log density" if log_scale else "density")
    if samples is not None:
        pts = check_real(samples, "samples", ndim=2, what="a 2-D array of shape (S, 2)")
        if pts.shape[1] != 2:
            raise ValueError(f"The 'samples' argument must have shape (S, 2); got {pts.shape}.")
        ax.scatter(pts[:, 0], pts[:, 1], s=4, color="white", edgecolors="black",
                   linewidths=0.2, alpha=0.7, label="samples")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title)
    return _finish(fig, path)
