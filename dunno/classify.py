"""Train a backbone classifier on a registered dataset: the recipe behind
``dunno train classifier`` and the demo.

The result is a checkpoint (weights + the JSON config that rebuilds the backbone through
:func:`dunno.nets.create`) that ``calibrate``, ``ood`` and the Python API load back with
:func:`dunno.checkpoints.load_model`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dunno import distributed
from dunno.checkpoints import save_checkpoint
from dunno.config import RunConfig
from dunno.data import load_dataset, make_loader
from dunno.devices import resolve_device
from dunno.outputs import run_output_dir
from dunno.schedules import LearningRateSchedule
from dunno.training import History, classifier_step, evaluate_classifier, fit, seed_everything
from dunno.training_state import data_identity
from dunno.validation import check_bool, check_choice, check_float, check_int

__all__ = ["ClassifierConfig", "augmentation_for", "random_crop", "random_flip",
           "train_classifier"]


@dataclass
class ClassifierConfig(RunConfig):
    """Hyper-parameters of :func:`train_classifier` (unknown keys are rejected).

    ``augment=None`` means "the usual for the data" (:func:`augmentation_for`): for CIFAR-10/100
    random 32x32 crops from the image zero-padded by 4 pixels plus random horizontal flips
    (the standard CIFAR augmentation); otherwise random crops from the image padded by 2
    pixels for inputs of 28x28 and larger, nothing for smaller images such as ``digits``.
    ``crop_padding`` and ``flip`` override the padding and the flips (``crop_padding=0``: no
    crops). ``normalize=None`` means: on for backbones with ``mean`` / ``std`` options
    (``resnet18-cifar``), which are then set to the training split's per-channel statistics
    (:func:`dunno.data.channel_stats`) unless ``options`` gives them.
    """

    backbone: str = "lenet5"
    data: str = "digits"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    schedule: str = "cosine"
    dropout: float | None = None
    augment: bool | None = None
    crop_padding: int | None = None
    flip: bool | None = None
    normalize: bool | None = None
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: str | None = None
    compile: bool = False
    options: dict[str, Any] | None = None

    def validate(self) -> None:
        check_int(self.epochs, "epochs", self, low=1)
        check_int(self.batch_size, "batch_size", self, low=1)
        check_float(self.lr, "lr", self, low=0.0, low_open=True)
        check_choice(self.optimizer, "optimizer", self, ("adam", "sgd"))
        check_choice(self.schedule, "schedule", self, ("cosine", "constant"))
        if self.crop_padding is not None:
            check_int(self.crop_padding, "crop_padding", self, low=0)
        for name in ("augment", "flip", "normalize"):
            if getattr(self, name) is not None:
                check_bool(getattr(self, name), name, self)


def augmentation_for(config: ClassifierConfig, info) -> tuple[int, bool]:
    """``(crop_padding, flip)`` of a run of ``config`` on data described by ``info`` (a
    :class:`~dunno.data.DatasetInfo`): ``augment=False`` gives ``(0, False)``; otherwise the
    data's own recipe (``info.extras["augmentation"]``: padding 4 and flips for CIFAR) or,
    without one, padding 2 for images of 28x28 and larger, then the config's ``crop_padding``
    / ``flip`` where given."""
    if config.augment is False:
        return 0, False
    usual = info.extras.get("augmentation") or {}
    large = info.shape[-2] >= 28
    padding = usual.get("crop_padding", 2 if large or config.augment else 0)
    flip = usual.get("flip", False)
    if config.crop_padding is not None:
        padding = config.crop_padding
    if config.flip is not None:
        flip = config.flip
    return padding, flip


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2, independently.
    ``x (N, C, H, W)`` -> ``(N, C, H, W)``."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5  # (N,)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation augmentation: zero-pad by ``padding`` and crop back to size,
    with an independent offset per image. ``x (N, C, H, W)`` -> ``(N, C, H, W)``."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)  # (N, C, H+2p, W+2p)
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # (N, H, 1)
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


class _Augmentation:
    """The batch transform: random crops from images padded by ``padding`` (none for 0),
    then random flips. Seeded by ``seed + 1`` (crops; as before the flips existed) and
    ``seed + 2`` (flips); :meth:`get_state` / :meth:`set_state` make both generators part of
    the training state, so a resumed run draws the crops and flips that an uninterrupted
    run would (they used to restart from their seeds)."""

    def __init__(self, padding: int, flip: bool, seed: int):
        self.padding, self.flip = padding, flip
        self.crop_gen = torch.Generator().manual_seed(seed + 1)
        self.flip_gen = torch.Generator().manual_seed(seed + 2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding:
            x = random_crop(x, self.padding, self.crop_gen)
        return random_flip(x, self.flip_gen) if self.flip else x

    def get_state(self) -> dict[str, torch.Tensor]:
        return {"crop": self.crop_gen.get_state(), "flip": self.flip_gen.get_state()}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        self.crop_gen.set_state(state["crop"])
        self.flip_gen.set_state(state["flip"])


def _augmentation(padding: int, flip: bool, seed: int) -> _Augmentation | None:
    """:class:`_Augmentation`, or ``None`` when there are neither crops nor flips."""
    if not padding and not flip:
        return None
    return _Augmentation(padding, flip, seed)


def _normalisation(config: ClassifierConfig, options: dict, train) -> None:
    """Set ``options["mean"]`` / ``["std"]`` to ``train``'s per-channel statistics when the
    backbone normalises its inputs and ``config.normalize`` does not say no."""
    from dunno import nets
    from dunno.data import channel_stats

    takes = {"mean", "std"} <= set(nets.default_options(config.backbone))
    if config.normalize and not takes:
        raise ValueError(f"The 'normalize' parameter of ClassifierConfig needs a backbone with "
                         f"'mean' / 'std' options (resnet18-cifar); {config.backbone!r} has "
                         "none. Got True instead.")
    if takes and config.normalize is not False and "mean" not in options:
        options["mean"], options["std"] = channel_stats(train.x)


@dataclass
class TrainedClassifier:
    """What :func:`train_classifier` returns."""

    model: torch.nn.Module
    history: History
    metrics: dict[str, float]
    checkpoint: Path | None
    config: ClassifierConfig


def train_classifier(
    config: ClassifierConfig | None = None,
    *,
    out: str | Path | None = None,
    root=None,
    resume: bool = False,
    progress: bool | None = None,
    on_epoch_end: Callable[[torch.nn.Module, int, dict[str, float]], None] | None = None,
    **overrides,
) -> TrainedClassifier:
    """Train ``config.backbone`` on ``config.data`` and evaluate it on the test split.

    Adam (or SGD with momentum 0.9) with a per-batch cosine learning-rate schedule and
    cross-entropy loss (mixed precision with ``amp``, ``torch.compile`` with ``compile``);
    under ``torchrun`` it trains data-parallel (:mod:`dunno.distributed`, global batch
    ``batch_size``) and only rank 0 writes files. The validation split drives best-epoch
    selection (and early stopping with ``patience``). With ``out``, writes ``out/model.pt``
    (checkpoint) and ``out/training_state.pt`` (resumable state). Returns the model, history and
    ``{"train_acc", "val_acc", "val_nll", "test_acc", "test_nll", "minutes"}``.

    ``out`` is checked writable and locked before any data is loaded
    (:func:`dunno.outputs.run_output_dir`). ``resume=True`` continues ``out``'s training state
    only if it was written with the same configuration up to
    :data:`dunno.training_state.RESUMABLE_KEYS` (else a CheckpointError naming the differing
    keys); more ``epochs`` re-plan the cosine schedule from the current learning rate
    (:mod:`dunno.schedules`), a finished cosine run is not extended (ValueError).

    ``progress`` reports the training on stderr (:func:`dunno.training.fit`; ``None``: as the
    enclosing call asked, off by default); ``on_epoch_end(model, epoch, record)`` runs after
    every epoch with the epoch record of :func:`dunno.training.fit` (``loss``, ``acc``,
    ``val_loss``, ``val_acc``, ``lr``, ``seconds``, ...), e.g. a
    :class:`dunno.runlog.RunLog` writing ``history.csv`` as the run goes.
    """
    config = config or ClassifierConfig()
    if overrides:
        config = ClassifierConfig.from_dict({**asdict(config), **overrides})
    config.validate()
    with run_output_dir(out):
        return _train_classifier(config, out, root, resume, progress, on_epoch_end)


def _train_classifier(config: ClassifierConfig, out, root, resume: bool,
                      progress: bool | None, on_epoch_end) -> TrainedClassifier:
    from dunno import nets

    device = resolve_device(config.device)
    info = distributed.setup(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    seed_everything(config.seed)
    train = load_dataset(config.data, "train", root)
    val = load_dataset(config.data, "val", root)
    test = load_dataset(config.data, "test", root)
    if train.info.kind != "image" or train.info.num_classes is None:
        raise ValueError(
            f"'{config.data}' is not a labelled image dataset; classifiers train on those."
        )
    options = dict(config.options or {})
    if config.dropout is not None:
        options["dropout"] = config.dropout
    _normalisation(config, options, train)
    c, h, w = train.info.shape
    model = nets.create(
        config.backbone, c, train.info.num_classes, input_size=(h, w), **options
    ).to(device)
    net = model  # the plain module: saved, evaluated and returned
    if config.compile:
        model = torch.compile(model)
    model = distributed.wrap_model(model, device)
    transform = _augmentation(*augmentation_for(config, train.info), config.seed)

    loader = make_loader(train, config.batch_size, shuffle=True, seed=config.seed,
                         transform=transform)
    val_loader = make_loader(val, 1000)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                     weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9,
                                    weight_decay=config.weight_decay, nesterov=True)
    scheduler = None
    state: dict[str, Any] = {"model": model, "optimizer": optimizer}
    if transform is not None:
        state["augmentation"] = transform  # its generators, for an exact resume
    if config.schedule == "cosine":
        scheduler = LearningRateSchedule(optimizer, config.epochs * len(loader), "cosine")
        state["scheduler"] = scheduler
    step = classifier_step(model, optimizer, device=device, scheduler=scheduler, amp=config.amp)

    def validate():
        m = evaluate_classifier(net, val_loader, device=device)
        return {"val_loss": m["loss"], "val_acc": m["acc"]}

    out_dir = Path(out) if out is not None else None
    t0 = time.perf_counter()
    history = fit(
        step, loader, epochs=config.epochs, state=state, validate=validate,
        monitor="val_loss", patience=config.patience, seed=None,
        checkpoint_path=None if out_dir is None else out_dir / "training_state.pt",
        resume=resume,
        run_config={**asdict(config), **data_identity(train), "model_config": net.config},
        progress=progress, desc=config.backbone,
        on_epoch_end=None if on_epoch_end is None else (
            lambda epoch, record: on_epoch_end(net, epoch, record)),
    )
    minutes = (time.perf_counter() - t0) / 60
    test_m = evaluate_classifier(net, make_loader(test, 1000), device=device)
    val_m = evaluate_classifier(net, val_loader, device=device)
    metrics = {
        "train_acc": history["acc"][-1],
        "val_acc": val_m["acc"],
        "val_nll": val_m["loss"],
        "test_acc": test_m["acc"],
        "test_nll": test_m["loss"],
        "best_epoch": history.best_epoch,
        "minutes": minutes,
    }
    checkpoint = None
    if out_dir is not None:
        checkpoint = out_dir / "model.pt"
        if distributed.is_main_process():
            save_checkpoint(
                checkpoint, net, arch="nets", config=net.config,
                meta={"trained_on": config.data, "training": asdict(config), "metrics": metrics,
                      "world_size": info.world_size, "input_shape": [c, h, w],
                      "num_classes": train.info.num_classes,
                      "input_range": [float(train.x.min()), float(train.x.max())],
                      "class_names": train.info.extras.get("classes"),
                      "split_sizes": {"train": len(train), "val": len(val), "test": len(test)},
                      "split_rule": train.info.extras.get("split_rule")},
            )
        distributed.barrier()
    return TrainedClassifier(net.eval(), history, metrics, checkpoint, config)
