"""Train GANs and score their samples without Inception weights.

The runner behind ``dunno gan train | eval``::

    from evaluation.benchmarks.gan import evaluate_gan, train_gan
    model, history = train_gan("dcgan", "mnist", epochs=20, max_minutes=12, out="runs/dcgan")
    report = evaluate_gan("runs/dcgan/model.pt", classifier="runs/lenet5-mnist/model.pt")

**Training** (:func:`train_gan`) runs :func:`dunno.training.fit` with the model's own
``step`` (one discriminator and one generator update per batch) and training state, so
``--resume`` continues an interrupted run exactly; ``max_minutes`` stops when the training
time is spent (the epoch under way ends early). After every epoch it writes a PNG of samples
from a fixed latent batch (``samples/epoch_NNN.png``; a scatter plot over the data for 2-D
sets, with the ring-of-Gaussians mode coverage added to the epoch record), and for InfoGAN
one grid per continuous code (``samples/epoch_NNN_c1.png``: rows = categorical value,
columns = a sweep of that code from -2 to 2 with the noise and the other codes fixed, as
Figure 2 of Chen et al. 2016). Outputs: ``model.pt`` (:func:`dunno.checkpoints.load_model`
rebuilds generator + discriminator), ``training_state.pt``, ``history.json``, ``losses.png``,
``samples.png``, ``summary.json``.

**Evaluation** (:func:`evaluate_gan`) of image models uses a classifier we trained ourselves
(``dunno train classifier --backbone lenet5 --data mnist``): its ``features(x)`` (84-d for
LeNet-5) and softmax outputs. Reported, for generated images and, as references, for the
same number of training images and (where given) other models' samples:

* **cFID** -- the Fréchet distance between Gaussians fitted to classifier features of the
  test images and of the candidate images (:func:`evaluation.metrics.frechet_distance`). It is
  *classifier-based*: the numbers are not comparable with Inception FID. The training-set row
  is the floor (what real images achieve against the test set at this sample size).
* **classifier score** -- exp E KL(p(y|x) || p(y)) of the classifier's predictions (the
  Inception-score analogue; 10 is the maximum for MNIST).
* **precision / recall** -- k-NN manifolds (Kynkäänniemi et al. 2019, ``k = 3``) in the
  classifier's feature space, the test features being the real set.
* InfoGAN: **code accuracy** -- the accuracy of the best one-to-one mapping from the
  categorical code to the classifier's predicted digit (Hungarian assignment; Chen et al.
  report about 95% on MNIST, i.e. 5% error).

2-D models on ``ring-of-gaussians`` are scored by modes covered and the share of
high-quality samples (within 3 standard deviations of a mode; VEEGAN convention,
:func:`evaluation.metrics.mode_coverage`) on 2500 samples.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dunno.checkpoints import load_model, safe_load, save_checkpoint
from dunno.config import RunConfig, parse_options
from dunno.data import ArrayDataset, load_dataset, make_loader
from dunno.devices import resolve_device
from dunno.errors import CheckpointError, DataError
from dunno.reporting import format_table, write_csv, write_json
from dunno.training import History, fit, seed_everything, training_state_file
from evaluation.metrics import (
    best_mapping_accuracy,
    classifier_score,
    feature_statistics,
    frechet_distance_from_statistics,
    mode_coverage,
    precision_recall,
    ring_modes,
)
from generative.adversarial import ADVERSARIAL_MODELS, AdversarialModel, InfoGAN, create

__all__ = [
    "CFID_NOTE",
    "GANConfig",
    "GANHistory",
    "build_parser",
    "classifier_outputs",
    "evaluate_gan",
    "infogan_code_grid",
    "load_gan",
    "main",
    "ring_metrics",
    "run",
    "sample_figure",
    "train_gan",
]

CFID_NOTE = ("cFID = Fréchet distance on the features of our own classifier "
             "(classifier-based); not comparable with Inception FID.")
RING_STD = 0.02  # the component std of dunno.data.toy.ring_of_gaussians
RING_SAMPLES = 2500  # VEEGAN's sample count


# ----------------------------------------------------------------------------- config
@dataclass
class GANConfig(RunConfig):
    """Hyper-parameters of :func:`train_gan` (unknown keys are rejected).

    ``options`` are the model's keyword arguments (``latent_dim``, ``width``, ``hidden``,
    ``lr_g``, ``lr_d``, ``info_weight``, ...). ``max_minutes`` is a training-time budget;
    ``train_size`` trains on a seeded random subset; ``grid`` is the number of images in the
    per-epoch sample grid (0: none; 2-D data is drawn as 1000 points).
    """

    model: str = "dcgan"
    data: str = "mnist"
    epochs: int = 5
    batch_size: int = 64
    max_minutes: float | None = None
    train_size: int | None = None
    grid: int = 64
    seed: int = 0
    device: str = "auto"
    options: dict[str, Any] | None = None

    def validate(self) -> None:
        check_int = self._check_int
        if self.model not in ADVERSARIAL_MODELS:
            raise ValueError(f"The 'model' parameter of GANConfig must be one of "
                             f"{tuple(ADVERSARIAL_MODELS)}. Got {self.model!r} instead.")
        check_int("epochs", 1)
        check_int("batch_size", 2)
        check_int("grid", 0)
        check_int("seed", 0)
        check_int("train_size", 2, optional=True)
        if self.max_minutes is not None and (
            not isinstance(self.max_minutes, int | float) or isinstance(self.max_minutes, bool)
            or not (math.isfinite(self.max_minutes) and self.max_minutes > 0)
        ):
            raise ValueError(f"The 'max_minutes' parameter of GANConfig must be None or a "
                             f"number > 0. Got {self.max_minutes!r} instead.")


@dataclass
class GANHistory(History):
    """:class:`dunno.training.History` plus ``metrics`` (minutes, throughput, and mode
    coverage for the ring), the ``checkpoint`` path and the written ``files``."""

    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    files: list[Path] = field(default_factory=list)


class _Clock:
    """Training seconds, steps and examples so far (checkpointed with the training state)."""

    def __init__(self):
        self.seconds, self.steps, self.examples = 0.0, 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "steps": self.steps, "examples": self.examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seconds, self.steps = float(state["seconds"]), int(state["steps"])
        self.examples = int(state["examples"])


class _BudgetLoader:
    """A :class:`~dunno.data.BatchLoader` that yields no new batch once the training clock
    has passed ``budget_s`` (after at least one batch of the epoch)."""

    def __init__(self, loader, clock: _Clock, budget_s: float | None):
        self.loader, self.clock, self.budget_s = loader, clock, budget_s
        self.generator = loader.generator  # checkpointed by fit
        self.truncated = False

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.truncated = False
        for i, batch in enumerate(self.loader):
            if i and self.budget_s is not None and self.clock.seconds >= self.budget_s:
                self.truncated = True
                return
            yield batch


# ----------------------------------------------------------------------------- figures
def _is_ring(data: str) -> bool:
    return data.split(":")[0] == "ring-of-gaussians"


def ring_metrics(samples) -> dict[str, Any]:
    """Mode coverage of 2-D ``samples (N, 2)`` on the ring of 8 Gaussians (radius 2, std
    0.02): ``modes_covered`` (of 8) and ``high_quality`` (share within 3 std of a mode)."""
    cov = mode_coverage(samples, ring_modes(8, 2.0), RING_STD, num_std=3.0)
    return {"modes_covered": cov.modes_covered, "high_quality": cov.high_quality,
            "mode_counts": [int(c) for c in cov.counts]}


def sample_figure(samples: torch.Tensor, path: str | Path, *, title: str = "",
                  data: torch.Tensor | None = None) -> Path:
    """Save samples as a PNG: a grid for images ``(N, C, H, W)`` in [0, 1], a scatter plot
    (over ``data`` in grey when given) for 2-D points ``(N, 2)``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = samples.detach().cpu()
    if samples.dim() == 4:
        from evaluation.plots import image_grid

        image_grid(samples, ncols=max(1, math.ceil(math.sqrt(len(samples)))),
                   value_range=(0.0, 1.0), title=title or None, path=path)
        return path
    if samples.dim() != 2 or samples.shape[1] != 2:
        raise ValueError(f"sample_figure draws images (N, C, H, W) or 2-D points (N, 2); got "
                         f"shape {tuple(samples.shape)}.")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.2), layout="constrained")
    ax = fig.subplots()
    if data is not None:
        ax.scatter(data[:, 0], data[:, 1], s=2, c="0.75", label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c="C3", alpha=0.6, label="samples")
    ax.set_aspect("equal")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.legend(fontsize="small", loc="upper right")
    if title:
        ax.set_title(title, fontsize="small")
    fig.savefig(path, dpi=110)
    return path


def infogan_code_grid(model: InfoGAN, path: str | Path, *, code: int = 0, steps: int = 10,
                      low: float = -2.0, high: float = 2.0, seed: int = 0) -> Path:
    """Vary one continuous code of an InfoGAN: a PNG whose rows are the categorical values
    and whose columns sweep continuous code ``code`` from ``low`` to ``high`` (the other
    codes 0), one fixed noise vector for the whole grid (Chen et al. 2016, Figure 2)."""
    if not isinstance(model, InfoGAN):
        raise TypeError(f"infogan_code_grid needs an InfoGAN; got {type(model).__name__}.")
    if not 0 <= code < model.continuous:
        raise ValueError(f"The 'code' parameter of infogan_code_grid must be in "
                         f"[0, {model.continuous}). Got {code!r} instead.")
    k = model.categorical
    noise = torch.randn(1, model.noise_dim, generator=torch.Generator().manual_seed(seed))
    cat = torch.arange(k).repeat_interleave(steps)  # (k * steps,) row-major
    cont = torch.zeros(k * steps, model.continuous)
    cont[:, code] = torch.linspace(low, high, steps).repeat(k)
    images = model.sample_codes(cat, cont, noise=noise.expand(k * steps, -1)).cpu()
    from evaluation.plots import image_grid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, ncols=steps, value_range=(0.0, 1.0), path=path,
               title=f"rows: categorical code; columns: c{code + 1} from {low:g} to {high:g}")
    return path


def _loss_figure(records: list[dict[str, float]], path: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    epochs = [r["epoch"] for r in records]
    for key in ("d_loss", "g_loss", "q_loss"):
        if all(key in r for r in records):
            ax.plot(epochs, [r[key] for r in records], "o-", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats, epoch mean)")
    ax.set_title(title, fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return path


# ----------------------------------------------------------------------------- training
def _train_data(config: GANConfig, root) -> ArrayDataset:
    data = config.data
    if _is_ring(data) and "n=" not in data:
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


def train_gan(
    model_name: str | None = None,
    data: str | None = None,
    epochs: int | None = None,
    *,
    out: str | Path | None = None,
    root=None,
    resume: bool = False,
    quiet: bool | None = None,
    config: GANConfig | None = None,
    **overrides: Any,
) -> tuple[AdversarialModel, GANHistory]:
    """Train ``gan`` / ``dcgan`` / ``infogan`` on ``data`` and write its outputs.

    Parameters
    ----------
    model_name, data, epochs :
        Shorthands for the fields of ``config`` (``"dcgan"``, ``"mnist"``, ``10``).
    out : path-like, optional
        Directory for ``model.pt``, the training state, per-epoch sample grids, losses and
        summary (nothing is written when ``None``).
    root : path-like, optional
        Data directory (default ``$DUNNO_DATA``, else ``~/.cache/dunno``).
    resume : bool
        Continue from ``out/training_state.pt``.
    quiet : bool, optional
        No progress bar or printing (default: quiet unless stderr is a terminal).
    config : GANConfig, optional
        All hyper-parameters; ``**overrides`` replace fields.

    Returns
    -------
    (model, history)
        The trained model (eval mode) and a :class:`GANHistory` with per-epoch ``d_loss``,
        ``g_loss`` (and ``q_loss``, ``mi_lower_bound``), ``minutes`` and, for the ring,
        ``modes_covered`` / ``high_quality``.
    """
    config = GANConfig.resolve(config, overrides, model=model_name, data=data, epochs=epochs)
    config.validate()
    if resume and out is None:
        raise ValueError("resume=True needs an 'out' directory holding training_state.pt.")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    train = _train_data(config, root)
    model = create(config.model, tuple(train.info.shape), **dict(config.options or {}))
    model = model.to(device)
    loader = make_loader(train, config.batch_size, shuffle=True, seed=config.seed,
                         drop_last=len(train) >= config.batch_size)
    clock = _Clock()
    budget_s = None if config.max_minutes is None else 60.0 * config.max_minutes
    budget_loader = _BudgetLoader(loader, clock, budget_s)
    state = {**model.training_state(), "clock": clock}

    def step(batch):
        t0 = time.perf_counter()
        result = model.step(batch)
        clock.seconds += time.perf_counter() - t0
        clock.steps += 1
        clock.examples += len(batch[0])
        return result

    out_dir = Path(out) if out is not None else None
    points = model.data_shape == (2,)  # 2-D data: scatter plots of 1000 points
    fixed_z = model.sample_latent(1000 if points else (config.grid or 1),
                                  torch.Generator().manual_seed(config.seed + 1))
    ring = _is_ring(config.data) and model.data_shape == (2,)
    ring_z = model.sample_latent(RING_SAMPLES, torch.Generator().manual_seed(config.seed + 2))
    data_points = train.x[:2000] if points else None
    title = f"{config.model} on {config.data}"

    def on_epoch_end(epoch: int, record: dict[str, float]) -> None:
        record["minutes"] = clock.seconds / 60
        record["examples"] = float(clock.examples)
        if ring:
            metrics = ring_metrics(model._decode(ring_z).cpu())
            record["modes_covered"] = float(metrics["modes_covered"])
            record["high_quality"] = metrics["high_quality"]
        if out_dir is None or not config.grid:
            return
        folder = out_dir / "samples"
        sample_figure(model._decode(fixed_z), folder / f"epoch_{epoch:03d}.png",
                      title=f"{title}, epoch {epoch}", data=data_points)
        if isinstance(model, InfoGAN):
            for code in range(model.continuous):
                infogan_code_grid(model, folder / f"epoch_{epoch:03d}_c{code + 1}.png",
                                  code=code, seed=config.seed)

    t_start = time.perf_counter()
    history = History()
    with training_state_file(out_dir, "dunno-gan-") as state_path:
        done = 0
        if resume and state_path.exists():
            saved = safe_load(state_path)
            done = int(saved["epoch"])
            clock.load_state_dict(saved["states"]["clock"])
        while done < config.epochs and (budget_s is None or clock.seconds < budget_s
                                        or done == 0):
            history = fit(step, budget_loader, epochs=done + 1, state=state,
                          checkpoint_path=state_path, resume=resume or done > 0, quiet=quiet,
                          desc=config.model, on_epoch_end=on_epoch_end)
            done = len(history.epochs)
            if budget_loader.truncated:
                break
    model.eval()
    result = GANHistory(epochs=history.epochs, best_epoch=history.best_epoch,
                        stopped_early=history.stopped_early)
    metrics: dict[str, Any] = {
        "model": config.model,
        "data": config.data,
        "data_shape": list(model.data_shape),
        "parameters_g": sum(p.numel() for p in model.generator.parameters()),
        "parameters_d": sum(p.numel() for p in model.discriminator.parameters()),
        "epochs": len(history.epochs),
        "steps": clock.steps,
        "train_examples": clock.examples,
        "train_minutes": clock.seconds / 60,
        "wall_minutes": (time.perf_counter() - t_start) / 60,
        "train_images_per_s": clock.examples / max(clock.seconds, 1e-9),
        "budget_exhausted": bool(budget_loader.truncated or (
            budget_s is not None and clock.seconds >= budget_s)),
    }
    for key in ("d_loss", "g_loss", "q_loss", "mi_lower_bound"):
        if history.epochs and key in history.epochs[-1]:
            metrics[f"last_{key}"] = history.epochs[-1][key]
    if ring:
        metrics.update(ring_metrics(model._decode(ring_z).cpu()))
    result.metrics = metrics
    if out_dir is not None:
        meta = {"trained_on": config.data, "training": asdict(config), "metrics": metrics}
        result.checkpoint = save_checkpoint(out_dir / "model.pt", model, arch=model.arch,
                                            config=model.config, meta=meta)
        rows = [{k: e.get(k) for k in ("epoch", "d_loss", "g_loss", "q_loss", "d_real",
                                       "d_fake", "modes_covered", "high_quality", "minutes",
                                       "seconds")} for e in history.epochs]
        result.files = [
            result.checkpoint,
            write_json({"config": asdict(config), **result.as_dict(), "metrics": metrics},
                       out_dir / "history.json"),
            write_csv(rows, out_dir / "history.csv"),
            write_json({"config": asdict(config), "metrics": metrics},
                       out_dir / "summary.json"),
            _loss_figure(history.epochs, out_dir / "losses.png", title),
        ]
        if config.grid:
            result.files.append(sample_figure(model._decode(fixed_z),
                                              out_dir / "samples.png",
                                              title=f"{title}: samples", data=data_points))
    if not quiet:
        line = (f"{title}: {metrics['epochs']} epochs, {metrics['steps']} steps in "
                f"{metrics['train_minutes']:.1f} min ({metrics['train_images_per_s']:.0f} "
                "images/s)")
        if ring:
            line += (f"; modes covered {metrics['modes_covered']}/8, high-quality samples "
                     f"{metrics['high_quality']:.1%}")
        print(line)
    return model, result


# ----------------------------------------------------------------------------- evaluation
def load_gan(path: str | Path, device: str | torch.device = "cpu") -> AdversarialModel:
    """Load a checkpoint written by :func:`train_gan` (never executes code); raises
    :class:`~dunno.errors.CheckpointError` for any other kind of model."""
    model = load_model(path, device=resolve_device(device))
    if not isinstance(model, AdversarialModel):
        raise CheckpointError(f"{str(path)!r} holds a {type(model).__name__}, not a GAN "
                              "(generative/gan, generative/dcgan or generative/infogan).")
    return model


@torch.no_grad()
def classifier_outputs(classifier: torch.nn.Module, images: torch.Tensor, *,
                       batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """``features (N, F)`` (``classifier.features``) and softmax probabilities ``(N, C)``
    (of ``classifier(x)``), float64 on the CPU, for images ``(N, C, H, W)`` in [0, 1]."""
    if not hasattr(classifier, "features"):
        raise ValueError(f"The classifier ({type(classifier).__name__}) has no features(x); "
                         "use a backbone from dunno.nets (e.g. a lenet5 checkpoint).")
    classifier.eval()
    device = next(classifier.parameters()).device
    feats, probs = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device, torch.float32)
        feats.append(classifier.features(x).double().cpu())
        probs.append(torch.softmax(classifier(x).double(), dim=1).cpu())
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def _sample_model(model, n: int, seed: int, name: str) -> torch.Tensor:
    import inspect

    if "generator" in inspect.signature(model.sample).parameters:
        images = model.sample(n, generator=torch.Generator().manual_seed(seed))
    else:  # a model whose sample() takes no generator: seed the global one
        torch.manual_seed(seed)
        images = model.sample(n)
    images = images.detach().float().cpu()
    if images.dim() != 4 or not torch.isfinite(images).all() or (
            images.min() < 0 or images.max() > 1):
        raise ValueError(f"{name} must sample images (N, C, H, W) with values in [0, 1]; got "
                         f"shape {tuple(images.shape)}.")
    return images


def evaluate_gan(
    checkpoint: str | Path | AdversarialModel,
    *,
    classifier: str | Path | torch.nn.Module | None = None,
    data: str | None = None,
    num_samples: int | None = None,
    k: int = 3,
    compare: dict[str, str | Path] | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    root=None,
    out: str | Path | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Score a GAN's samples (see the module docstring for every metric).

    Parameters
    ----------
    checkpoint : path-like or AdversarialModel
        A :func:`train_gan` checkpoint (or the model itself).
    classifier : path-like or nn.Module
        A classifier checkpoint with ``features(x)`` (e.g. ``runs/lenet5-mnist/model.pt``);
        needed for image models.
    data : str, optional
        The real dataset (default: the one the checkpoint was trained on, else ``mnist``).
    num_samples : int, optional
        Generated images (and test / training images) per set, default 10000 (the test split
        is used whole when it is smaller); 2500 points for a 2-D model.
    k : int
        Neighbourhood size of precision / recall.
    compare : dict, optional
        ``{name: checkpoint}`` of other image models whose ``sample(n)`` gives [0, 1] images
        (e.g. a VAE), scored the same way.
    out : path-like, optional
        Directory for ``eval.json``, ``eval.csv`` and ``eval_samples.png``.

    Returns
    -------
    dict
        ``rows`` (one per image source: cFID, classifier score, precision, recall),
        ``code_accuracy`` and ``code_mapping`` for InfoGAN, or the ring metrics.
    """
    device = resolve_device(device)
    meta: dict[str, Any] = {}
    if isinstance(checkpoint, AdversarialModel):
        model = checkpoint.to(device)
        name = type(model).__name__
    else:
        from dunno.checkpoints import load_checkpoint

        meta = load_checkpoint(checkpoint).meta
        model = load_gan(checkpoint, device)
        name = f"{type(model).__name__} ({checkpoint})"
    data = data or meta.get("trained_on") or ("ring-of-gaussians" if model.data_shape == (2,)
                                              else "mnist")
    if num_samples is None:
        num_samples = RING_SAMPLES if model.data_shape == (2,) else 10000
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 2:
        raise ValueError(f"The 'num_samples' parameter of evaluate_gan must be an int >= 2. "
                         f"Got {num_samples!r} instead.")
    report: dict[str, Any] = {"model": name, "data": data, "num_samples": num_samples}
    if model.data_shape == (2,):
        if not _is_ring(data):
            raise ValueError(f"2-D models are scored on 'ring-of-gaussians' only; got {data!r}.")
        n = num_samples
        samples = model.sample(n, generator=torch.Generator().manual_seed(seed)).cpu()
        report.update(ring_metrics(samples))
        report["num_samples"] = n
        if out is not None:
            out = Path(out)
            write_json(report, out / "eval.json")
            sample_figure(samples, out / "eval_samples.png", title=name)
        if not quiet:
            print(f"{name}: modes covered {report['modes_covered']}/8, high-quality samples "
                  f"{report['high_quality']:.1%} ({n} samples; within 3 std of a mode)")
        return report
    if len(model.data_shape) != 3:
        raise ValueError(f"evaluate_gan scores image models or 2-D models; this one makes "
                         f"data of shape {model.data_shape}.")
    if classifier is None:
        raise ValueError("evaluate_gan needs a 'classifier' checkpoint with features(x) for "
                         "image models (e.g. runs/lenet5-mnist/model.pt from `dunno train "
                         "classifier --backbone lenet5 --data mnist`).")
    if not isinstance(classifier, torch.nn.Module):
        classifier = load_model(classifier, device=device)
    classifier = classifier.to(device).eval()

    test = load_dataset(data, "test", root)
    if tuple(test.info.shape) != model.data_shape:
        raise DataError(f"The model makes {model.data_shape} images but '{data}' holds "
                        f"{tuple(test.info.shape)} images.")
    n = min(num_samples, len(test))
    g = torch.Generator().manual_seed(seed)
    test_x = test.x[torch.randperm(len(test), generator=g)[:n].sort().values]
    train = load_dataset(data, "train", root)
    train_x = train.x[torch.randperm(len(train), generator=g)[:n].sort().values]
    t0 = time.perf_counter()
    test_feats, test_probs = classifier_outputs(classifier, test_x)
    ref_stats = feature_statistics(test_feats)

    def score(images: torch.Tensor, source: str) -> dict[str, Any]:
        feats, probs = classifier_outputs(classifier, images)
        pr = precision_recall(test_feats, feats, k=k)
        return {"source": source, "cFID": frechet_distance_from_statistics(
                    *ref_stats, *feature_statistics(feats)),
                "classifier_score": classifier_score(probs), "precision": pr.precision,
                "recall": pr.recall, "n": len(images)}

    generated = _sample_model(model, n, seed + 1, name)
    rows = [score(generated, f"{type(model).__name__} samples")]
    for other_name, path in (compare or {}).items():
        other = load_model(path, device=device)
        rows.append(score(_sample_model(other, n, seed + 1, other_name),
                          f"{other_name} samples"))
    floor = score(train_x, "training images (floor)")
    floor["classifier_score_test"] = classifier_score(test_probs)
    rows.append(floor)
    report.update({"rows": rows, "k": k, "note": CFID_NOTE,
                   "classifier": type(classifier).__name__})
    if isinstance(model, InfoGAN):
        per_code = max(1, n // model.categorical)
        codes = torch.arange(model.categorical).repeat_interleave(per_code)
        cont = torch.rand(len(codes), model.continuous, generator=g) * 2 - 1
        images = model.sample_codes(codes, cont, generator=g).cpu()
        _, probs = classifier_outputs(classifier, images)
        predicted = probs.argmax(axis=1)
        report["code_accuracy"] = best_mapping_accuracy(codes.numpy(), predicted)
        table = np.zeros((model.categorical, probs.shape[1]), dtype=np.int64)
        np.add.at(table, (codes.numpy(), predicted), 1)
        from scipy.optimize import linear_sum_assignment

        r, c = linear_sum_assignment(table, maximize=True)
        report["code_mapping"] = {int(a): int(b) for a, b in zip(r, c, strict=True)}
    report["seconds"] = time.perf_counter() - t0
    if out is not None:
        out = Path(out)
        write_json(report, out / "eval.json")
        write_csv(rows, out / "eval.csv")
        sample_figure(generated[:64], out / "eval_samples.png", title=name)
    if not quiet:
        columns = ["source", "cFID", "classifier_score", "precision", "recall", "n"]
        print(format_table(rows, columns))
        print(f"{CFID_NOTE} Classifier: {report['classifier']}.")
        print(f"classifier score of the test images: {floor['classifier_score_test']:.3f}; "
              f"precision / recall: k = {k} nearest neighbours in feature space")
        if "code_accuracy" in report:
            print(f"InfoGAN categorical code -> predicted digit, best one-to-one mapping: "
                  f"accuracy {report['code_accuracy']:.1%} (mapping {report['code_mapping']})")
    return report


# ----------------------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``train | eval`` sub-commands (``dunno gan ...`` mirrors them)."""
    parser = parser or argparse.ArgumentParser(
        prog="python -m evaluation.benchmarks.gan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="gan_command", required=True)
    t = sub.add_parser("train", help="train gan | dcgan | infogan; writes model.pt and grids")
    t.add_argument("model", choices=list(ADVERSARIAL_MODELS))
    t.add_argument("--data", default="mnist",
                   help="dataset spec: mnist, fashion-mnist, ring-of-gaussians, ...")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--train-size", type=int, default=None,
                   help="train on a seeded random subset of this many examples")
    t.add_argument("--grid", type=int, default=64, help="samples per epoch grid (0: none)")
    t.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, repeatable (latent_dim=100, width=32, hidden=0, "
                        "lr_g=2e-4, info_weight=1)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/training_state.pt")
    e = sub.add_parser("eval", help="cFID, classifier score, precision/recall of samples")
    e.add_argument("--checkpoint", required=True, help="a GAN checkpoint (model.pt)")
    e.add_argument("--classifier", default=None,
                   help="classifier checkpoint with features(x), e.g. runs/lenet5-mnist/model.pt")
    e.add_argument("--data", default=None, help="real data (default: what the GAN saw)")
    e.add_argument("-n", "--num-samples", type=int, default=None,
                   help="samples per set (default: 10000 images, 2500 2-D points)")
    e.add_argument("-k", type=int, default=3, help="neighbours for precision / recall")
    e.add_argument("--compare", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="another image model to score the same way (e.g. vae=runs/vae/model.pt)")
    e.add_argument("--seed", type=int, default=0)
    for p in (t, e):
        p.add_argument("--out", default=None, help="output directory")
        p.add_argument("--device", default="auto")
        p.add_argument("--data-dir", default=None)
        p.add_argument("--quiet", action="store_true", default=None)
    return parser


def run(args: argparse.Namespace) -> int:
    """Execute parsed ``train | eval`` arguments (for ``dunno gan``); returns 0."""
    if args.gan_command == "train":
        out = args.out or f"runs/gan-{args.model}"
        _, history = train_gan(
            args.model, args.data, args.epochs, out=out, root=args.data_dir,
            resume=args.resume, quiet=args.quiet, batch_size=args.batch_size,
            max_minutes=args.max_minutes, train_size=args.train_size, grid=args.grid,
            seed=args.seed, device=args.device, options=parse_options(args.option),
        )
        if args.quiet:
            print(json.dumps({k: v for k, v in history.metrics.items()
                              if isinstance(v, int | float | str)}))
        print(f"checkpoint: {history.checkpoint}")
        return 0
    compare = {}
    for item in args.compare:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--compare must look like NAME=CHECKPOINT. Got {item!r}.")
        compare[key] = value
    evaluate_gan(args.checkpoint, classifier=args.classifier, data=args.data,
                 num_samples=args.num_samples, k=args.k, compare=compare, seed=args.seed,
                 device=args.device, root=args.data_dir, out=args.out, quiet=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.benchmarks.gan train|eval ...``."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
