r"""Synthetic outliers made from in-distribution images, for choosing OOD detectors without
OOD data.

Each generator is a pure function ``kind(images, seed) -> outliers`` of a batch
``images (N, C, H, W)`` (values in ``[0, 1]``; numpy in gives numpy out) and a seed: the same
images and seed give the same outliers, bit for bit, and the input is never modified. Each
destroys one property of natural in-distribution images while keeping another, so that a
detector must notice what was destroyed:

================  ============================================  ==============================
kind              what it is                                    what it keeps
================  ============================================  ==============================
``permute``       every image's pixel positions permuted         the image's pixel histogram
                  (one random permutation per image, channels    (and colours)
                  moving together)
``patches-7``     the image cut into a grid of 7 x 7 patches,    every patch, as it was
                  the patches shuffled (a random non-identity
                  permutation per image)
``patches-14``    the same with 14 x 14 patches (the four        every quadrant
                  quadrants of a 28 x 28 image)
``erode``         grey-scale erosion: the minimum over each      the layout; strokes thinned
                  3 x 3 window (strokes lose a pixel a side)     (pointwise <= the image)
``dilate``        grey-scale dilation: the maximum over each     the layout; strokes thickened
                  3 x 3 window (a 3 x 3 max-pool, stride 1)      (pointwise >= the image)
``noise``         the image plus i.i.d. ``N(0, 0.2^2)`` pixel    the image underneath
                  noise, clipped to ``[0, 1]``
``overlay``       the pixelwise maximum of the image and         both images' strokes
                  another image of the batch
``splice``        the image's top half above the bottom half     each half, in its place
                  of another image of the batch
================  ============================================  ==============================

Grey-scale erosion and dilation (Serra, "Image Analysis and Mathematical Morphology", 1982)
with a flat square window :math:`B` of side ``size``:

.. math::

    (x \ominus B)_{ij} = \min_{(u, v) \in B} x_{i+u, j+v}, \qquad
    (x \oplus B)_{ij} = \max_{(u, v) \in B} x_{i+u, j+v},

over the window's part inside the image. Both are monotone (:math:`x \le y` pointwise implies
the same for the results) and :math:`x \ominus B \le x \le x \oplus B`.

Permuted pixels and shuffled patches are the "local vs global" outliers of OOD studies that
build outliers from in-distribution data (e.g. the permuted and shuffled images of Hendrycks
et al., "Deep Anomaly Detection with Outlier Exposure", ICLR 2019, and the shuffled patches
of Zhang et al., "On the Out-of-distribution Generalization of Probabilistic Image Modelling",
NeurIPS 2021); the rest are corruptions of stroke width, pixel noise and composition
(``overlay`` puts two objects in one frame, ``splice`` joins halves of two into one new
shape: a near outlier whose every part is in-distribution).
:data:`OUTLIER_KINDS` maps the names to the generators; they are built only from the images
given and see no other data.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dunno.validation import check_float, check_int, check_seed

__all__ = ["OUTLIER_KINDS", "additive_noise", "dilate", "erode", "make_outliers", "overlay",
           "permute_pixels", "shuffle_patches", "splice"]


def _images(images: Any, owner: str) -> torch.Tensor:
    """``images`` as a floating ``(N, C, H, W)`` tensor (numpy arrays are converted)."""
    x = torch.as_tensor(images) if isinstance(images, np.ndarray) else images
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) == 0:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"The 'images' argument of {owner} must be a non-empty batch of "
                         f"images of shape (N, C, H, W). Got {shape} instead.")
    if not x.is_floating_point():
        raise ValueError(f"The 'images' argument of {owner} must hold floating-point values "
                         f"in [0, 1]. Got dtype {x.dtype} instead.")
    return x


def _like(result: torch.Tensor, images: Any) -> Any:
    return result.numpy() if isinstance(images, np.ndarray) else result


def _generator(seed: int, owner: str) -> torch.Generator:
    return torch.Generator().manual_seed(check_seed(seed, owner))


def permute_pixels(images: Any, seed: int = 0) -> Any:
    """Every image's ``H * W`` pixel positions shuffled by its own random permutation (the
    ``C`` channels of a pixel move together): ``(N, C, H, W)`` -> same shape. Each image keeps
    its multiset of pixel values (its histogram) and loses all spatial structure."""
    x = _images(images, "permute_pixels")
    g = _generator(seed, "permute_pixels")
    n, c, h, w = x.shape
    order = torch.argsort(torch.rand(n, h * w, generator=g), dim=1)  # (N, H*W)
    flat = x.reshape(n, c, h * w)
    out = torch.gather(flat, 2, order.to(x.device).unsqueeze(1).expand(n, c, h * w))
    return _like(out.reshape(n, c, h, w), images)


def _non_identity_permutations(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``(n, k)`` random permutations of ``0..k-1``, none the identity (drawn again where one
    is; ``k >= 2``)."""
    perms = torch.argsort(torch.rand(n, k, generator=g), dim=1)
    identity = torch.arange(k)
    same = (perms == identity).all(dim=1)
    while bool(same.any()):
        perms[same] = torch.argsort(torch.rand(int(same.sum()), k, generator=g), dim=1)
        same = (perms == identity).all(dim=1)
    return perms


def shuffle_patches(images: Any, seed: int = 0, *, patch: int = 7) -> Any:
    """Cut every image into a grid of ``patch x patch`` patches and shuffle them (a random
    permutation per image, never the identity): ``(N, C, H, W)`` -> same shape. Every patch is
    kept as it was; only their arrangement changes. ``H`` and ``W`` must be multiples of
    ``patch``, with at least two patches."""
    x = _images(images, "shuffle_patches")
    n, c, h, w = x.shape
    patch = check_int(patch, "patch", "shuffle_patches", low=1)
    if h % patch or w % patch or (h // patch) * (w // patch) < 2:
        raise ValueError(f"The 'patch' parameter of shuffle_patches must divide the image "
                         f"height and width ({h} x {w}) into at least two patches. Got {patch} "
                         "instead.")
    gh, gw = h // patch, w // patch
    k = gh * gw
    g = _generator(seed, "shuffle_patches")
    perms = _non_identity_permutations(n, k, g).to(x.device)  # (N, K)
    tiles = x.reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(n, k, c, patch, patch)  # (N, K, C, p, p)
    index = perms.view(n, k, 1, 1, 1).expand_as(tiles)
    shuffled = torch.gather(tiles, 1, index).reshape(n, gh, gw, c, patch, patch)
    out = shuffled.permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)
    return _like(out.contiguous(), images)


def _check_size(size: int, owner: str) -> int:
    size = check_int(size, "size", owner, low=1)
    if size % 2 == 0:
        raise ValueError(f"The 'size' parameter of {owner} must be an odd int >= 1 (a window "
                         f"centred on each pixel). Got {size} instead.")
    return size


def dilate(images: Any, seed: int = 0, *, size: int = 3) -> Any:
    r"""Grey-scale dilation by a flat ``size x size`` square (module docstring): the maximum
    of each window, i.e. a max-pool with stride 1; strokes grow by ``size // 2`` pixels a side.
    Deterministic (``seed`` is accepted for the common signature and unused). ``(N, C, H, W)``
    -> same shape, pointwise ``>=`` the images."""
    x = _images(images, "dilate")
    check_seed(seed, "dilate")
    size = _check_size(size, "dilate")
    out = F.max_pool2d(x, size, stride=1, padding=size // 2)
    return _like(out, images)


def erode(images: Any, seed: int = 0, *, size: int = 3) -> Any:
    r"""Grey-scale erosion by a flat ``size x size`` square (module docstring): the minimum of
    each window, :math:`-\mathrm{maxpool}(-x)`; strokes thin by ``size // 2`` pixels a side.
    Deterministic (``seed`` unused). ``(N, C, H, W)`` -> same shape, pointwise ``<=`` the
    images."""
    x = _images(images, "erode")
    check_seed(seed, "erode")
    size = _check_size(size, "erode")
    out = -F.max_pool2d(-x, size, stride=1, padding=size // 2)
    return _like(out, images)


def additive_noise(images: Any, seed: int = 0, *, std: float = 0.2) -> Any:
    r"""The images plus i.i.d. pixel noise, :math:`\mathrm{clip}(x + \sigma z, 0, 1)` with
    :math:`z \sim \mathcal N(0, 1)` and :math:`\sigma` = ``std``: ``(N, C, H, W)`` -> same
    shape. Unlike pure noise images, the in-distribution image is still there underneath."""
    x = _images(images, "additive_noise")
    std = check_float(std, "std", "additive_noise", low=0.0)
    g = _generator(seed, "additive_noise")
    z = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    return _like((x + std * z).clamp(0.0, 1.0), images)


def overlay(images: Any, seed: int = 0) -> Any:
    """The pixelwise maximum of each image and another image of the batch (a random
    derangement pairs them: never an image with itself): two objects in one frame.
    ``(N, C, H, W)`` -> same shape; needs ``N >= 2``."""
    x = _images(images, "overlay")
    n = len(x)
    if n < 2:
        raise ValueError(f"The 'images' argument of overlay must hold at least 2 images (each "
                         f"is overlaid with another). Got {n} instead.")
    partner = _derangement(n, _generator(seed, "overlay"))
    return _like(torch.maximum(x, x[partner.to(x.device)]), images)


def _derangement(n: int, g: torch.Generator) -> torch.Tensor:
    """``(n,)`` partners ``i -> partner[i] != i`` (``n >= 2``): a random cyclic shift of a
    random order, ``i -> order[(pos(i) + s) % n]``."""
    order = torch.randperm(n, generator=g)
    shift = int(torch.randint(1, n, (1,), generator=g))
    partner = torch.empty(n, dtype=torch.long)
    partner[order] = order.roll(-shift)
    return partner


def splice(images: Any, seed: int = 0) -> Any:
    """The top half of each image (rows ``0 .. H // 2 - 1``) above the bottom half of another
    image of the batch (a random derangement pairs them, as in :func:`overlay`): a new shape
    made of two in-distribution halves, each where it belongs. ``(N, C, H, W)`` -> same
    shape; needs ``N >= 2`` and ``H >= 2``."""
    x = _images(images, "splice")
    n, _, h, _ = x.shape
    if n < 2 or h < 2:
        raise ValueError(f"The 'images' argument of splice must hold at least 2 images of at "
                         f"least 2 rows (each is joined with another). Got shape "
                         f"{tuple(x.shape)} instead.")
    partner = _derangement(n, _generator(seed, "splice"))
    out = x.clone()
    out[:, :, h // 2:] = x[partner.to(x.device), :, h // 2:]
    return _like(out, images)


#: The synthetic outlier kinds, by name (module docstring), each ``(images, seed) -> outliers``.
OUTLIER_KINDS: dict[str, Callable[..., Any]] = {
    "permute": permute_pixels,
    "patches-7": partial(shuffle_patches, patch=7),
    "patches-14": partial(shuffle_patches, patch=14),
    "erode": erode,
    "dilate": dilate,
    "noise": additive_noise,
    "overlay": overlay,
    "splice": splice,
}


def make_outliers(images: Any, kinds=None, seed: int = 0) -> dict[str, Any]:
    """``{kind: outliers}`` of every kind in ``kinds`` (names of :data:`OUTLIER_KINDS`;
    default: all of them), each drawn with its own seed derived from ``seed`` and the kind's
    position in :data:`OUTLIER_KINDS`, so that adding a kind to the list changes no other."""
    check_seed(seed, "make_outliers")
    names = list(OUTLIER_KINDS) if kinds is None else list(kinds)
    unknown = [k for k in names if k not in OUTLIER_KINDS]
    if unknown or not names:
        raise ValueError(f"The 'kinds' argument of make_outliers must name kinds from "
                         f"{list(OUTLIER_KINDS)}. Got {names} instead.")
    position = {k: i for i, k in enumerate(OUTLIER_KINDS)}
    return {k: OUTLIER_KINDS[k](images, seed=seed * 1009 + position[k]) for k in names}
