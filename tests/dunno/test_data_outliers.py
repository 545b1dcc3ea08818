"""Synthetic outliers (dunno.data.outliers) and the near-OOD set ``letters``
(dunno.data.letters): each generator's defining property, seeds, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from dunno.data import load_dataset
from dunno.data.letters import LETTERS, render_letters
from dunno.data.outliers import (
    OUTLIER_KINDS,
    additive_noise,
    dilate,
    erode,
    make_outliers,
    overlay,
    permute_pixels,
    shuffle_patches,
    splice,
)
from dunno.errors import DataError


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 28, 28, generator=g) ** 3  # (N, C, H, W), mostly dark


def test_every_kind_is_seeded_pure_and_keeps_the_shape(images):
    before = images.clone()
    for name, kind in OUTLIER_KINDS.items():
        a, b = kind(images, seed=3), kind(images, seed=3)
        assert a.shape == images.shape and a.dtype == images.dtype, name
        assert torch.equal(a, b), name
        assert not torch.equal(a, images), name
    assert torch.equal(images, before)  # the input is never modified
    for name in ("permute", "patches-7", "patches-14", "noise", "overlay", "splice"):
        kind = OUTLIER_KINDS[name]
        assert not torch.equal(kind(images, seed=3), kind(images, seed=4)), name


def test_permutation_keeps_each_histogram_and_moves_colours_together():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 5, 7, generator=g)
    y = permute_pixels(x, seed=0)
    for i in range(4):
        assert torch.equal(x[i].flatten().sort().values, y[i].flatten().sort().values)
        # the (R, G, B) vectors are the same multiset: every output pixel is an input pixel
        px, py = x[i].reshape(3, -1).T, y[i].reshape(3, -1).T  # (H*W, 3)
        order_x = np.lexsort(px.numpy().T[::-1])
        order_y = np.lexsort(py.numpy().T[::-1])
        assert torch.equal(px[order_x], py[order_y])
    assert not torch.equal(y, x)
    out = permute_pixels(x.numpy(), seed=0)
    assert isinstance(out, np.ndarray) and np.array_equal(out, y.numpy())


def _patches(x: torch.Tensor, p: int) -> list[bytes]:
    c, h, w = x.shape
    tiles = x.reshape(c, h // p, p, w // p, p).permute(1, 3, 0, 2, 4).reshape(-1, c, p, p)
    return sorted(t.numpy().tobytes() for t in tiles)


@pytest.mark.parametrize("patch", [7, 14])
def test_patch_shuffle_keeps_every_patch_and_moves_some(images, patch):
    y = shuffle_patches(images, seed=2, patch=patch)
    for i in range(len(images)):
        assert _patches(images[i], patch) == _patches(y[i], patch)
        assert not torch.equal(images[i], y[i])  # never the identity permutation


def test_two_patches_are_always_swapped():
    x = torch.ones(50, 1, 2, 4)
    x[..., 2:] = 2.0  # one row of two 2 x 2 patches, 1 | 2: the only other order is the swap
    y = shuffle_patches(x, seed=0, patch=2)
    assert torch.equal(y[..., :2], torch.full((50, 1, 2, 2), 2.0))
    assert torch.equal(y[..., 2:], torch.full((50, 1, 2, 2), 1.0))


def test_patch_shuffle_refuses_a_patch_that_does_not_tile(images):
    with pytest.raises(ValueError, match="'patch' parameter of shuffle_patches.*28 x 28"):
        shuffle_patches(images, patch=5)
    with pytest.raises(ValueError, match="'patch' parameter"):
        shuffle_patches(images, patch=28)  # a single patch cannot be shuffled


def test_erosion_and_dilation_by_hand_and_against_scipy(images):
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    block = torch.zeros(1, 1, 5, 5)
    block[0, 0, 1:4, 1:4] = 1.0
    assert torch.equal(dilate(x), block)  # one bright pixel grows to a 3 x 3 square
    assert torch.equal(erode(block), x)  # and the square erodes back to it
    assert torch.equal(erode(x), torch.zeros_like(x))
    for size in (1, 3, 5):
        ours_max, ours_min = dilate(images, size=size), erode(images, size=size)
        for i in range(len(images)):
            ref = images[i, 0].numpy()
            np.testing.assert_array_equal(
                ours_max[i, 0].numpy(),
                scipy.ndimage.maximum_filter(ref, size=size, mode="nearest"))
            np.testing.assert_array_equal(
                ours_min[i, 0].numpy(),
                scipy.ndimage.minimum_filter(ref, size=size, mode="nearest"))
    assert torch.equal(dilate(images, size=1), images)


def test_erosion_and_dilation_are_monotone_and_bracket_the_image(images):
    brighter = (images + 0.1 * torch.rand(images.shape, generator=torch.Generator()
                                          .manual_seed(5))).clamp(max=1.0)  # >= images
    assert bool((erode(images) <= images).all()) and bool((images <= dilate(images)).all())
    assert bool((erode(images) <= erode(brighter)).all())
    assert bool((dilate(images) <= dilate(brighter)).all())
    assert bool((dilate(erode(images)) <= images).all())  # an opening never adds brightness
    assert bool((erode(dilate(images)) >= images).all())  # a closing never removes it


def test_bad_window_sizes_are_refused(images):
    with pytest.raises(ValueError, match="'size' parameter of dilate must be an odd int"):
        dilate(images, size=2)
    with pytest.raises(ValueError, match="'size' parameter of erode"):
        erode(images, size=0)


def test_additive_noise_has_the_stated_spread_and_stays_in_range():
    x = torch.full((200, 1, 28, 28), 0.5)
    y = additive_noise(x, seed=0, std=0.2)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float((y - x).std()) == pytest.approx(0.2, rel=0.02)  # clipped at 2.5 sd: rare
    assert float((y - x).mean()) == pytest.approx(0.0, abs=0.002)
    assert torch.equal(additive_noise(x, seed=0, std=0.0), x)


def test_overlay_pairs_each_image_with_another():
    n = 9
    x = torch.zeros(n, 1, 3, 3)
    x.view(n, 9)[torch.arange(n), torch.arange(n)] = 1.0  # image i lights pixel i
    for seed in range(5):
        y = overlay(x, seed=seed).view(n, 9)
        assert torch.equal(y.sum(1), torch.full((n,), 2.0))  # its own pixel and one other
        assert torch.equal(y[torch.arange(n), torch.arange(n)], torch.ones(n))
        partners = y.clone()
        partners[torch.arange(n), torch.arange(n)] = 0.0
        assert sorted(partners.argmax(1).tolist()) == list(range(n))  # each used once
    with pytest.raises(ValueError, match="at least 2 images"):
        overlay(x[:1])


def test_splice_joins_a_top_half_with_another_images_bottom_half():
    n = 7
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 5, 3) / n
    for seed in range(4):
        y = splice(x, seed=seed)
        assert torch.equal(y[:, :, :2], x[:, :, :2])  # rows 0 .. H // 2 - 1 kept
        bottom = (y[:, 0, 2:] * n).round().long()  # (N, 3, 3): the partner's index
        assert bool((bottom == bottom[:, :1, :1]).all())
        partners = bottom[:, 0, 0]
        assert bool((partners != torch.arange(n)).all())  # never the image itself
        assert sorted(partners.tolist()) == list(range(n))  # each bottom used once
    assert torch.equal(splice(x, seed=3), splice(x, seed=3))
    with pytest.raises(ValueError, match="at least 2 images"):
        splice(x[:1])


def test_make_outliers_seeds_each_kind_independently(images):
    every = make_outliers(images, seed=1)
    assert list(every) == list(OUTLIER_KINDS)
    assert torch.equal(make_outliers(images, ["noise"], seed=1)["noise"], every["noise"])
    with pytest.raises(ValueError, match="'kinds' argument of make_outliers"):
        make_outliers(images, ["rotate"])


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 28, 28), r"\(N, C, H, W\)"),
    (torch.zeros(0, 1, 4, 4), "non-empty"),
    (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "floating-point"),
])
def test_bad_images_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        permute_pixels(bad)


def test_a_bad_seed_is_refused(images):
    with pytest.raises(ValueError, match="'seed' parameter of permute_pixels must be an int"):
        permute_pixels(images, seed=-1)


# --------------------------------------------------------------------------- letters
def test_letters_are_centred_like_mnist_and_repeat_per_seed():
    x, y = render_letters(24, seed=0)
    assert x.shape == (24, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    assert bool(((y >= 0) & (y < len(LETTERS))).all())
    grid = torch.arange(28) + 0.5
    for img in x[:, 0]:
        rows, cols = torch.nonzero(img > 0, as_tuple=True)
        height, width = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
        assert max(height, width) == 20  # the bounding box's longer side
        mass = img.sum()
        assert abs(float((img.sum(1) * grid).sum() / mass) - 14) <= 0.5
        assert abs(float((img.sum(0) * grid).sum() / mass) - 14) <= 0.5
    again, y_again = render_letters(24, seed=0)
    assert torch.equal(again, x) and torch.equal(y_again, y)
    assert not torch.equal(render_letters(24, seed=1)[0], x)


def test_letters_as_a_dataset_spec():
    ds = load_dataset("letters:n=6:seed=2", "test")
    assert ds.x.shape == (6, 1, 28, 28) and ds.info.num_classes == 52
    assert ds.info.value_range == (0.0, 1.0)
    assert torch.equal(ds.x, render_letters(6, seed=2)[0])
    with pytest.raises(DataError, match="only a 'test' split"):
        load_dataset("letters:n=6", "train")
