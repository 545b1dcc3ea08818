r"""``letters``: Latin letters rendered offline from the fonts matplotlib ships, prepared like
MNIST digits (a near-OOD set of characters for a digit classifier).

Each image is one of the 52 letters ``A-Z a-z`` in one of eight DejaVu faces (Sans, Sans Bold,
Sans Oblique, Serif, Serif Bold, Serif Italic, Sans Mono, Sans Mono Bold: the TrueType files in
``matplotlib/mpl-data/fonts/ttf``), its outline taken with :class:`matplotlib.textpath.TextPath`
and drawn white on black by matplotlib's Agg rasteriser (anti-aliased, filled and stroked) on
a 4x oversampled canvas, after a seeded random affine jitter:

* rotation :math:`\theta \sim U(-15^\circ, 15^\circ)`, shear :math:`\sim U(-0.25, 0.25)`,
  horizontal stretch :math:`\sim U(0.8, 1.2)`;
* an outline stroke adding :math:`w \sim U(0, 0.08)` of the glyph's size to the stroke width.

Then as MNIST was made (LeCun et al. 1998): the glyph's bounding box is scaled (anti-aliased,
aspect kept) so that its longer side is 20 pixels, and the 20-pixel box is placed in a
28 x 28 image so that its centre of mass is at the image centre (rounded to whole pixels).
Values are grey levels in ``[0, 1]``. The set is a pure function of ``(n, seed)``: the same
arguments give the same images on every machine with the same matplotlib fonts. Labels are the
letters' indices in :data:`LETTERS`.
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dunno.data.base import ArrayDataset, DatasetInfo
from dunno.errors import DataError
from dunno.validation import check_int, check_seed

__all__ = ["FONTS", "LETTERS", "MAX_LETTERS", "load_letters", "render_letters"]

#: The 52 classes, in label order.
LETTERS = string.ascii_uppercase + string.ascii_lowercase

#: The DejaVu faces drawn, by file name in matplotlib's ``mpl-data/fonts/ttf``.
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
         "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf",
         "DejaVuSansMono-Bold.ttf")

#: The most images one call renders (about 25 CPU minutes).
MAX_LETTERS = 1_000_000

SIDE, BOX = 28, 20  # the image side; the box the glyph's longer side is scaled to
OVERSAMPLE = 4
CANVAS = 2 * BOX * OVERSAMPLE  # the rendering canvas (room for jitter and strokes)


@cache
def _glyph(char: str, font: str):
    """The outline of ``char`` in ``font`` (one em high), as a matplotlib path."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    fname = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / font
    return TextPath((0, 0), char, size=1.0, prop=FontProperties(fname=str(fname)))


def _render(path, rotation: float, shear: float, stretch: float, stroke: float) -> np.ndarray:
    """The jittered glyph drawn on the oversampled canvas: ``(CANVAS, CANVAS)`` in [0, 1]."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.transforms import Affine2D

    shape = Affine2D().scale(stretch, 1.0).skew(shear, 0.0).rotate_deg(rotation)
    (x0, y0), (x1, y1) = path.transformed(shape).get_extents().get_points()
    size = 1.2 * BOX * OVERSAMPLE  # the glyph's longer side on the canvas, before the crop
    scale = size / max(x1 - x0, y1 - y0)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) * scale
    transform = shape + Affine2D().scale(scale).translate(CANVAS / 2 - centre[0],
                                                          CANVAS / 2 - centre[1])
    renderer = RendererAgg(CANVAS, CANVAS, 72)
    gc = renderer.new_gc()
    gc.set_antialiased(True)
    gc.set_foreground((1.0, 1.0, 1.0))
    gc.set_linewidth(stroke * size)  # points at 72 dpi = canvas pixels
    renderer.draw_path(gc, path, transform, (1.0, 1.0, 1.0))
    gc.restore()
    return np.asarray(renderer.buffer_rgba())[..., 3].astype(np.float32) / 255.0


def _mnist_style(canvas: np.ndarray) -> torch.Tensor:
    """Crop to the bounding box, scale the longer side to 20 pixels, centre the mass in 28 x 28:
    ``(28, 28)`` float32 in [0, 1]."""
    rows, cols = np.nonzero(canvas > 0)
    crop = torch.from_numpy(canvas[rows.min():rows.max() + 1, cols.min():cols.max() + 1].copy())
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(crop[None, None], size=size, mode="bilinear", antialias=True,
                          align_corners=False)[0, 0].clamp(0.0, 1.0)  # (h', w')
    mass = small.sum()
    cy = float((small.sum(1) * (torch.arange(size[0]) + 0.5)).sum() / mass)
    cx = float((small.sum(0) * (torch.arange(size[1]) + 0.5)).sum() / mass)
    top = min(max(round(SIDE / 2 - cy), 0), SIDE - size[0])
    left = min(max(round(SIDE / 2 - cx), 0), SIDE - size[1])
    out = torch.zeros(SIDE, SIDE)
    out[top:top + size[0], left:left + size[1]] = small
    return out


def render_letters(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` letter images (module docstring) drawn with ``seed``: ``x (n, 1, 28, 28)`` float32
    in [0, 1] and labels ``y (n,)`` int64 (indices into :data:`LETTERS`)."""
    n = check_int(n, "n", "render_letters", low=1)
    rng = np.random.default_rng(check_seed(seed, "render_letters"))
    labels = rng.integers(0, len(LETTERS), n)
    fonts = rng.integers(0, len(FONTS), n)
    rotation = rng.uniform(-15.0, 15.0, n)
    shear = rng.uniform(-0.25, 0.25, n)
    stretch = rng.uniform(0.8, 1.2, n)
    stroke = rng.uniform(0.0, 0.08, n)
    x = torch.empty(n, 1, SIDE, SIDE)
    for i in range(n):
        path = _glyph(LETTERS[labels[i]], FONTS[fonts[i]])
        x[i, 0] = _mnist_style(_render(path, rotation[i], shear[i], stretch[i], stroke[i]))
    return x, torch.from_numpy(labels).long()


def load_letters(split: str, n: int = 10000, seed: int = 0) -> ArrayDataset:
    """The dataset ``letters`` (:func:`dunno.data.load_dataset`, options ``n=`` and ``seed=``):
    :func:`render_letters` as an :class:`~dunno.data.ArrayDataset`. Only the ``test`` split
    exists: an OOD set that nothing is fitted on."""
    if split != "test":
        raise DataError(f"'letters' is an OOD set with only a 'test' split. Got {split!r}.")
    if n > MAX_LETTERS:
        raise DataError(f"Dataset option 'n' of 'letters' must be <= {MAX_LETTERS}. Got {n}.")
    x, y = render_letters(n, seed=seed)
    info = DatasetInfo("letters", "image", (1, SIDE, SIDE), len(LETTERS), (0.0, 1.0),
                       "Latin letters in DejaVu fonts, jittered, MNIST-style (near-OOD set)",
                       {"classes": list(LETTERS)})
    return ArrayDataset(x, y, info)
