"""The one fit loop used by every trained method.

:func:`fit` runs epochs over a loader and calls a *step function* on each batch. The step
owns the maths, so a plain optimiser step, a Pyro ``SVI.step`` and a two-player GAN step
all fit the same loop::

    step = classifier_step(model, optimizer)                  # supervised
    step = lambda batch: {"elbo_loss": svi.step(batch[0])}    # Pyro
    step = gan.step                                           # returns {"d_loss", "g_loss"}

The loop adds what every method needs: seeding, progress reports (:mod:`dunno.progress`: a bar
over the steps of each epoch and one summary line per epoch, or one bar over the epochs), the
learning rate of every optimiser in each epoch record, a validation hook, early stopping with
best-weight restore, atomic per-epoch training-state checkpoints from which an interrupted
run resumes exactly (model and optimiser states, history, RNG states and the loader's
shuffling state; see :mod:`dunno.training_state`), a training-time budget (``max_seconds``)
that stops between steps and survives a resume, and an ``on_epoch_end`` hook (the recipes
write ``history.csv`` and TensorBoard events through it: :mod:`dunno.runlog`).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dunno import distributed
from dunno.devices import resolve_amp
from dunno.errors import CheckpointError
from dunno.progress import (
    Progress,
    format_duration,
    format_values,
    progress_enabled,
    reporting,
    write_line,
)
from dunno.schedules import BUDGET_CLOCKS, budget_clock
from dunno.seeding import seed_everything
from dunno.training_state import (
    load_training_state,
    object_state,
    restore_object,
    save_training_state,
    training_state_file,
)
from dunno.validation import check_choice, check_float, check_int

__all__ = [
    "BUDGET_CLOCKS",  # from dunno.schedules
    "History",
    "budget_clock",  # from dunno.schedules
    "classifier_step",
    "evaluate_classifier",
    "fit",
    "predict_logits",
    "resolve_amp",  # from dunno.devices
    "seed_everything",  # from dunno.seeding
    "training_state_file",  # from dunno.training_state
]

StepResult = float | torch.Tensor | Mapping[str, float | torch.Tensor]


@dataclass
class History:
    """Per-epoch records: ``epochs[i]`` maps metric names (``loss``, ``val_loss``, ...) to
    floats, plus ``epoch`` (1-based), ``seconds`` and the running totals ``train_seconds``
    and ``examples``. ``stopped_early``: early stopping ended the run; ``stopped_for_budget``:
    the time budget (``fit(max_seconds=...)``) did; ``train_seconds`` (time inside the step),
    ``steps`` and ``examples`` are the totals of the whole run, resumed parts included."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    stopped_for_budget: bool = False
    train_seconds: float = 0.0
    steps: int = 0
    examples: int = 0

    def __getitem__(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    def as_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "stopped_for_budget": self.stopped_for_budget,
            "train_seconds": self.train_seconds,
            "steps": self.steps,
            "examples": self.examples,
        }


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0].shape[0]
    return 1


def _to_floats(result: StepResult) -> dict[str, float]:
    if isinstance(result, Mapping):
        items = result.items()
    else:
        items = [("loss", result)]
    out = {}
    for key, value in items:
        value = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        out[key] = value
    return out


def fit(
    step: Callable[[Any], StepResult],
    train_loader: Iterable,
    *,
    epochs: int,
    state: Mapping[str, Any] | None = None,
    validate: Callable[[], Mapping[str, float]] | None = None,
    monitor: str = "val_loss",
    mode: str = "min",
    patience: int | None = None,
    restore_best: bool = True,
    seed: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    run_config: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    progress_by: str = "steps",
    desc: str = "train",
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    max_seconds: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> History:
    """Run ``epochs`` passes of ``step`` over ``train_loader``.

    Parameters
    ----------
    step : callable
        ``step(batch)`` performs one update and returns the loss as a float/tensor, or a
        dict of named floats (all are averaged over the epoch, weighted by batch size).
    train_loader : iterable
        Yields batches. When it has a ``generator`` (see :func:`dunno.data.make_loader`),
        its state is checkpointed so a resumed run sees the same shuffles.
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    state : dict, optional
        Named stateful objects (models, optimisers, schedulers, Pyro param stores) that
        define the training state. Modules are put in train mode for training and eval mode
        around ``validate``; all are saved in training checkpoints and restored on resume.
    validate : callable, optional
        ``validate() -> {"val_loss": ..., ...}`` called after each epoch under
        ``torch.no_grad()``.
    monitor, mode, patience : early stopping
        Stop when ``monitor`` has not improved (``mode`` "min" or "max") for ``patience``
        epochs. With ``restore_best`` the modules get the weights of the best epoch back.
    seed : int, optional
        Seeds every generator (:func:`seed_everything`) before the first epoch.
    checkpoint_path : path-like, optional
        Where to write the training state after every epoch (atomically).
    resume : bool
        Continue from ``checkpoint_path`` if it exists; ``epochs`` may grow (schedules
        re-plan: :mod:`dunno.schedules`), not drop below the epochs trained (ValueError).
    run_config : dict, optional
        The recipe's configuration, saved with its fingerprint in every state; ``resume``
        refuses a state of another one (:func:`dunno.training_state.check_run_config`).
    progress : bool, optional
        Report progress on stderr (:mod:`dunno.progress`: a bar on a terminal, plain lines
        otherwise); ``None``: as the enclosing call asked (off by default). Validation
        passes report inside the epoch and leave no line of their own.
    progress_by : {"steps", "epochs"}
        ``"steps"``: a bar over each epoch's steps, then one line per epoch that stays
        (``desc epoch 3/20: loss ...  val_loss ...  lr ...  (12.3s)``); ``"epochs"``: one bar
        over the epochs, for runs of many short epochs (the predictive regressors).
    desc : str
        The name shown in the progress reports.
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, record)`` after each epoch, before the training state is
        saved (it may add entries to ``record``).
    max_seconds : float, optional
        A training-time budget: the seconds spent inside ``step`` (summed over the run,
        resumed runs included; data loading and validation excluded). Once it is spent, no
        new step starts: the epoch under way ends after the step in progress (every epoch
        takes at least one step), is validated and saved as usual, and
        ``History.stopped_for_budget`` is set. A resumed run continues while its budget
        (which may be larger than before) is not spent.
    clock : callable
        The time source of the budget and of the per-epoch ``seconds``, in seconds
        (default :func:`time.perf_counter`; a fake clock makes budgets testable).

    Every epoch record holds the epoch's mean step outputs (``loss``, ...), the validation
    values, ``seconds`` (the epoch's duration, validation included) and the run's totals so
    far, ``train_seconds`` (time inside ``step``) and ``examples``, and ``lr``: the learning
    rate the epoch started with (the first parameter group's), of the one optimiser in
    ``state`` (``lr_<name>`` for each of several).

    Under ``torchrun`` (see :mod:`dunno.distributed`) the same call trains data-parallel:
    epoch metrics are summed over ranks before averaging, so every rank records the same
    history and takes the same early-stopping decision (``validate`` should therefore
    compute the same value on every rank, e.g. over the full validation set); only rank 0
    writes the training-state checkpoint and reports progress. Modules wrapped in
    ``DistributedDataParallel`` are saved and restored unwrapped, so a run can resume with
    another world size. A time budget is measured on each rank; the ranks agree on when it
    is spent only if their steps take the same time, so prefer ``epochs`` under torchrun.

    Returns
    -------
    History
    """
    check_int(epochs, "epochs", "fit", low=1)
    check_choice(mode, "mode", "fit", ("min", "max"))
    check_int(patience, "patience", "fit", low=1, allow_none=True)
    check_float(max_seconds, "max_seconds", "fit", low=0.0, low_open=True, allow_none=True)
    check_choice(progress_by, "progress_by", "fit", ("steps", "epochs"))
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a 'checkpoint_path' to resume from.")
    state = dict(state or {})
    modules = {k: v for k, v in state.items() if isinstance(v, nn.Module)}
    show = distributed.is_main_process() and progress_enabled(progress)
    if seed is not None:
        seed_everything(seed)

    run = _Run(mode)
    start_epoch = 1
    generator = getattr(train_loader, "generator", None)
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        saved = load_training_state(checkpoint_path, state, generator, run_config)
        try:
            run.load(saved)
            start_epoch = int(saved["epoch"]) + 1
        except (KeyError, TypeError, ValueError) as err:  # a damaged or hand-edited state
            raise CheckpointError(
                f"Training state {str(checkpoint_path)!r} is damaged: its run bookkeeping "
                f"(epoch, history, early-stopping state) cannot be read ({type(err).__name__}: "
                f"{err}). Start the run again without resume."
            ) from err
        if start_epoch - 1 > epochs:
            raise ValueError(f"The 'epochs' parameter must be >= the {start_epoch - 1} epochs "
                             f"the run in {str(checkpoint_path)!r} has trained when resuming "
                             f"it. Got {epochs} instead.")
        if run.history.stopped_early:
            start_epoch = epochs + 1
    history = run.history
    optimizers = {k: v for k, v in state.items() if isinstance(v, torch.optim.Optimizer)}
    by_epochs = Progress(total=epochs, initial=start_epoch - 1, desc=desc, unit="epoch",
                         enabled=show and progress_by == "epochs")

    for epoch in range(start_epoch, epochs + 1):
        if max_seconds is not None and history.epochs and history.train_seconds >= max_seconds:
            history.stopped_for_budget = True
            break
        history.stopped_for_budget = False
        t0 = clock()
        rates = {"lr" if len(optimizers) == 1 else f"lr_{name}": opt.param_groups[0]["lr"]
                 for name, opt in optimizers.items() if opt.param_groups}
        for module in modules.values():
            module.train()
        steps = Progress(total=len(train_loader) if hasattr(train_loader, "__len__") else None,
                         desc=f"{desc} {epoch}/{epochs}", unit="step", leave=False,
                         enabled=show and progress_by == "steps")
        with steps, reporting(show, transient=True):
            record = _train_epoch(step, train_loader, history, epoch, max_seconds, clock,
                                  steps)
            if validate is not None:
                for module in modules.values():
                    module.eval()
                with torch.no_grad():
                    record.update({k: float(v) for k, v in validate().items()})
                for module in modules.values():
                    module.train()
        record.update({k: float(v) for k, v in rates.items()})
        record["seconds"] = clock() - t0
        history.epochs.append(record)
        if validate is not None or patience is not None:
            run.update(record, monitor, epoch, modules if restore_best else {}, patience)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
        write_line(_epoch_line(desc, epoch, epochs, record),
                   enabled=show and progress_by == "steps")
        by_epochs.set_postfix(_shown(record))
        by_epochs.update(1)
        if checkpoint_path is not None and distributed.is_main_process():
            save_training_state(checkpoint_path, state, generator, run_config, epoch=epoch,
                                **run.values())
        if checkpoint_path is not None:
            distributed.barrier()
        if history.stopped_early or history.stopped_for_budget:
            break

    by_epochs.close()
    if restore_best and run.best_weights:
        for name, module in modules.items():
            restore_object(module, run.best_weights[name])
    for module in modules.values():
        module.eval()
    return history


#: epoch-record entries that the per-epoch progress line leaves out (totals, timings)
_NOT_SHOWN = frozenset({"epoch", "seconds", "train_seconds", "examples", "minutes"})


def _shown(record: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in record.items() if k not in _NOT_SHOWN}


def _epoch_line(desc: str, epoch: int, epochs: int, record: Mapping[str, float]) -> str:
    """``"lenet5 epoch 3/20: loss 0.1234  acc 0.9612  val_loss ...  lr 0.001  (4.2s)"``."""
    return (f"{desc} epoch {epoch}/{epochs}: {format_values(_shown(record))}  "
            f"({format_duration(record['seconds'])})")


def _train_epoch(step, loader, history: History, epoch: int, max_seconds: float | None,
                 clock, bar: Progress) -> dict[str, float]:
    """One pass of ``step`` over ``loader`` (fewer batches once ``max_seconds`` of step time
    are spent, at least one); updates the totals of ``history`` and the progress ``bar``;
    returns the epoch record."""
    sums: dict[str, float] = {}
    count = 0
    for batch in loader:
        if count and max_seconds is not None and history.train_seconds >= max_seconds:
            history.stopped_for_budget = True
            break
        t0 = clock()
        values = _to_floats(step(batch))
        history.train_seconds += clock() - t0
        n = _batch_size(batch)
        history.steps += 1
        history.examples += n
        for key, value in values.items():
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"Training diverged: {key} = {value} at epoch {epoch}. Lower the "
                    "learning rate or check the inputs for NaN/inf."
                )
            sums[key] = sums.get(key, 0.0) + value * n
        count += n
        bar.set_postfix(values)
        bar.update(1)
    if distributed.current().enabled:
        totals = distributed.all_reduce_sums({**sums, "__count__": float(count)})
        count = int(totals.pop("__count__"))
        sums = totals
    if count == 0:
        raise ValueError("The 'train_loader' yielded no batches: the training set is empty.")
    record = {"epoch": float(epoch)}
    record.update({k: v / count for k, v in sums.items()})
    record.update({"train_seconds": history.train_seconds, "examples": float(history.examples)})
    return record


class _Run:
    """The bookkeeping of one :func:`fit` run that a resume restores: the history and the
    early-stopping state (best value, epochs without improvement, best weights)."""

    def __init__(self, mode: str):
        self.mode = mode
        self.history = History()
        self.best_value = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.best_weights: dict[str, dict[str, torch.Tensor]] | None = None

    def update(self, record: dict[str, float], monitor: str, epoch: int,
               modules: Mapping[str, nn.Module], patience: int | None) -> None:
        if monitor not in record:
            raise KeyError(
                f"Early stopping monitors {monitor!r}, but the epoch record only has "
                f"{sorted(record)}."
            )
        value = record[monitor]
        improved = value < self.best_value if self.mode == "min" else value > self.best_value
        if improved:
            self.best_value, self.bad_epochs, self.history.best_epoch = value, 0, epoch
            if modules:
                self.best_weights = {
                    k: copy.deepcopy({n: t.detach().cpu() for n, t in object_state(m).items()})
                    for k, m in modules.items()
                }
        else:
            self.bad_epochs += 1
        if patience is not None and self.bad_epochs >= patience:
            self.history.stopped_early = True

    def values(self) -> dict[str, Any]:
        h = self.history
        return {"history": h.epochs, "best_epoch": h.best_epoch, "best_value": self.best_value,
                "bad_epochs": self.bad_epochs, "stopped_early": h.stopped_early,
                "best_weights": self.best_weights or {},
                "stopped_for_budget": h.stopped_for_budget, "train_seconds": h.train_seconds,
                "steps": h.steps, "examples": h.examples}

    def load(self, saved: Mapping[str, Any]) -> None:
        self.history = History(
            epochs=list(saved["history"]), best_epoch=saved["best_epoch"],
            stopped_early=bool(saved["stopped_early"]),
            stopped_for_budget=bool(saved.get("stopped_for_budget", False)),
            train_seconds=float(saved.get("train_seconds", 0.0)),
            steps=int(saved.get("steps", 0)), examples=int(saved.get("examples", 0)),
        )
        self.best_value = float(saved["best_value"])
        self.bad_epochs = int(saved["bad_epochs"])
        self.best_weights = saved.get("best_weights") or None


def classifier_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: str | torch.device = "cpu",
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    scheduler: Any | None = None,
    amp: str | None = None,
) -> Callable[[Any], dict[str, float]]:
    """A supervised step: cross-entropy on logits, backward, optimiser step.

    The returned function takes a batch ``(x, y)`` with ``x (N, ...)`` and integer labels
    ``y (N,)`` and returns ``{"loss": mean loss, "acc": batch accuracy}``. ``transform`` is
    applied to ``x`` on the device (augmentation); ``scheduler.step()`` runs per batch.

    ``amp`` turns on mixed precision: ``"bf16"`` (autocast to bfloat16; CPU or CUDA),
    ``"fp16"`` (CUDA only, with a gradient scaler) or ``"auto"`` (bf16 where the GPU has
    it, else fp16; off on CPU). The loss is always computed in float32 from the logits.
    """
    device = torch.device(device)
    dtype = resolve_amp(amp, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def step(batch):
        x, y = batch[0].to(device), batch[1].to(device)
        if transform is not None:
            x = transform(x)
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            logits = model(x)  # (N, C)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        acc = (logits.argmax(dim=1) == y).float().mean()
        return {"loss": loss.detach(), "acc": acc}

    return step


@torch.no_grad()
def predict_logits(
    model: nn.Module, loader: Iterable, *, device: str | torch.device = "cpu",
    progress: bool | None = None, desc: str = "logits",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``model`` in eval mode over ``loader``; returns ``logits (N, C)`` and labels
    ``(N,)`` (``None`` when the loader yields bare inputs), both on the CPU. ``progress``
    reports the pass as ``desc`` (:mod:`dunno.progress`; ``None``: as the caller asked)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in Progress(loader, desc=desc, unit="batch", enabled=progress):
        x = batch[0] if isinstance(batch, list | tuple) else batch
        logits.append(model(x.to(device)).float().cpu())
        if isinstance(batch, list | tuple) and len(batch) > 1:
            labels.append(batch[1].cpu())
    model.train(was_training)
    if not logits:
        raise ValueError("The 'loader' yielded no batches: the dataset is empty.")
    return torch.cat(logits), (torch.cat(labels) if labels else None)


def evaluate_classifier(
    model: nn.Module, loader: Iterable, *, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """Mean cross-entropy (nats) and accuracy of ``model`` over a labelled loader."""
    logits, labels = predict_logits(model, loader, device=device)
    if labels is None:
        raise ValueError("evaluate_classifier needs a loader that yields (x, y) batches.")
    loss = F.cross_entropy(logits.double(), labels).item()
    acc = (logits.argmax(1) == labels).double().mean().item()
    return {"loss": loss, "acc": acc}
