"""Train a GAN, DCGAN or InfoGAN: the recipe behind ``dunno gan train``.

:func:`train_gan` runs :func:`dunno.training.fit` with the model's own ``step`` (one
discriminator and one generator update per batch) and training state, so ``resume=True``
continues an interrupted run exactly; ``max_minutes`` stops when the training time is spent
(the epoch under way ends early). On the ring of 8 Gaussians every epoch record gets the
mode coverage of 2500 samples from a fixed latent batch (:func:`ring_metrics`).
``on_epoch_end(model, epoch, record)`` sees the model after every epoch (``dunno gan train``
draws its per-epoch sample grids there).

With ``out``, writes ``model.pt`` (:func:`dunno.checkpoints.load_model` rebuilds generator
and discriminator; the metrics are in its meta) and ``training_state.pt``; tables and
figures are the caller's.

Example::

    from generative import train_gan
    model, history = train_gan("dcgan", "mnist", epochs=20, max_minutes=12, out="runs/dcgan")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dunno.checkpoints import save_checkpoint
from dunno.config import RunConfig
from dunno.data import ArrayDataset, load_dataset, make_loader
from dunno.devices import resolve_device
from dunno.errors import DataError
from dunno.outputs import run_output_dir
from dunno.progress import reporting
from dunno.training import (
    BUDGET_CLOCKS,
    History,
    budget_clock,
    fit,
    seed_everything,
    training_state_file,
)
from dunno.training_state import data_identity
from dunno.validation import check_choice, check_float, check_int, check_seed
from evaluation.metrics import mode_coverage, ring_modes

from . import ADVERSARIAL_MODELS
from ._base import AdversarialModel

__all__ = [
    "RING_SAMPLES",
    "GANConfig",
    "GANHistory",
    "fixed_latents",
    "is_ring",
    "ring_metrics",
    "train_gan",
    "training_data",
]

RING_STD = 0.02  # the component std of dunno.data.toy.ring_of_gaussians
RING_SAMPLES = 2500  # VEEGAN's sample count


@dataclass
class GANConfig(RunConfig):
    """Hyper-parameters of :func:`train_gan` (unknown keys are rejected).

    ``options`` are the model's keyword arguments (``latent_dim``, ``width``, ``hidden``,
    ``lr_g``, ``lr_d``, ``info_weight``, ...). ``max_minutes`` is a training-time budget,
    measured by ``budget_clock`` (``"wall"``, or ``"cpu"``: this process's CPU time,
    :func:`dunno.training.budget_clock`);
    ``train_size`` trains on a seeded random subset.
    """

    model: str = "dcgan"
    data: str = "mnist"
    epochs: int = 5
    batch_size: int = 64
    max_minutes: float | None = None
    budget_clock: str = "wall"
    train_size: int | None = None
    seed: int = 0
    device: str = "auto"
    options: dict[str, Any] | None = None

    def validate(self) -> None:
        check_choice(self.model, "model", self, tuple(ADVERSARIAL_MODELS))
        check_int(self.epochs, "epochs", self, low=1)
        check_int(self.batch_size, "batch_size", self, low=2)
        check_seed(self.seed, self)
        check_int(self.train_size, "train_size", self, low=2, allow_none=True)
        check_float(self.max_minutes, "max_minutes", self, low=0.0, low_open=True,
                    allow_none=True)
        check_choice(self.budget_clock, "budget_clock", self, tuple(BUDGET_CLOCKS))


@dataclass
class GANHistory(History):
    """:class:`dunno.training.History` plus ``metrics`` (minutes, throughput, and mode
    coverage for the ring) and the ``checkpoint`` path."""

    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None


def is_ring(data: str) -> bool:
    """Whether dataset spec ``data`` is the ring of 8 Gaussians."""
    return data.split(":")[0] == "ring-of-gaussians"


def ring_metrics(samples) -> dict[str, Any]:
    """Mode coverage of 2-D ``samples (N, 2)`` on the ring of 8 Gaussians (radius 2, std
    0.02): ``modes_covered`` (of 8), ``high_quality`` (share within 3 std of a mode; VEEGAN
    convention, :func:`evaluation.metrics.mode_coverage`) and ``mode_counts``."""
    cov = mode_coverage(samples, ring_modes(8, 2.0), RING_STD, num_std=3.0)
    return {"modes_covered": cov.modes_covered, "high_quality": cov.high_quality,
            "mode_counts": [int(c) for c in cov.counts]}


def fixed_latents(model: AdversarialModel, n: int, seed: int) -> torch.Tensor:
    """``z (n, latent_dim)`` from a generator seeded by ``seed``: the same batch every epoch
    (and run), so that snapshots ``model.decode(z)`` are comparable."""
    return model.sample_latent(n, torch.Generator().manual_seed(seed))


def training_data(config: GANConfig, root=None) -> ArrayDataset:
    """The training set of ``config``: ``config.data`` (10000 points of the ring unless the
    spec says ``n=``), checked to be images in [0, 1] or vectors, cut to a seeded random
    subset of ``train_size`` examples."""
    data = config.data
    if is_ring(data) and "n=" not in data:
        data = data + (",n=10000" if ":" in data else ":n=10000")
    dataset = load_dataset(data, "train", root)
    if not isinstance(dataset, ArrayDataset) or dataset.info.kind not in ("image", "vector"):
        raise DataError(f"'{config.data}' is not an image or vector dataset; GANs need one.")
    if config.model != "gan" and dataset.info.kind != "image":
        raise DataError(f"{config.model} needs images (N, C, H, W); '{config.data}' holds "
                        f"{dataset.info.kind} data. Use the MLP 'gan' for vector data.")
    if dataset.info.kind == "image" and (dataset.x.min() < 0 or dataset.x.max() > 1):
        raise DataError(f"'{config.data}' has pixel values outside [0, 1].")
    if config.train_size is not None and config.train_size < len(dataset):
        g = torch.Generator().manual_seed(config.seed)
        index = torch.randperm(len(dataset), generator=g)[: config.train_size]
        dataset = dataset.subset(index.sort().values)
    return dataset


def _metrics(model: AdversarialModel, config: GANConfig, history: History,
             budget_s: float | None, wall_minutes: float) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "model": config.model,
        "data": config.data,
        "data_shape": list(model.data_shape),
        "parameters_g": sum(p.numel() for p in model.generator.parameters()),
        "parameters_d": sum(p.numel() for p in model.discriminator.parameters()),
        "epochs": len(history.epochs),
        "steps": history.steps,
        "train_examples": history.examples,
        "train_minutes": history.train_seconds / 60,
        "wall_minutes": wall_minutes,
        "train_images_per_s": history.examples / max(history.train_seconds, 1e-9),
        "budget_exhausted": bool(history.stopped_for_budget or (
            budget_s is not None and history.train_seconds >= budget_s)),
    }
    for key in ("d_loss", "g_loss", "q_loss", "mi_lower_bound"):
        if history.epochs and key in history.epochs[-1]:
            metrics[f"last_{key}"] = history.epochs[-1][key]
    return metrics


def train_gan(
    model_name: str | None = None,
    data: str | None = None,
    epochs: int | None = None,
    *,
    out: str | Path | None = None,
    root=None,
    resume: bool = False,
    progress: bool | None = None,
    on_epoch_end: Callable[[AdversarialModel, int, dict[str, float]], None] | None = None,
    config: GANConfig | None = None,
    **overrides: Any,
) -> tuple[AdversarialModel, GANHistory]:
    """Train ``gan`` / ``dcgan`` / ``infogan`` on ``data``.

    Parameters
    ----------
    model_name, data, epochs :
        Shorthands for the fields of ``config`` (``"dcgan"``, ``"mnist"``, ``10``).
    out : path-like, optional
        Directory for ``model.pt`` and ``training_state.pt`` (nothing is written when None).
    root : path-like, optional
        Data directory (default ``$DUNNO_DATA``, else ``~/.cache/dunno``).
    resume : bool
        Continue from ``out/training_state.pt``.
    progress : bool, optional
        Report the training on stderr (:mod:`dunno.progress`; ``None``: as the enclosing
        call asked, off by default).
    on_epoch_end : callable, optional
        ``on_epoch_end(model, epoch, record)`` after every epoch (e.g. to draw samples).
    config : GANConfig, optional
        All hyper-parameters; ``**overrides`` replace fields.

    Returns
    -------
    (model, history)
        The trained model (eval mode) and a :class:`GANHistory` with per-epoch ``d_loss``,
        ``g_loss`` (and ``q_loss``, ``mi_lower_bound``), ``minutes`` and, for the ring,
        ``modes_covered`` / ``high_quality``.

    ``out`` is checked writable and locked first (:func:`dunno.outputs.run_output_dir`);
    ``resume`` continues only a run with the same configuration up to
    :data:`dunno.training_state.RESUMABLE_KEYS` (``epochs`` and ``max_minutes`` may grow).
    """

    config = GANConfig.resolve(config, overrides, model=model_name, data=data, epochs=epochs)
    config.validate()
    if resume and out is None:
        raise ValueError("resume=True needs an 'out' directory holding training_state.pt.")
    with run_output_dir(out), reporting(progress, owner="train_gan"):
        return _train_gan(config, out, root, resume, on_epoch_end)


def _train_gan(config: GANConfig, out, root, resume: bool,
               on_epoch_end) -> tuple[AdversarialModel, GANHistory]:
    from . import create

    device = resolve_device(config.device)
    seed_everything(config.seed)
    train = training_data(config, root)
    model = create(config.model, tuple(train.info.shape), **dict(config.options or {}))
    model = model.to(device)
    loader = make_loader(train, config.batch_size, shuffle=True, seed=config.seed,
                         drop_last=len(train) >= config.batch_size)
    budget_s = None if config.max_minutes is None else 60.0 * config.max_minutes
    ring = is_ring(config.data) and model.data_shape == (2,)
    ring_z = fixed_latents(model, RING_SAMPLES, config.seed + 2)

    def epoch_end(epoch: int, record: dict[str, float]) -> None:
        record["minutes"] = record["train_seconds"] / 60
        if ring:
            metrics = ring_metrics(model.decode(ring_z).cpu())
            record["modes_covered"] = float(metrics["modes_covered"])
            record["high_quality"] = metrics["high_quality"]
        if on_epoch_end is not None:
            on_epoch_end(model, epoch, record)

    t_start = time.perf_counter()
    out_dir = Path(out) if out is not None else None
    with training_state_file(out_dir, "dunno-gan-") as state_path:
        history = fit(model.step, loader, epochs=config.epochs, state=model.training_state(),
                      checkpoint_path=state_path, resume=resume,
                      run_config={**asdict(config), **data_identity(train),
                                  "model_config": model.config},
                      desc=config.model, on_epoch_end=epoch_end,
                      max_seconds=budget_s,
                      clock=budget_clock(config.budget_clock, config))
    model.eval()
    result = GANHistory(**vars(history))
    result.metrics = _metrics(model, config, history, budget_s,
                              (time.perf_counter() - t_start) / 60)
    if ring:
        result.metrics.update(ring_metrics(model.decode(ring_z).cpu()))
    if out_dir is not None:
        meta = {"trained_on": config.data, "training": asdict(config), "metrics": result.metrics}
        result.checkpoint = save_checkpoint(out_dir / "model.pt", model, arch=model.arch,
                                            config=model.config, meta=meta)
    return model, result
