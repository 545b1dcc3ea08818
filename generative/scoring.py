"""Score and sample trained density models: per-image log-likelihoods (nats), NLL and
bits/dim summaries, checkpoint loading and seeded ancestral samples.

Autoregressive models (:mod:`generative.autoregressive`) are scored by their exact
log-likelihood; a :class:`~generative.latent.VAE` by its importance-sampled log p(x) with
``samples_k`` samples (an IWAE bound, 5000 by default as in Burda et al. 2016), drawn from a
generator seeded with ``seed``; an :class:`~generative.latent.AdversarialAutoencoder` has no
likelihood and reports its per-image reconstruction cross-entropy (``recon_nats``) instead.
``bits_per_dim = -log p(x) / (D ln 2)`` for *discrete* likelihoods only (binary and 8-bit
pixels, :func:`has_code_length`), where ``-log2 p(x)`` is a code length. A model of
continuous values -- the continuous-Bernoulli VAE (``pixels="grey"``) -- has a log-density,
which can be positive: its summaries report nats only (``"likelihood": "continuous"``, no
``bits_per_dim`` key), and ``VAE.bits_per_dim`` refuses it.

Example::

    from generative import load_density_model, score_density
    model = load_density_model("runs/nade/model.pt")
    nll, summary = score_density(model, "mnist-binary", split="test")
    print(summary["nll_nats"], summary["bits_per_dim"])
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dunno.data import ArrayDataset, load_dataset, make_loader
from dunno.data.registry import parse_spec
from dunno.devices import resolve_device
from dunno.progress import Progress, reports_progress
from dunno.validation import check_int
from evaluation.metrics import bits_per_dim, has_code_length, nll_nats
from generative.autoregressive import AutoregressiveImageModel
from generative.latent import VAE, AdversarialAutoencoder
from generative.pixels import prepare_images, random_subset

__all__ = [
    "CONTINUOUS_NOTE",
    "DENSITY_MODEL_TYPES",
    "draw_samples",
    "has_code_length",  # from evaluation.metrics
    "load_density_model",
    "log_probs",
    "score_density",
    "score_images",
]

#: the model classes the density recipes train and score
DENSITY_MODEL_TYPES = (AutoregressiveImageModel, VAE, AdversarialAutoencoder)


#: what is reported instead of bits/dim for a continuous likelihood (``dunno density``)
CONTINUOUS_NOTE = ("continuous likelihood: log-density in nats, no bits/dim (not a code "
                   "length; can be negative)")


@torch.no_grad()
def log_probs(model, loader, device, samples_k: int = 5000, seed: int = 0, *,
              desc: str = "log p(x)") -> np.ndarray:
    """Per-image scores ``(N,)`` (float64) of the batches ``(x, ...)`` of ``loader``: exact
    log-likelihoods (autoregressive), IWAE estimates with ``samples_k`` samples from a
    generator seeded by ``seed`` (VAE), minus the reconstruction cross-entropy (AAE). The
    model's train/eval mode is restored afterwards. The pass reports its progress as
    ``desc`` where the caller asked for it (:mod:`dunno.progress`)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    dataset = getattr(loader, "dataset", None)
    bar = Progress(total=len(dataset) if hasattr(dataset, "__len__") else None, desc=desc,
                   unit="img")
    for batch in loader:
        x = batch[0].to(device)
        if isinstance(model, VAE):
            lp = model.log_prob(x, samples_k, generator=generator)
        elif isinstance(model, AdversarialAutoencoder):
            lp = -model.recon_error(x)
        else:
            lp = model.log_prob(x)
        out.append(lp.double().cpu())
        bar.update(len(x))
    bar.close()
    model.train(was_training)
    return torch.cat(out).numpy()  # (N,)


def score_images(model, dataset: ArrayDataset, device, batch_size: int = 500,
                 samples_k: int = 5000, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """``(nll (N,), summary)`` for images already prepared for the model
    (:func:`~generative.pixels.prepare_images`): per-image NLL in nats and ``{"n",
    "num_dims", "nll_nats", "likelihood", "bits_per_dim"}`` (``likelihood`` is "discrete"
    or "continuous"; ``bits_per_dim`` only for a discrete one, :func:`has_code_length`;
    ``recon_nats`` instead for an AAE, ``samples_k`` for a VAE) plus ``seconds`` and
    ``images_per_s``."""
    c, h, w = model.image_shape
    shape = tuple(dataset.info.shape)
    if shape != (c, h, w):
        raise ValueError(
            f"The model was trained on {c}x{h}x{w} images but '{dataset.info.name}' has "
            f"{'x'.join(map(str, shape))} images; a checkpoint only scores images of the size "
            "it was trained on."
        )
    t0 = time.perf_counter()
    what = f"IWAE log p(x), K={samples_k}" if isinstance(model, VAE) else "log p(x)"
    lp = log_probs(model, make_loader(dataset, batch_size), device, samples_k, seed,
                   desc=f"{what} {dataset.info.name}")
    seconds = time.perf_counter() - t0
    summary: dict[str, Any] = {"n": len(lp), "num_dims": model.num_dims}
    if isinstance(model, AdversarialAutoencoder):
        summary["recon_nats"] = nll_nats(lp)
    else:
        summary["nll_nats"] = nll_nats(lp)
        if has_code_length(model):
            summary.update(likelihood="discrete", bits_per_dim=bits_per_dim(lp, model.num_dims))
        else:  # a log-density: no code length, nats only
            summary["likelihood"] = "continuous"
    if isinstance(model, VAE):
        summary["samples_k"] = samples_k
    summary.update({"seconds": seconds, "images_per_s": len(lp) / max(seconds, 1e-9)})
    return -lp, summary


@reports_progress
def score_density(
    model: AutoregressiveImageModel | VAE | AdversarialAutoencoder,
    data: str,
    split: str = "test",
    *,
    binarize: str | None = None,
    batch_size: int = 500,
    device: str | torch.device = "auto",
    root=None,
    samples_k: int = 5000,
    size: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Negative log-likelihood of every image of ``split`` of ``data``: exact for the
    autoregressive models, the IWAE estimate with ``samples_k`` importance samples (generator
    seeded by ``seed``) for a VAE; an AAE gets its reconstruction cross-entropy
    (``recon_nats``) instead. ``size`` scores a seeded random subset of that many images.

    Parameters
    ----------
    model : AutoregressiveImageModel, VAE or AdversarialAutoencoder
        E.g. from :func:`load_density_model`; moved to ``device``, weights unchanged.
    data, split : str
        Dataset spec and split (``"test"``, ``"val"``, ``"train"``). An 8-bit model scores
        intensities in [0, 1] (the built-in sets and uint8 files load so) as the whole
        numbers 0..255; values outside [0, 1] are refused.
    binarize : {None, "fixed"}
        For a binary model on grey data: ``"fixed"`` applies
        :func:`~generative.pixels.fixed_binarize` (seed :data:`~generative.pixels.FIXED_SEEDS`
        ``[split]``); ``None`` passes the data as is (an ``X-binary`` set), and grey values
        raise an error that says so.
    progress : bool, optional
        Report the scoring on stderr (:mod:`dunno.progress`; with ``samples_k=5000`` a VAE
        takes minutes); ``None``: as the enclosing call asked (off by default).

    Returns
    -------
    (nll, summary)
        ``nll (N,)`` per-image NLL in nats (higher = less likely, usable as an OOD score)
        and ``{"nll_nats", "likelihood", "bits_per_dim", "n", "num_dims", "images_per_s",
        "data", "split", "model", "binarize", ...}`` (``bits_per_dim`` for discrete
        likelihoods only, see :func:`has_code_length`).
    """
    if not isinstance(model, DENSITY_MODEL_TYPES):
        raise TypeError(f"score_density needs a model from generative.autoregressive or "
                        f"generative.latent; got {type(model).__name__}.")
    for name, value in (("batch_size", batch_size), ("samples_k", samples_k), ("size", size)):
        check_int(value, name, "score_density", low=1, allow_none=name != "batch_size")
    device = resolve_device(device)
    model = model.to(device)
    dataset = load_dataset(data, split, root)
    if model.pixels == "binary" and binarize is None:
        x = dataset.x
        if x.numel() and not ((x == 0) | (x == 1)).all():
            raise ValueError(
                f"'{data}' holds grey values but the model has binary pixels. Score a "
                f"pre-binarised set (e.g. '{parse_spec(data)[0]}-binary' where it exists) or "
                "pass binarize='fixed' (--binarize fixed) for the documented fixed Bernoulli "
                "draw."
            )
    dataset = random_subset(prepare_images(dataset, model.pixels, split, binarize), size, seed)
    nll, summary = score_images(model, dataset, device, batch_size, samples_k, seed)
    summary.update({"data": data, "split": split, "model": type(model).__name__,
                    "binarize": binarize if model.pixels == "binary" else None})
    return nll, summary


def draw_samples(model, n: int, *, seed: int = 0,
                 device: str | torch.device | None = None) -> torch.Tensor:
    """``n`` images drawn by the model's ``sample`` with a generator seeded by ``seed`` (on
    ``device`` when given), returned on the CPU: ``(n, C, H, W)`` holding 0/1, 0..255 or
    [0, 1] values (the model's pixels)."""
    if device is not None:
        model = model.to(resolve_device(device))
    generator = torch.Generator().manual_seed(seed)
    return model.sample(n, generator=generator).cpu()


def load_density_model(path: str | Path, device: str | torch.device = "cpu"):
    """Load a checkpoint written by :func:`~generative.training.train_density` (never
    executes code); a ValueError for a checkpoint of another kind of model."""
    from dunno.checkpoints import load_model

    model = load_model(path, device=resolve_device(device))
    if not isinstance(model, DENSITY_MODEL_TYPES):
        raise ValueError(f"{str(path)!r} holds a {type(model).__name__}, not a density "
                         "model of generative.autoregressive or generative.latent.")
    return model
