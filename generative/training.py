"""Train a density model by maximum likelihood: the recipe behind ``dunno density train``.

:func:`train_density` trains an autoregressive model (:mod:`generative.autoregressive`) or a
latent-variable model (:mod:`generative.latent`) with Adam through
:func:`dunno.training.fit` (time budget, exact resume), keeps the epoch with the best
validation NLL, and scores the test split::

    from generative import train_density
    model, history = train_density("nade", "mnist-binary", epochs=20, out="runs/nade")
    print(history.metrics["test_nll_nats"], history.metrics["test_bits_per_dim"])

Binary models train on dynamically binarised images by default and are validated and tested
on a fixed draw (:mod:`generative.pixels`). A VAE is validated by its importance-sampled
log p(x) with ``val_samples_k`` samples and tested with ``samples_k`` (an IWAE bound; see
:mod:`generative.scoring`); an AAE trains with its own three-phase step and reports its
reconstruction cross-entropy instead of an NLL.

With ``out``, :func:`train_density` writes ``model.pt`` (a checkpoint that
:func:`dunno.checkpoints.load_model` rebuilds, with the metrics and history in its meta) and
``training_state.pt`` (to resume); tables and figures are the caller's (``dunno density
train`` writes them).

Anchors (binarised MNIST test NLL, nats): NADE 88.86 (Larochelle & Murray 2011), PixelCNN
81.30, Diagonal BiLSTM (7 layers) 79.20 (van den Oord et al. 2016a); VAE 86.76, IWAE (k=50)
84.78 (Burda et al. 2016, both scored with 5000 samples).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dunno.checkpoints import save_checkpoint
from dunno.config import RunConfig
from dunno.data import make_loader
from dunno.devices import resolve_device
from dunno.outputs import run_output_dir
from dunno.progress import reporting
from dunno.registry import Registry
from dunno.schedules import SCHEDULES, LearningRateSchedule
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
from evaluation.metrics import bits_per_dim, nll_nats
from generative.autoregressive import AUTOREGRESSIVE_MODELS, AutoregressiveImageModel
from generative.fitting import density_optimizers, density_step
from generative.latent import LATENT_MODELS, VAE, AdversarialAutoencoder
from generative.pixels import (
    BINARIZE,
    evaluation_images,
    grey_spec,
    pixel_kind,
    random_subset,
    training_images,
)
from generative.scoring import has_code_length, log_probs, score_images

__all__ = [
    "DENSITY_MODELS",
    "SCHEDULES",
    "DensityConfig",
    "DensityHistory",
    "create_density_model",
    "train_density",
]

#: every model :func:`train_density` trains, by command-line name: the autoregressive and the
#: latent-variable models (a :class:`dunno.registry.Registry` union of both registries, their
#: plugins included)
DENSITY_MODELS: Registry = Registry.union("density model", AUTOREGRESSIVE_MODELS, LATENT_MODELS)


@dataclass
class DensityConfig(RunConfig):
    """Hyper-parameters of :func:`train_density` (unknown keys are rejected).

    ``options`` are the model's keyword arguments (``hidden``, ``layers``, ``pixels``,
    ``gated``, ``order_agnostic``, ...). ``max_minutes`` stops training when the time
    budget is spent (the epoch under way ends early), measured by ``budget_clock``
    (``"wall"``, or ``"cpu"``: this process's CPU time, :func:`dunno.training.budget_clock`);
    ``examples_per_epoch`` makes an "epoch" a seeded random subset of that many training
    images (finer learning curves);
    ``val_size`` scores a fixed random subset of the validation split after each epoch.
    ``schedule="cosine"`` decays the learning rate to 0 over the planned steps (over the
    time budget when there is one). ``test`` scores the test split at the end;
    ``samples_k`` / ``val_samples_k``: importance samples of a VAE's test / validation
    log p(x); ``test_size`` scores a seeded random subset of the test split.
    """

    model: str = "nade"
    data: str = "mnist-binary"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    schedule: str = "constant"
    grad_clip: float | None = None
    binarize: str = "dynamic"
    max_minutes: float | None = None
    budget_clock: str = "wall"
    examples_per_epoch: int | None = None
    val_size: int | None = None
    test: bool = True
    seed: int = 0
    device: str = "auto"
    options: dict[str, Any] | None = None
    samples_k: int = 5000
    val_samples_k: int = 100
    test_size: int | None = None

    def validate(self) -> None:
        if self.model not in DENSITY_MODELS:
            raise ValueError(f"Unknown density model {self.model!r}. Available: "
                             f"{', '.join(DENSITY_MODELS)}.")
        for name in ("epochs", "samples_k", "val_samples_k", "batch_size"):
            check_int(getattr(self, name), name, self, low=1)
        check_seed(self.seed, self)
        for name in ("test_size", "examples_per_epoch", "val_size"):
            check_int(getattr(self, name), name, self, low=1, allow_none=True)
        check_float(self.lr, "lr", self, low=0.0, low_open=True)
        for name in ("max_minutes", "grad_clip"):
            check_float(getattr(self, name), name, self, low=0.0, low_open=True, allow_none=True)
        check_choice(self.binarize, "binarize", self, BINARIZE)
        check_choice(self.schedule, "schedule", self, SCHEDULES)
        check_choice(self.budget_clock, "budget_clock", self, tuple(BUDGET_CLOCKS))


@dataclass
class DensityHistory(History):
    """:class:`dunno.training.History` plus what the run measured: ``metrics`` (test and
    validation NLL in nats and bits/dim, minutes, throughput, ...), the per-image test NLLs
    ``test_scores (N,)`` (nats; ``None`` without ``test``) and the ``checkpoint`` path."""

    metrics: dict[str, Any] = field(default_factory=dict)
    test_scores: np.ndarray | None = None
    checkpoint: Path | None = None


class _EpochSubset:
    """A :class:`~dunno.data.BatchLoader` whose epochs are the first ``examples_per_epoch``
    images of each shuffle (all of them when None)."""

    def __init__(self, loader, examples_per_epoch: int | None):
        self.loader = loader
        self.generator = loader.generator  # checkpointed by fit
        self.examples_per_epoch = examples_per_epoch

    def __len__(self) -> int:
        if self.examples_per_epoch is None:
            return len(self.loader)
        return -(-self.examples_per_epoch // self.loader.batch_size)

    def __iter__(self):
        limit = self.examples_per_epoch
        seen = 0
        for batch in self.loader:
            if limit is not None and seen >= limit:
                return
            if limit is not None and seen + len(batch[0]) > limit:
                batch = (batch[0][: limit - seen], batch[1][: limit - seen])
            seen += len(batch[0])
            yield batch


def create_density_model(name: str, image_shape, **options: Any):
    """Build the model registered as ``name`` in :data:`DENSITY_MODELS` for images of shape
    ``(C, H, W)``; ``options`` are its keyword arguments."""
    return DENSITY_MODELS.create(name, image_shape=image_shape, **options)


def _make_step(model, optimizers, schedule: LearningRateSchedule, grad_clip: float | None,
               device, clock=time.perf_counter):
    """The model kind's one update (:func:`generative.fitting.density_step`), then the
    learning-rate schedule advanced by one step (or by the step's seconds)."""
    update = density_step(model, optimizers, grad_clip=grad_clip, device=device)

    def step(batch):
        t0 = clock()
        result = update(batch)
        schedule.step(clock() - t0 if schedule.unit == "seconds" else 1)
        return result

    return step


def _make_validate(model, val_loader, device, config: DensityConfig):
    """Validation NLL (nats; the AAE's reconstruction cross-entropy) and, for a discrete
    likelihood, bits/dim (:func:`~generative.scoring.has_code_length`)."""

    def validate():
        lp = log_probs(model, val_loader, device, config.val_samples_k, config.seed)
        record = {"val_loss": nll_nats(lp)}
        if not isinstance(model, AdversarialAutoencoder) and has_code_length(model):
            record["val_bpd"] = bits_per_dim(lp, model.num_dims)
        return record

    return validate


def _check_training_images(model, x: torch.Tensor) -> None:
    """Fail before training, with the model's own message, on images it rejects."""
    if isinstance(model, AutoregressiveImageModel):
        model.preprocess(x)
    else:
        model.check_images(x, f"{type(model).__name__} (training images)")


def _binarization(config: DensityConfig, pixels: str) -> str | None:
    if pixels != "binary":
        return None
    train = {"dynamic": "dynamic (a fresh Bernoulli draw per use)", "fixed": "fixed draw",
             "none": "data as given"}[config.binarize]
    if grey_spec(config.data) is not None:
        evaluation = f"the fixed seeded draw of '{config.data}'"
    else:
        evaluation = "fixed_binarize (seeds val 2013, test 2012)"
    return f"train: {train}; val/test: {evaluation}"


def _run_metrics(model, config: DensityConfig, pixels: str, history: History,
                 wall_minutes: float) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "model": config.model,
        "data": config.data,
        "binarization": _binarization(config, pixels),
        "image_shape": list(model.image_shape),
        "num_dims": model.num_dims,
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": len(history.epochs),
        "best_epoch": history.best_epoch,
        "train_minutes": history.train_seconds / 60,
        "wall_minutes": wall_minutes,
        "train_examples": history.examples,
        "train_images_per_s": history.examples / max(history.train_seconds, 1e-9),
        "budget_exhausted": history.stopped_for_budget,
        "val_nll_nats": min(history["val_loss"]) if history["val_loss"] else None,
    }
    if isinstance(model, VAE):
        metrics["log_prob"] = (f"IWAE estimate, {config.samples_k} samples (val: "
                               f"{config.val_samples_k})")
    return metrics


def _test_metrics(model, config: DensityConfig, pixels: str, device,
                  root) -> tuple[np.ndarray, dict[str, Any]]:
    test = random_subset(evaluation_images(config.data, "test", pixels, root),
                         config.test_size, config.seed)
    nll, summary = score_images(model, test, device, batch_size=500,
                                samples_k=config.samples_k, seed=config.seed)
    if isinstance(model, AdversarialAutoencoder):
        metrics = {"test_recon_nats": summary["recon_nats"]}
    else:
        metrics = {"test_nll_nats": summary["nll_nats"], "likelihood": summary["likelihood"]}
        if "bits_per_dim" in summary:  # discrete likelihoods only
            metrics["test_bits_per_dim"] = summary["bits_per_dim"]
    metrics.update({"test_n": summary["n"], "score_images_per_s": summary["images_per_s"],
                    "score_minutes": summary["seconds"] / 60})
    return nll, metrics


def train_density(
    model_name: str | None = None,
    data: str | None = None,
    epochs: int | None = None,
    *,
    out: str | Path | None = None,
    root=None,
    resume: bool = False,
    progress: bool | None = None,
    on_epoch_end: Callable[[Any, int, dict[str, float]], None] | None = None,
    config: DensityConfig | None = None,
    **overrides: Any,
) -> tuple[AutoregressiveImageModel | VAE | AdversarialAutoencoder, DensityHistory]:
    """Train a density model (:data:`DENSITY_MODELS`) on ``data`` by maximum likelihood with
    Adam, selecting the epoch with the best validation NLL, and score it on the test split.

    Parameters
    ----------
    model_name, data, epochs :
        ``"nade" | "pixelcnn" | "row-lstm" | "diagonal-bilstm" | "vae" | "aae"``, a dataset
        spec (``"mnist-binary"``, ``"mnist"``, ``"digits"``, ...) and the number of epochs;
        shorthands for the fields of ``config``.
    out : path-like, optional
        Directory for ``model.pt`` and ``training_state.pt`` (nothing is written when None).
    root : path-like, optional
        Data directory (default ``$DUNNO_DATA``, else ``~/.cache/dunno``).
    resume : bool
        Continue from ``out/training_state.pt`` -- only a run with the same configuration up
        to :data:`dunno.training_state.RESUMABLE_KEYS` (else a CheckpointError naming the
        differing keys); more ``epochs`` or a larger ``max_minutes`` re-plan a cosine
        schedule from the current learning rate (:mod:`dunno.schedules`). ``out`` is
        checked writable and locked first (:func:`dunno.outputs.run_output_dir`).
    progress : bool, optional
        Report the training, the validation and the test scoring on stderr
        (:mod:`dunno.progress`; ``None``: as the enclosing call asked, off by default).
    on_epoch_end : callable, optional
        ``on_epoch_end(model, epoch, record)`` after every epoch, with the epoch record
        (``loss``, ``val_loss``, ``val_bpd``, ``minutes``, ``lr``, ...), e.g. a
        :class:`dunno.runlog.RunLog` writing ``history.csv`` as the run goes.
    config : DensityConfig, optional
        All hyper-parameters; ``**overrides`` replace fields (``lr=3e-3``,
        ``options={"hidden": 250}``, ``max_minutes=30``, ...).

    Returns
    -------
    (model, history)
        The trained model (eval mode, best validation epoch) and a :class:`DensityHistory`
        with per-epoch ``loss`` (training NLL, nats), ``val_loss`` (validation NLL, nats),
        ``val_bpd``, ``minutes`` (training minutes so far), ``examples``, the final
        ``metrics`` and the per-image ``test_scores``.
    """
    config = DensityConfig.resolve(config, overrides, model=model_name, data=data, epochs=epochs)
    config.validate()
    if resume and out is None:
        raise ValueError("resume=True needs an 'out' directory holding training_state.pt.")
    with run_output_dir(out), reporting(progress, owner="train_density"):
        return _train_density(config, out, root, resume, on_epoch_end)


def _train_density(config: DensityConfig, out, root, resume: bool, on_epoch_end):
    device = resolve_device(config.device)
    seed_everything(config.seed)
    options = dict(config.options or {})
    pixels = pixel_kind(config.model, options)

    train, transform = training_images(config.data, pixels, config.binarize, config.seed, root)
    val = random_subset(evaluation_images(config.data, "val", pixels, root), config.val_size,
                        config.seed)
    model = create_density_model(config.model, tuple(train.info.shape), **options).to(device)
    if config.binarize == "none" and pixels == "binary":
        _check_training_images(model, train.x[:1000])

    loader = _EpochSubset(make_loader(train, config.batch_size, shuffle=True, seed=config.seed,
                                      transform=transform), config.examples_per_epoch)
    budget_s = None if config.max_minutes is None else 60.0 * config.max_minutes
    clock = budget_clock(config.budget_clock, config)
    optimizers = density_optimizers(model, config.lr)
    schedule = LearningRateSchedule(  # re-planned when a resume changes epochs or budget
        list(optimizers.values()), config.epochs * len(loader) if budget_s is None else budget_s,
        config.schedule, "steps" if budget_s is None else "seconds")
    state = {"model": model, **optimizers, "schedule": schedule}
    if transform is not None:  # the dynamic binarisation's generator: resume exactly
        state["binarize_rng"] = transform.generator

    def epoch_end(epoch: int, record: dict[str, float]) -> None:
        record["minutes"] = record["train_seconds"] / 60
        if on_epoch_end is not None:
            on_epoch_end(model, epoch, record)

    out_dir = Path(out) if out is not None else None
    t_start = time.perf_counter()
    with training_state_file(out_dir, "dunno-density-") as state_path:
        history = fit(_make_step(model, optimizers, schedule, config.grad_clip, device, clock),
                      loader,
                      epochs=config.epochs, state=state,
                      validate=_make_validate(model, make_loader(val, 500), device, config),
                      checkpoint_path=state_path, resume=resume,
                      run_config={**asdict(config), **data_identity(train),
                                  "model_config": model.config},
                      desc=config.model, on_epoch_end=epoch_end,
                      max_seconds=budget_s, clock=clock)
    model.eval()
    result = DensityHistory(**vars(history))
    result.metrics = _run_metrics(model, config, pixels, history,
                                  (time.perf_counter() - t_start) / 60)
    if config.test:
        result.test_scores, test_metrics = _test_metrics(model, config, pixels, device, root)
        result.metrics.update(test_metrics)
    if out_dir is not None:
        meta = {"trained_on": config.data, "training": asdict(config),
                "metrics": result.metrics, "history": history.epochs}
        result.checkpoint = save_checkpoint(out_dir / "model.pt", model, arch=model.arch,
                                            config=model.config, meta=meta)
    return model, result
