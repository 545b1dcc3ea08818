"""Density estimation benchmark: train an autoregressive or latent-variable model, score it,
sample it.

The runner behind ``dunno density train | score | sample``::

    from evaluation.benchmarks.density import score_density, train_density
    model, history = train_density("nade", "mnist-binary", epochs=20, out="runs/nade")
    nll, summary = score_density(model, "mnist-binary", split="test")
    print(summary["nll_nats"], summary["bits_per_dim"])

**Pixels and binarisation.** Binary models (NADE; PixelCNN / PixelRNN with
``pixels="binary"``) see 0/1 images:

* evaluation splits (``val``, ``test``) are a *fixed* draw: for an ``X-binary`` dataset
  (``mnist-binary``, ``fashion-mnist-binary``) its own seeded Bernoulli draw (see
  :mod:`dunno.data.images`: seed 2012 for the test file), for a grey dataset (``digits``,
  ``mnist``) the draw :func:`fixed_binarize` with seed ``2011`` (train), ``2013`` (val),
  ``2012`` (test);
* training (``binarize="dynamic"``, the default) draws a fresh Bernoulli image every time an
  image is seen (:class:`dunno.data.DynamicBinarize`), from the grey images (``mnist`` for
  ``mnist-binary``); ``binarize="fixed"`` trains on the fixed draw instead.

``score_density`` on a grey dataset with a binary model needs ``binarize="fixed"`` (the
model rejects grey values otherwise). 8-bit models (``pixels="8bit"``) see integer pixel
values: the [0, 1] intensities of ``mnist`` / ``fashion-mnist`` times 255 (checked to be
whole numbers; ``digits`` has 17 levels and is refused).

**Outputs** (``out``): ``model.pt`` (checkpoint, :func:`dunno.checkpoints.load_model`),
``training_state.pt`` (resumable), ``history.json`` / ``learning_curve.csv`` /
``learning_curve.png`` (train and validation NLL in nats per epoch), ``summary.json`` (test
NLL in nats and bits/dim, minutes, throughput in images/s); ``score_density`` writes the
per-example NLLs to ``scores.npy`` and ``score.json``; ``sample_grid`` a PNG.

**Latent-variable models** (:mod:`generative.latent`): ``vae`` is scored by its
importance-sampled log p(x) with ``samples_k`` samples (an IWAE bound, 5000 by
default as in Burda et al. 2016; ``val_samples_k`` during training), drawn from a generator
seeded with ``seed``; ``test_size`` scores a seeded random subset of the test split (5000
samples per image are costly on a CPU). A VAE with ``likelihood="continuous-bernoulli"``
sees the grey images unchanged (pixels ``"grey"``). ``aae`` (adversarial autoencoder) has no
likelihood: it trains with its own three-phase step and reports the per-image reconstruction
cross-entropy (``recon_nats``; ``val_loss`` is that on the validation split) instead of an NLL.

Anchors (binarised MNIST test NLL, nats): NADE 88.86 (Larochelle & Murray 2011), PixelCNN
81.30, Diagonal BiLSTM (7 layers) 79.20 (van den Oord et al. 2016a); VAE 86.76, IWAE (k=50)
84.78 (Burda et al. 2016, both scored with 5000 samples).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dunno.checkpoints import safe_load, save_checkpoint
from dunno.config import RunConfig, parse_options
from dunno.data import ArrayDataset, DynamicBinarize, load_dataset, make_loader
from dunno.data.registry import parse_spec
from dunno.devices import resolve_device
from dunno.errors import DataError
from dunno.reporting import format_table, write_csv, write_json
from dunno.training import History, fit, seed_everything, training_state_file
from evaluation.metrics import bits_per_dim, nll_nats
from generative.autoregressive import (
    AUTOREGRESSIVE_MODELS,
    AutoregressiveImageModel,
    create,
)
from generative.latent import LATENT_MODELS, VAE, AdversarialAutoencoder
from generative.latent import create as create_latent

__all__ = [
    "DensityConfig",
    "DensityHistory",
    "fixed_binarize",
    "load_density_model",
    "main",
    "prepare_images",
    "sample_grid",
    "score_density",
    "train_density",
]

BINARIZE = ("dynamic", "fixed", "none")
FIXED_SEEDS = {"train": 2011, "train-full": 2011, "val": 2013, "test": 2012}
SCHEDULES = ("constant", "cosine")
#: every model the runner trains
DENSITY_MODELS = {**AUTOREGRESSIVE_MODELS, **LATENT_MODELS}
_MODEL_TYPES = (AutoregressiveImageModel, VAE, AdversarialAutoencoder)


# ----------------------------------------------------------------------------- data
def fixed_binarize(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed Bernoulli draw ``x_b = 1[U < x]`` with a torch generator seeded by ``seed``
    (the same recipe as ``mnist-binary``). Values already 0/1 are unchanged."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(x.shape, generator=g) < x).to(torch.float32)


def _grey_spec(data: str) -> str | None:
    """``"mnist-binary:rotate=90" -> "mnist:rotate=90"``; ``None`` for a non-binary spec."""
    base, _, rest = data.partition(":")
    if not base.endswith("-binary"):
        return None
    return base[: -len("-binary")] + (":" + rest if rest else "")


def _with_x(dataset: ArrayDataset, x: torch.Tensor) -> ArrayDataset:
    return ArrayDataset(x.contiguous(), dataset.y, dataset.info)


def _to_8bit(x: torch.Tensor, name: str) -> torch.Tensor:
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
    integers 0..255.
    """
    if dataset.info.kind != "image" or len(dataset.info.shape) != 3:
        raise DataError(
            f"'{dataset.info.name}' is not an image dataset (N, C, H, W); autoregressive "
            "image models need one."
        )
    if pixels == "grey":  # a continuous-Bernoulli VAE / grey AAE: the values as they are
        return dataset
    if pixels == "8bit":
        return _with_x(dataset, _to_8bit(dataset.x, dataset.info.name))
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


def _eval_images(data: str, split: str, pixels: str, root) -> ArrayDataset:
    """Validation/test images: an ``X-binary`` set's own draw, else the fixed draw."""
    dataset = load_dataset(data, split, root)
    if pixels == "binary" and _grey_spec(data) is not None:
        return prepare_images(dataset, pixels, split, None)
    return prepare_images(dataset, pixels, split, "fixed")


def _train_images(data: str, pixels: str, binarize: str, seed: int, root, split: str = "train"):
    """Training images and the loader transform (dynamic binarisation) for them."""
    if pixels in ("8bit", "grey"):
        return prepare_images(load_dataset(data, split, root), pixels, split), None
    grey = _grey_spec(data)
    if binarize == "dynamic":
        dataset = load_dataset(grey or data, split, root)
        return dataset, DynamicBinarize(seed)
    if binarize == "fixed":
        return _eval_images(data, split, pixels, root), None
    return load_dataset(data, split, root), None


def _subset(dataset: ArrayDataset, size: int | None, seed: int) -> ArrayDataset:
    if size is None or size >= len(dataset):
        return dataset
    index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size]
    return dataset.subset(index.sort().values)


# ----------------------------------------------------------------------------- config
@dataclass
class DensityConfig(RunConfig):
    """Hyper-parameters of :func:`train_density` (unknown keys are rejected).

    ``options`` are the model's keyword arguments (``hidden``, ``layers``, ``pixels``,
    ``gated``, ``order_agnostic``, ...). ``max_minutes`` stops training when the time
    budget is spent (the epoch under way ends early); ``examples_per_epoch`` makes an
    "epoch" a seeded random subset of that many training images (finer learning curves);
    ``val_size`` scores a fixed random subset of the validation split after each epoch.
    ``schedule="cosine"`` decays the learning rate to 0 over the planned steps (over the
    time budget when there is one). ``samples_k`` / ``val_samples_k``: importance samples of
    a VAE's test / validation log p(x); ``test_size`` scores a seeded random subset
    of the test split.
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
    examples_per_epoch: int | None = None
    val_size: int | None = None
    test: bool = True
    samples: int = 0
    seed: int = 0
    device: str = "auto"
    options: dict[str, Any] | None = None
    samples_k: int = 5000
    val_samples_k: int = 100
    test_size: int | None = None

    def validate(self) -> None:
        check_int = self._check_int
        if self.model not in DENSITY_MODELS:
            raise ValueError(f"Unknown density model {self.model!r}. Available: "
                             f"{', '.join(DENSITY_MODELS)}.")
        check_int("epochs", 1)
        check_int("samples_k", 1)
        check_int("val_samples_k", 1)
        check_int("test_size", 1, optional=True)
        check_int("batch_size", 1)
        check_int("samples", 0)
        check_int("seed", 0)
        check_int("examples_per_epoch", 1, optional=True)
        check_int("val_size", 1, optional=True)
        for name in ("lr", "max_minutes", "grad_clip"):
            value = getattr(self, name)
            if name != "lr" and value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or not (
                math.isfinite(value) and value > 0
            ):
                raise ValueError(f"The '{name}' parameter of DensityConfig must be a number "
                                 f"> 0. Got {value!r} instead.")
        if self.binarize not in BINARIZE:
            raise ValueError(f"The 'binarize' parameter of DensityConfig must be one of "
                             f"{BINARIZE}. Got {self.binarize!r} instead.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"The 'schedule' parameter of DensityConfig must be one of "
                             f"{SCHEDULES}. Got {self.schedule!r} instead.")


@dataclass
class DensityHistory(History):
    """:class:`dunno.training.History` plus what the run measured: ``metrics`` (test and
    validation NLL in nats and bits/dim, minutes, throughput), the ``checkpoint`` path and
    the written ``files``."""

    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    files: list[Path] = field(default_factory=list)


class _Progress:
    """Steps and training seconds so far (checkpointed with the training state) and the
    learning-rate schedule that depends on them."""

    def __init__(self, optimizer, lr: float, schedule: str, total_steps: int,
                 budget_s: float | None):
        self.optimizer, self.lr, self.schedule = optimizer, lr, schedule
        self.total_steps, self.budget_s = total_steps, budget_s
        self.steps, self.seconds, self.examples = 0, 0.0, 0

    def fraction(self) -> float:
        if self.budget_s is not None:
            return min(1.0, self.seconds / self.budget_s)
        return min(1.0, self.steps / max(1, self.total_steps))

    def set_lr(self) -> None:
        factor = 1.0
        if self.schedule == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * self.fraction()))
        optimizers = self.optimizer if isinstance(self.optimizer, list) else [self.optimizer]
        for optimizer in optimizers:  # several for the adversarial autoencoder
            for group in optimizer.param_groups:
                group.setdefault("base_lr", group["lr"])
                group["lr"] = group["base_lr"] * factor

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": self.seconds, "examples": self.examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.seconds = int(state["steps"]), float(state["seconds"])
        self.examples = int(state["examples"])


class _EpochLoader:
    """Wraps a :class:`~dunno.data.BatchLoader`: optionally ``examples_per_epoch`` random
    images per epoch, and no new batch once the time ``deadline`` (``perf_counter``) has
    passed (after at least one batch)."""

    def __init__(self, loader, examples_per_epoch: int | None):
        self.loader = loader
        self.generator = loader.generator  # checkpointed by fit
        self.examples_per_epoch = examples_per_epoch
        self.deadline: float | None = None
        self.truncated = False  # the last epoch ended at the deadline

    def __len__(self) -> int:
        if self.examples_per_epoch is None:
            return len(self.loader)
        return -(-self.examples_per_epoch // self.loader.batch_size)

    def __iter__(self):
        limit = self.examples_per_epoch
        seen = 0
        self.truncated = False
        for batch in self.loader:
            if seen and self.deadline is not None and time.perf_counter() >= self.deadline:
                self.truncated = True
                return
            if limit is not None and seen >= limit:
                return
            if limit is not None and seen + len(batch[0]) > limit:
                batch = (batch[0][: limit - seen], batch[1][: limit - seen])
            seen += len(batch[0])
            yield batch


# ----------------------------------------------------------------------------- training
def train_density(
    model_name: str | None = None,
    data: str | None = None,
    epochs: int | None = None,
    *,
    out: str | Path | None = None,
    root=None,
    resume: bool = False,
    quiet: bool | None = None,
    config: DensityConfig | None = None,
    **overrides: Any,
) -> tuple[AutoregressiveImageModel, DensityHistory]:
    """Train an autoregressive model (:data:`~generative.autoregressive.AUTOREGRESSIVE_MODELS`)
    on ``data`` by maximum likelihood with Adam, selecting the epoch with the best
    validation NLL, and score it on the test split.

    Parameters
    ----------
    model_name, data, epochs :
        ``"nade" | "pixelcnn" | "row-lstm" | "diagonal-bilstm"``, a dataset spec
        (``"mnist-binary"``, ``"mnist"``, ``"digits"``, ...) and the number of epochs;
        shorthands for the fields of ``config``.
    out : path-like, optional
        Directory for the checkpoint, training state, learning curves and summary.
    root : path-like, optional
        Data directory (default ``$DUNNO_DATA``, else ``~/.cache/dunno``).
    resume : bool
        Continue from ``out/training_state.pt``.
    quiet : bool, optional
        No progress bar or printing (default: quiet unless stderr is a terminal).
    config : DensityConfig, optional
        All hyper-parameters; ``**overrides`` replace fields (``lr=3e-3``,
        ``options={"hidden": 250}``, ``max_minutes=30``, ...).

    Returns
    -------
    (model, history)
        The trained model (eval mode, best validation epoch) and a :class:`DensityHistory`
        with per-epoch ``loss`` (training NLL, nats), ``val_loss`` (validation NLL, nats),
        ``val_bpd``, ``minutes``, ``examples`` and the final ``metrics``.
    """
    config = DensityConfig.resolve(config, overrides, model=model_name, data=data, epochs=epochs)
    config.validate()
    device = resolve_device(config.device)
    seed_everything(config.seed)
    options = dict(config.options or {})
    pixels = _pixels_of(config.model, options)

    train, transform = _train_images(config.data, pixels, config.binarize, config.seed, root)
    val = _subset(_eval_images(config.data, "val", pixels, root), config.val_size, config.seed)
    image_shape = tuple(train.info.shape)
    if config.model in LATENT_MODELS:
        model = create_latent(config.model, image_shape, **options).to(device)
    else:
        model = create(config.model, image_shape, **options).to(device)
    if config.binarize == "none" and pixels == "binary":
        _check_input(model, train.x[:1000])  # fail now, with the model's message

    base_loader = make_loader(train, config.batch_size, shuffle=True, seed=config.seed,
                              transform=transform)
    loader = _EpochLoader(base_loader, config.examples_per_epoch)
    budget_s = None if config.max_minutes is None else 60.0 * config.max_minutes
    if isinstance(model, AdversarialAutoencoder):
        optimizers = model.configure_optimizers(lr=config.lr)
        optimizer = list(optimizers.values())
        state = {"model": model, **{f"optimizer_{k}": v for k, v in optimizers.items()}}
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        state = {"model": model, "optimizer": optimizer}
    progress = _Progress(optimizer, config.lr, config.schedule,
                         config.epochs * len(loader), budget_s)
    state["progress"] = progress
    if transform is not None:  # the dynamic binarisation's generator: resume exactly
        state["binarize_rng"] = transform.generator

    def step(batch):
        t0 = time.perf_counter()
        x = batch[0].to(device)
        progress.set_lr()
        if isinstance(model, AdversarialAutoencoder):  # its own three-phase step
            losses = model.step((x, batch[1]))
            progress.steps += 1
            progress.examples += len(x)
            progress.seconds += time.perf_counter() - t0
            return {"loss": losses["recon_loss"], **losses}
        loss = model.loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        progress.steps += 1
        progress.examples += len(x)
        progress.seconds += time.perf_counter() - t0
        return {"loss": loss.detach()}

    val_loader = make_loader(val, 500)

    def validate():
        lp = _log_probs(model, val_loader, device, config.val_samples_k, config.seed)
        record = {"val_loss": nll_nats(lp), "minutes": progress.seconds / 60,
                  "examples": float(progress.examples)}
        if not isinstance(model, AdversarialAutoencoder):
            record["val_bpd"] = bits_per_dim(lp, model.num_dims)
        return record

    out_dir = Path(out) if out is not None else None
    t_start = time.perf_counter()
    with training_state_file(out_dir, "dunno-density-") as state_path:
        if budget_s is None:
            history = fit(step, loader, epochs=config.epochs, state=state, validate=validate,
                          checkpoint_path=state_path, resume=resume, quiet=quiet,
                          desc=config.model)
        else:
            # one epoch per call, resuming from the training state, until the time budget
            # (training seconds, excluding validation) is spent
            done = 0
            if resume and state_path.exists():
                saved = safe_load(state_path)
                done = int(saved["epoch"])
                progress.load_state_dict(saved["states"]["progress"])
            history = History()
            while done < config.epochs and (progress.seconds < budget_s or done == 0):
                loader.deadline = time.perf_counter() + (budget_s - progress.seconds)
                history = fit(step, loader, epochs=done + 1, state=state, validate=validate,
                              checkpoint_path=state_path, resume=resume or done > 0,
                              quiet=quiet, desc=config.model)
                done += 1
                if loader.truncated:  # the budget ran out during this epoch
                    break
    wall_minutes = (time.perf_counter() - t_start) / 60

    result = DensityHistory(epochs=history.epochs, best_epoch=history.best_epoch,
                            stopped_early=history.stopped_early)
    model.eval()
    metrics: dict[str, Any] = {
        "model": config.model,
        "data": config.data,
        "binarization": _binarization(config, pixels),
        "image_shape": list(image_shape),
        "num_dims": model.num_dims,
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": len(history.epochs),
        "best_epoch": history.best_epoch,
        "train_minutes": progress.seconds / 60,
        "wall_minutes": wall_minutes,
        "train_examples": progress.examples,
        "train_images_per_s": progress.examples / max(progress.seconds, 1e-9),
        "val_nll_nats": min(history["val_loss"]) if history["val_loss"] else None,
    }
    if isinstance(model, VAE):
        metrics["log_prob"] = f"IWAE estimate, {config.samples_k} samples (val: " \
            f"{config.val_samples_k})"
    if config.test:
        test = _subset(_eval_images(config.data, "test", pixels, root), config.test_size,
                       config.seed)
        nll, summary = _score_prepared(model, test, device, batch_size=500,
                                       samples_k=config.samples_k, seed=config.seed)
        if isinstance(model, AdversarialAutoencoder):
            metrics["test_recon_nats"] = summary["recon_nats"]
        else:
            metrics.update({"test_nll_nats": summary["nll_nats"],
                            "test_bits_per_dim": summary["bits_per_dim"]})
        metrics.update({"test_n": summary["n"],
                        "score_images_per_s": summary["images_per_s"],
                        "score_minutes": summary["seconds"] / 60})
    result.metrics = metrics
    if out_dir is not None:
        meta = {"trained_on": config.data, "training": asdict(config), "metrics": metrics,
                "history": history.epochs}
        result.checkpoint = save_checkpoint(out_dir / "model.pt", model, arch=model.arch,
                                            config=model.config, meta=meta)
        result.files = [result.checkpoint, *_write_training_outputs(result, config, out_dir)]
        if config.test:
            np.save(out_dir / "test_scores.npy", nll)
            result.files.append(out_dir / "test_scores.npy")
        if config.samples:
            sample_grid(model, config.samples, out_dir / "samples.png", seed=config.seed)
            result.files.append(out_dir / "samples.png")
    if not quiet:
        _print_summary(metrics)
    return model, result


def _pixels_of(model_name: str, options: dict[str, Any]) -> str:
    """The pixel kind a model built with ``options`` takes: ``"binary"``, ``"8bit"`` or
    ``"grey"`` (values in [0, 1], for a continuous-Bernoulli VAE or a grey AAE)."""
    if model_name == "vae":
        return "grey" if options.get("likelihood") == "continuous-bernoulli" else "binary"
    return options.get("pixels", "binary")


def _check_input(model, x: torch.Tensor) -> None:
    if isinstance(model, AutoregressiveImageModel):
        model.preprocess(x)
    else:
        model._check(x, f"{type(model).__name__} (training images)")


def _binarization(config: DensityConfig, pixels: str) -> str | None:
    if pixels != "binary":
        return None
    train = {"dynamic": "dynamic (a fresh Bernoulli draw per use)", "fixed": "fixed draw",
             "none": "data as given"}[config.binarize]
    if _grey_spec(config.data) is not None:
        evaluation = f"the fixed seeded draw of '{config.data}'"
    else:
        evaluation = "fixed_binarize (seeds val 2013, test 2012)"
    return f"train: {train}; val/test: {evaluation}"


def _print_summary(metrics: dict[str, Any]) -> None:
    line = (f"{metrics['model']} on {metrics['data']}: {metrics['epochs']} epochs in "
            f"{metrics['train_minutes']:.1f} min ({metrics['train_images_per_s']:.0f} images/s)")
    if metrics.get("test_nll_nats") is not None:
        line += (f"; test NLL {metrics['test_nll_nats']:.2f} nats "
                 f"({metrics['test_bits_per_dim']:.4f} bits/dim)")
    if metrics.get("test_recon_nats") is not None:
        line += f"; test reconstruction cross-entropy {metrics['test_recon_nats']:.2f} nats"
    print(line)


def _write_training_outputs(result: DensityHistory, config: DensityConfig,
                            out: Path) -> list[Path]:
    rows = [{k: e.get(k) for k in ("epoch", "loss", "val_loss", "val_bpd", "minutes",
                                    "examples", "seconds")} for e in result.epochs]
    files = [
        write_json({"config": asdict(config), **result.as_dict(), "metrics": result.metrics},
                   out / "history.json"),
        write_csv(rows, out / "learning_curve.csv"),
        write_json({"config": asdict(config), "metrics": result.metrics},
                   out / "summary.json"),
    ]
    files.append(learning_curve_plot(result.epochs, out / "learning_curve.png",
                                     title=f"{config.model} on {config.data}"))
    return files


def learning_curve_plot(records: Sequence[dict[str, float]], path: str | Path,
                        title: str = "") -> Path:
    """Training and validation NLL (nats) against training minutes, saved as PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    minutes = [r.get("minutes", r["epoch"]) for r in records]
    ax.plot(minutes, [r["loss"] for r in records], "o-", label="train NLL (epoch mean)")
    if any("val_loss" in r for r in records):
        ax.plot(minutes, [r.get("val_loss", float("nan")) for r in records], "s-",
                label="validation NLL")
        best = min(r["val_loss"] for r in records if "val_loss" in r)
        ax.axhline(best, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{title}  (best val {best:.2f} nats)" if title else f"best {best:.2f}")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("NLL (nats / image)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# ----------------------------------------------------------------------------- scoring
@torch.no_grad()
def _log_probs(model, loader, device, samples_k: int = 5000, seed: int = 0) -> np.ndarray:
    """Per-image scores ``(N,)``: exact log-likelihoods (autoregressive), IWAE estimates with
    ``samples_k`` samples from a generator seeded by ``seed`` (VAE), minus the
    reconstruction cross-entropy (AAE)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    for batch in loader:
        x = batch[0].to(device)
        if isinstance(model, VAE):
            lp = model.log_prob(x, samples_k, generator=generator)
        elif isinstance(model, AdversarialAutoencoder):
            lp = -model.recon_error(x)
        else:
            lp = model.log_prob(x)
        out.append(lp.double().cpu())
    model.train(was_training)
    return torch.cat(out).numpy()  # (N,)


def _score_prepared(model, dataset: ArrayDataset, device, batch_size: int,
                    samples_k: int = 5000, seed: int = 0):
    c, h, w = model.image_shape
    shape = tuple(dataset.info.shape)
    if shape != (c, h, w):
        raise ValueError(
            f"The model was trained on {c}x{h}x{w} images but '{dataset.info.name}' has "
            f"{'x'.join(map(str, shape))} images; a checkpoint only scores images of the size "
            "it was trained on."
        )
    t0 = time.perf_counter()
    lp = _log_probs(model, make_loader(dataset, batch_size), device, samples_k, seed)
    seconds = time.perf_counter() - t0
    summary = {"n": len(lp), "num_dims": model.num_dims}
    if isinstance(model, AdversarialAutoencoder):
        summary["recon_nats"] = nll_nats(lp)
    else:
        summary.update({"nll_nats": nll_nats(lp),
                        "bits_per_dim": bits_per_dim(lp, model.num_dims)})
    if isinstance(model, VAE):
        summary["samples_k"] = samples_k
    summary.update({"seconds": seconds, "images_per_s": len(lp) / max(seconds, 1e-9)})
    return -lp, summary


def score_density(
    model: AutoregressiveImageModel,
    data: str,
    split: str = "test",
    *,
    binarize: str | None = None,
    batch_size: int = 500,
    device: str | torch.device = "auto",
    root=None,
    out: str | Path | None = None,
    quiet: bool = True,
    samples_k: int = 5000,
    size: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Negative log-likelihood of every image of ``split`` of ``data``: exact for the
    autoregressive models, the IWAE estimate with ``samples_k`` importance samples (generator
    seeded by ``seed``) for a VAE; an AAE gets its reconstruction cross-entropy
    (``recon_nats``) instead. ``size`` scores a seeded random subset of that many images.

    Parameters
    ----------
    model : AutoregressiveImageModel
        E.g. from :func:`load_density_model`; moved to ``device``, weights unchanged.
    data, split : str
        Dataset spec and split (``"test"``, ``"val"``, ``"train"``).
    binarize : {None, "fixed"}
        For a binary model on grey data: ``"fixed"`` applies :func:`fixed_binarize` (seed
        :data:`FIXED_SEEDS` ``[split]``); ``None`` passes the data as is (an ``X-binary``
        set), and grey values raise the model's error.
    out : path-like, optional
        Directory for ``scores.npy`` (per-image NLL, nats, float64) and ``score.json``.

    Returns
    -------
    (nll, summary)
        ``nll (N,)`` per-image NLL in nats (higher = less likely, usable as an OOD score)
        and ``{"nll_nats", "bits_per_dim", "n", "num_dims", "images_per_s", ...}``.
    """
    if not isinstance(model, _MODEL_TYPES):
        raise TypeError(f"score_density needs a model from generative.autoregressive or "
                        f"generative.latent; got {type(model).__name__}.")
    for name, value in (("samples_k", samples_k), ("size", size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise ValueError(f"The '{name}' parameter of score_density must be an int >= 1. "
                             f"Got {value!r} instead.")
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
    dataset = _subset(prepare_images(dataset, model.pixels, split, binarize), size, seed)
    nll, summary = _score_prepared(model, dataset, device, batch_size, samples_k, seed)
    summary.update({"data": data, "split": split, "model": type(model).__name__,
                    "binarize": binarize if model.pixels == "binary" else None})
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "scores.npy", nll)
        write_json(summary, out / "score.json")
    if not quiet:
        keys = ("data", "split", "n", "nll_nats", "bits_per_dim", "recon_nats", "samples_k",
                "images_per_s")
        print(format_table([{k: summary[k] for k in keys if k in summary}]))
    return nll, summary


# ----------------------------------------------------------------------------- sampling
def sample_grid(
    model: AutoregressiveImageModel,
    n: int,
    path: str | Path | None = None,
    *,
    seed: int = 0,
    ncols: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Draw ``n`` images by ancestral sampling (seeded) and save them as a PNG grid.

    Returns the samples ``(n, C, H, W)`` on the CPU (0/1 or 0..255 values).
    """
    if device is not None:
        model = model.to(resolve_device(device))
    generator = torch.Generator().manual_seed(seed)
    samples = model.sample(n, generator=generator).cpu()
    if path is not None:
        from evaluation.plots import image_grid

        value_range = (0.0, 255.0) if model.pixels == "8bit" else (0.0, 1.0)
        image_grid(samples, ncols=ncols or max(1, math.ceil(math.sqrt(n))),
                   value_range=value_range, path=path,
                   title=f"{type(model).__name__} samples")
    return samples


def load_density_model(path: str | Path, device: str | torch.device = "cpu"):
    """Load a checkpoint written by :func:`train_density` (never executes code)."""
    from dunno.checkpoints import load_model

    model = load_model(path, device=resolve_device(device))
    if not isinstance(model, _MODEL_TYPES):
        raise ValueError(f"{str(path)!r} holds a {type(model).__name__}, not a density "
                         "model of generative.autoregressive or generative.latent.")
    return model


# ----------------------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``train | score | sample`` sub-commands (``dunno density ...`` mirrors them)."""
    parser = parser or argparse.ArgumentParser(
        prog="python -m evaluation.benchmarks.density", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model; writes model.pt and learning curves")
    t.add_argument("model", choices=sorted(DENSITY_MODELS))
    t.add_argument("--data", required=True, help="dataset spec, e.g. mnist-binary or digits")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--schedule", choices=SCHEDULES, default="constant")
    t.add_argument("--grad-clip", type=float, default=None)
    t.add_argument("--binarize", choices=BINARIZE, default="dynamic",
                   help="training images of binary models (default: dynamic)")
    t.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    t.add_argument("--examples-per-epoch", type=int, default=None)
    t.add_argument("--val-size", type=int, default=None)
    t.add_argument("--samples", type=int, default=0, help="write a grid of N samples")
    t.add_argument("--no-test", action="store_true", help="skip scoring the test split")
    t.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, repeatable (hidden=500, layers=7, pixels=8bit, "
                        "gated=true, order_agnostic=true; VAE: latent_dim=50, "
                        "hidden=[512,512], net=conv, objective=iwae, particles=50, "
                        "warmup_steps=10000, likelihood=continuous-bernoulli; AAE: "
                        "prior=mixture, num_classes=10)")
    t.add_argument("--samples-k", type=int, default=5000,
                   help="VAE: importance samples of the test log p(x) (IWAE estimate)")
    t.add_argument("--val-samples-k", type=int, default=100,
                   help="VAE: importance samples of the validation log p(x)")
    t.add_argument("--test-size", type=int, default=None,
                   help="score a seeded random subset of this many test images")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    s = sub.add_parser("score", help="per-image NLL (nats) and bits/dim of a checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="test")
    s.add_argument("--binarize", choices=("fixed",), default=None,
                   help="fixed Bernoulli draw of grey data for binary models")
    s.add_argument("--batch-size", type=int, default=500)
    s.add_argument("--samples-k", type=int, default=5000,
                   help="VAE: importance samples per image (IWAE estimate of log p(x))")
    s.add_argument("--size", type=int, default=None,
                   help="score a seeded random subset of this many images")
    s.add_argument("--seed", type=int, default=0)
    g = sub.add_parser("sample", help="a PNG grid of samples from a checkpoint")
    g.add_argument("--checkpoint", required=True)
    g.add_argument("-n", "--num", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--path", default=None, help="PNG file (default OUT/samples.png)")
    for p in (t, s, g):
        p.add_argument("--out", default=None, help="output directory")
        p.add_argument("--device", default="auto")
        if p is not g:
            p.add_argument("--data-dir", default=None)
    return parser


def run(args: argparse.Namespace):
    """Execute parsed ``train | score | sample`` arguments (for ``dunno density``)."""
    if args.command == "train":
        out = args.out or f"runs/density-{args.model}"
        return train_density(
            args.model, args.data, args.epochs, out=out, root=args.data_dir,
            resume=args.resume, batch_size=args.batch_size, lr=args.lr,
            schedule=args.schedule, grad_clip=args.grad_clip, binarize=args.binarize,
            max_minutes=args.max_minutes, examples_per_epoch=args.examples_per_epoch,
            val_size=args.val_size, samples=args.samples, test=not args.no_test,
            seed=args.seed, device=args.device, options=parse_options(args.option),
            samples_k=args.samples_k, val_samples_k=args.val_samples_k,
            test_size=args.test_size,
        )
    if args.command == "score":
        model = load_density_model(args.checkpoint)
        return score_density(model, args.data, args.split, binarize=args.binarize,
                             batch_size=args.batch_size, device=args.device,
                             root=args.data_dir, out=args.out, quiet=False,
                             samples_k=args.samples_k, size=args.size, seed=args.seed)
    model = load_density_model(args.checkpoint, device=args.device)
    path = args.path or str(Path(args.out or Path(args.checkpoint).parent) / "samples.png")
    samples = sample_grid(model, args.num, path, seed=args.seed)
    print(f"wrote {len(samples)} samples to {path}")
    return samples


def main(argv: list[str] | None = None):
    """``python -m evaluation.benchmarks.density train|score|sample ...``."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
