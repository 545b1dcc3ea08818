r"""Latent traversals: decode a code while one coordinate sweeps a range.

For a start code :math:`z_0` (the posterior mean / code of an image, or the origin), code
dimension :math:`l` and offsets :math:`t_1 < \dots < t_S` evenly spaced in
:math:`[-s, s]`, row :math:`l` of the grid holds the decoder means

.. math::

    \mathbb{E}[x \mid z_0 + t_j e_l], \qquad j = 1, \dots, S,

which shows what each latent coordinate encodes (Kingma & Welling 2014, figure 4, show the
2-D manifold; Higgins et al. 2017 popularised one-dimension-at-a-time traversals).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from dunno.validation import check_float, check_int
from evaluation.plots import check_figure_path, save_figure

__all__ = ["latent_traversal", "plot_traversal"]


@torch.no_grad()
def latent_traversal(
    model,
    x: torch.Tensor | None = None,
    *,
    dims: Sequence[int] | None = None,
    steps: int = 9,
    span: float = 3.0,
) -> torch.Tensor:
    """Decoded traversals of a latent-variable model (:class:`~generative.latent.VAE` or
    :class:`~generative.latent.AdversarialAutoencoder`).

    Args:
        model: has ``latent_dim``, ``encode(x)`` (``(loc, scale)`` or codes) and
            ``decode_mean(z (N, L)) -> (N, C, H, W)``.
        x: one image ``(1, C, H, W)`` whose code (posterior mean) is the start :math:`z_0`;
            ``None`` starts at the origin.
        dims: code dimensions to sweep (default: the first ``min(L, 10)``).
        steps: :math:`S`, values per dimension.
        span: :math:`s`, the sweep covers :math:`[-s, s]` around :math:`z_0`.

    Returns:
        ``(len(dims) * steps, C, H, W)`` decoder means on the CPU, one row of ``steps``
        images per dimension (row-major, for an image grid with ``ncols=steps``).
    """
    L = model.latent_dim
    steps = check_int(steps, "steps", "latent_traversal", low=1)
    span = check_float(span, "span", "latent_traversal", low=0.0, low_open=True)
    if dims is None:
        dims = list(range(min(L, 10)))
    dims = [int(d) for d in dims]
    if not dims or any(d < 0 or d >= L for d in dims):
        raise ValueError(f"The 'dims' argument of latent_traversal must be a non-empty list of "
                         f"code dimensions in 0..{L - 1}. Got {dims!r} instead.")
    p = next(model.parameters())
    if x is None:
        z0 = torch.zeros(L, dtype=p.dtype, device=p.device)  # (L,)
    else:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"The 'x' argument of latent_traversal must be one image of "
                             f"shape (1, C, H, W). Got {got} instead.")
        code = model.encode(x.to(p.device))
        z0 = (code[0] if isinstance(code, tuple) else code)[0]  # (L,)
    offsets = torch.linspace(-span, span, steps, dtype=p.dtype, device=p.device)  # (S,)
    z = z0.repeat(len(dims), steps, 1)  # (len(dims), S, L)
    for row, d in enumerate(dims):
        z[row, :, d] = z0[d] + offsets
    was_training = model.training
    model.eval()
    images = model.decode_mean(z.view(-1, L))  # (len(dims) * S, C, H, W)
    model.train(was_training)
    return images.cpu()


def plot_traversal(grid: torch.Tensor, steps: int, path: str | Path | None = None, *,
                   title: str | None = None):
    """Draw a traversal grid (from :func:`latent_traversal`) with one row per code
    dimension and ``steps`` columns; saves it when ``path`` (``.png``, ``.svg`` or ``.pdf``)
    is given. Returns the matplotlib ``Figure`` (matplotlib is imported here, lazily)."""
    from matplotlib.figure import Figure

    check_figure_path(path)
    steps = check_int(steps, "steps", "plot_traversal", low=1)
    if not isinstance(grid, torch.Tensor) or grid.dim() != 4 or grid.shape[0] % steps:
        raise ValueError("The 'grid' argument of plot_traversal must be (rows * steps, C, H, "
                         "W) images, as returned by latent_traversal.")
    rows = grid.shape[0] // steps
    c, h, w = grid.shape[1:]
    tiles = grid.clamp(0, 1).view(rows, steps, c, h, w).permute(0, 3, 1, 4, 2)
    mosaic = tiles.reshape(rows * h, steps * w, c).numpy()  # (rows H, S W, C)
    fig = Figure(figsize=(max(2.0, 0.6 * steps), max(1.5, 0.6 * rows)), layout="constrained")
    ax = fig.subplots()
    ax.imshow(mosaic[..., 0] if c == 1 else mosaic, cmap="gray" if c == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([(r + 0.5) * h for r in range(rows)], [f"z{r}" for r in range(rows)])
    ax.set_xlabel("offset along one code dimension")
    if title:
        ax.set_title(title)
    if path is not None:
        save_figure(fig, path)
    return fig
