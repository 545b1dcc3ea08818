"""Image grids (e.g. samples of a generative model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dunno.validation import check_int, check_real

from ._figure import _check_path_early, _finish, _new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["image_grid"]


def image_grid(
    images,
    *,
    ncols: int = 8,
    value_range: tuple[float, float] = (0.0, 1.0),
    title: str | None = None,
    path=None,
) -> Figure:
    """A grid of images (e.g. samples of a generative model) on a single axes.

    Args:
        images: ``(N, H, W)``, ``(N, 1, H, W)`` or ``(N, 3, H, W)`` array / tensor.
        ncols: images per row (default 8).
        value_range: the values shown as black and white; pixels are mapped linearly from this
            range to [0, 1] and clipped (default (0, 1); use (-1, 1) for tanh outputs).
        title: optional title.
        path: optional ``.png`` / ``.svg`` / ``.pdf`` file to save to.
    """
    _check_path_early(path)
    ncols = check_int(ncols, "ncols", "image_grid", low=1)
    arr = check_real(images, "images", ndim=(3, 4),
                        what="an array of shape (N, H, W) or (N, C, H, W) with C in {1, 3}")
    if arr.ndim == 4:
        if arr.shape[1] not in (1, 3):
            raise ValueError(
                f"The 'images' argument must have 1 or 3 channels; got shape {arr.shape}."
            )
        arr = np.transpose(arr, (0, 2, 3, 1))  # (N, H, W, C)
    else:
        arr = arr[..., None]  # (N, H, W, 1)
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(
            f"The 'value_range' parameter of image_grid must be (low, high) with high > low. "
            f"Got {value_range!r} instead."
        )
    arr = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    n, h, w, c = arr.shape
    cols = min(ncols, n)
    rows = -(-n // cols)
    pad = 1
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c))  # (H', W', C)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top:top + h, left:left + w] = arr[i]
    fig = _new_figure(min(1.0 * cols, 12.0), min(1.0 * rows, 12.0) + (0.4 if title else 0.0))
    ax = fig.subplots()
    if c == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _finish(fig, path)
