"""The pixels a density model sees: binarisation (fixed and dynamic) and 8-bit conversion.

Binary models (NADE; PixelCNN / PixelRNN with ``pixels="binary"``; a Bernoulli VAE; an AAE)
see 0/1 images:

* evaluation splits (``val``, ``test``) are a *fixed* draw: for an ``X-binary`` dataset
  (``mnist-binary``, ``fashion-mnist-binary``) its own seeded Bernoulli draw (see
  :mod:`dunno.data.images`: seed 2012 for the test file), for a grey dataset (``digits``,
  ``mnist``) the draw :func:`fixed_binarize` with the seed :data:`FIXED_SEEDS` of the split
  (``2011`` train, ``2013`` val, ``2012`` test);
* training with ``binarize="dynamic"`` draws a fresh Bernoulli image every time an image is
  seen (:class:`dunno.data.DynamicBinarize`), from the grey images (``mnist`` for
  ``mnist-binary``); ``binarize="fixed"`` trains on the fixed draw instead, ``"none"`` on the
  data as given.

8-bit models (``pixels="8bit"``) see integer pixel values: the [0, 1] intensities of
``mnist`` / ``fashion-mnist`` times 255 (checked to be whole numbers; ``digits`` has 17
levels and is refused). ``pixels="grey"`` (a continuous-Bernoulli VAE, a grey AAE) sees the
values in [0, 1] unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from dunno.data import ArrayDataset, DynamicBinarize, load_dataset
from dunno.errors import DataError

__all__ = [
    "BINARIZE",
    "FIXED_SEEDS",
    "as_images",
    "evaluation_images",
    "flat_note",
    "fixed_binarize",
    "grey_spec",
    "pixel_kind",
    "prepare_images",
    "random_subset",
    "to_8bit",
    "training_images",
]

#: how a binary model's training images are binarised
BINARIZE = ("dynamic", "fixed", "none")
#: the seed of the fixed Bernoulli draw of each split of a grey dataset
FIXED_SEEDS = {"train": 2011, "train-full": 2011, "val": 2013, "test": 2012}


def as_images(x, image_shape) -> object:
    """Flat vectors as images: for a single-channel model (``image_shape = (1, H, W)``) a
    tensor ``(N, H * W)`` becomes ``(N, 1, H, W)`` by a row-major reshape (NumPy's and
    torch's ``reshape``: vector entry ``r * W + c`` is pixel ``(r, c)``); anything else is
    returned as it is, for the model's image check to accept or refuse. Multi-channel models
    take images ``(N, C, H, W)`` only (a flat RGB vector has no one obvious layout)."""
    c, h, w = image_shape
    if c == 1 and isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[1] == h * w:
        return x.reshape(x.shape[0], 1, h, w)  # (N, 1, H, W)
    return x


def flat_note(image_shape) -> str:
    """The clause of a shape error that says which flat vectors a model also accepts."""
    c, h, w = image_shape
    return f" or flat vectors (N, {h * w})" if c == 1 else ""


def fixed_binarize(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed Bernoulli draw ``x_b = 1[U < x]`` with a torch generator seeded by ``seed``
    (the same recipe as ``mnist-binary``). Values already 0/1 are unchanged."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(x.shape, generator=g) < x).to(torch.float32)


def grey_spec(data: str) -> str | None:
    """The grey dataset a binary one is drawn from: ``"mnist-binary:rotate=90" ->
    "mnist:rotate=90"``; ``None`` for a spec that is not ``X-binary``."""
    base, _, rest = data.partition(":")
    if not base.endswith("-binary"):
        return None
    return base[: -len("-binary")] + (":" + rest if rest else "")


def pixel_kind(model_name: str, options: dict[str, Any]) -> str:
    """The pixels a model built as ``model_name`` with ``options`` takes: ``"binary"``,
    ``"8bit"`` or ``"grey"`` (values in [0, 1]: a continuous-Bernoulli VAE or a grey AAE)."""
    if model_name == "vae":
        return "grey" if options.get("likelihood") == "continuous-bernoulli" else "binary"
    return options.get("pixels", "binary")


def _with_x(dataset: ArrayDataset, x: torch.Tensor) -> ArrayDataset:
    return ArrayDataset(x.contiguous(), dataset.y, dataset.info)


def to_8bit(x: torch.Tensor, name: str) -> torch.Tensor:
    """Intensities in [0, 1] as whole numbers 0..255 (floats); a DataError naming dataset
    ``name`` when they lie outside [0, 1] (whole numbers 0..255 from a file that is not
    uint8, say) or are not multiples of 1/255."""
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"'{name}' holds values in [{float(x.min()):g}, {float(x.max()):g}] but an 8-bit "
            "model reads intensities in [0, 1], which it maps to 0..255 (how the built-in sets "
            "and uint8 files load). Save the images as uint8, or divide whole numbers 0..255 "
            "by 255."
        )
    scaled = x.double() * 255
    if x.numel() and (scaled - scaled.round()).abs().max() > 1e-3:
        raise DataError(
            f"'{name}' does not hold 8-bit intensities (values are not multiples of 1/255); "
            "8-bit models need images quantised to 256 levels (mnist, fashion-mnist, user "
            "data from uint8). Use a binary model (pixels='binary') for it."
        )
    return scaled.round().float()


def prepare_images(
    dataset: ArrayDataset, pixels: str, split: str, binarize: str | None = "fixed"
) -> ArrayDataset:
    """The images a model with ``pixels`` sees for ``split`` of ``dataset``.

    Binary pixels: ``binarize="fixed"`` applies :func:`fixed_binarize` (seed
    :data:`FIXED_SEEDS` ``[split]``; a no-op on 0/1 data), ``None``/``"none"`` passes the data
    unchanged (the model rejects grey values). 8-bit pixels: intensities in [0, 1] become
    integers 0..255. Grey pixels: unchanged.
    """
    if dataset.info.kind != "image" or len(dataset.info.shape) != 3:
        raise DataError(
            f"'{dataset.info.name}' is not an image dataset (N, C, H, W); autoregressive "
            "image models need one."
        )
    if pixels == "grey":  # a continuous-Bernoulli VAE / grey AAE: the values as they are
        return dataset
    if pixels == "8bit":
        return _with_x(dataset, to_8bit(dataset.x, dataset.info.name))
    if binarize == "fixed":
        x = dataset.x
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise DataError(
                f"'{dataset.info.name}' has values outside [0, 1]; it cannot be binarised as "
                "Bernoulli probabilities."
            )
        return _with_x(dataset, fixed_binarize(x, FIXED_SEEDS.get(split, 2012)))
    if binarize not in (None, "none"):
        raise ValueError(
            f"The 'binarize' parameter must be 'fixed', 'none' or None here. Got {binarize!r}."
        )
    return dataset


def evaluation_images(data: str, split: str, pixels: str, root=None) -> ArrayDataset:
    """Validation/test images of dataset spec ``data``: an ``X-binary`` set's own draw, else
    the fixed draw (binary pixels); 8-bit or grey values otherwise."""
    dataset = load_dataset(data, split, root)
    if pixels == "binary" and grey_spec(data) is not None:
        return prepare_images(dataset, pixels, split, None)
    return prepare_images(dataset, pixels, split, "fixed")


def training_images(data: str, pixels: str, binarize: str, seed: int, root=None,
                    split: str = "train") -> tuple[ArrayDataset, DynamicBinarize | None]:
    """Training images of ``data`` and the loader transform for them: a
    :class:`~dunno.data.DynamicBinarize` seeded by ``seed`` for ``binarize="dynamic"`` (on
    the grey images), else ``None``."""
    if pixels in ("8bit", "grey"):
        return prepare_images(load_dataset(data, split, root), pixels, split), None
    grey = grey_spec(data)
    if binarize == "dynamic":
        dataset = load_dataset(grey or data, split, root)
        return dataset, DynamicBinarize(seed)
    if binarize == "fixed":
        return evaluation_images(data, split, pixels, root), None
    return load_dataset(data, split, root), None


def random_subset(dataset: ArrayDataset, size: int | None, seed: int) -> ArrayDataset:
    """A seeded random subset of ``size`` examples (in their original order); the whole
    dataset when ``size`` is None or not smaller."""
    if size is None or size >= len(dataset):
        return dataset
    index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size]
    return dataset.subset(index.sort().values)
