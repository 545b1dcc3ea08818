r"""Deep ensembles of classifiers: the mixture module, and training with members spread over
ranks.

A deep ensemble (Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive
Uncertainty Estimation using Deep Ensembles", NeurIPS 2017) is :math:`M` networks trained
independently from different random initialisations and data orders; it predicts the uniform
mixture of the members' class distributions,

.. math::

    \log \bar p(y \mid x) = \log \frac{1}{M} \sum_{m=1}^{M} \mathrm{softmax}(f_m(x))_y
    = \operatorname{logsumexp}_m \log\mathrm{softmax}(f_m(x))_y - \log M .

:func:`mixture_log_probs` is the one implementation of this formula in the toolkit: the
``forward`` of :class:`EnsembleClassifier` (the ensemble as one classifier module) and the
prediction of :class:`uncertainty.predictive.DeepEnsemble` (the vectorised estimator,
whose ``to_module()`` returns its members as an :class:`EnsembleClassifier`) both call it.

:func:`train_ensemble` trains member :math:`k` with :func:`dunno.classify.train_classifier`
and seed ``seed + k``. Under ``torchrun`` with :math:`N` processes, **member** :math:`k`
**trains on rank** :math:`k \bmod N`, as a plain single-process run inside
:func:`dunno.distributed.local_only` (no gradient sharing between members, every member sees
the whole training set); then every member's weights are broadcast from the rank that trained
it, so all ranks hold the same ensemble, and rank 0 writes **one ensemble checkpoint**. Member
:math:`k`'s training depends only on its seed, so the ensemble is the same whatever the world
size (a test checks 4 members on 2 ranks against one process).

The ensemble is an :class:`EnsembleClassifier` module whose ``forward`` returns
:math:`\log \bar p(y \mid x)` -- valid logits (their softmax is :math:`\bar p`), so
``dunno calibrate`` and ``dunno ood`` take an ensemble checkpoint like any classifier.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dunno import distributed
from dunno.checkpoints import (
    MODELS,
    build_model,
    load_checkpoint,
    register_model,
    registered_models,
    save_checkpoint,
)
from dunno.classify import ClassifierConfig, train_classifier
from dunno.data import load_dataset, make_loader
from dunno.devices import resolve_device
from dunno.errors import CheckpointError
from dunno.models import check_model_data
from dunno.outputs import run_output_dir
from dunno.training import evaluate_classifier
from dunno.training_state import check_run_config
from dunno.validation import check_int

__all__ = [
    "EnsembleClassifier",
    "TrainedEnsemble",
    "member_ranks",
    "mixture_log_probs",
    "train_ensemble",
]


def mixture_log_probs(member_logits: torch.Tensor) -> torch.Tensor:
    r"""Log-probabilities of the uniform mixture of ``M`` classifiers (module docstring).

    Args:
        member_logits: ``(M, N, C)`` logits of the ``M`` members.

    Returns:
        ``(N, C)`` :math:`\log \frac1M \sum_m \mathrm{softmax}(f_m)`, in the dtype of
        ``member_logits`` (valid logits: their softmax is the mixture itself).
    """
    if not torch.jit.is_tracing() and (member_logits.ndim != 3 or member_logits.shape[0] < 1):
        raise ValueError(
            f"The 'member_logits' of mixture_log_probs must have shape (M, N, C) with M >= 1. "
            f"Got {tuple(member_logits.shape)} instead."
        )
    log_probs = torch.log_softmax(member_logits, dim=-1)  # (M, N, C)
    if torch.jit.is_tracing():  # log M as traced ops (the traced shape is a tensor)
        return torch.logsumexp(log_probs, dim=0) - torch.ones_like(log_probs[:, :1]).sum(0).log()
    return torch.logsumexp(log_probs, dim=0) - math.log(member_logits.shape[0])  # (N, C)


class EnsembleClassifier(nn.Module):
    """A uniform mixture of ``M`` classifiers ``x -> logits (N, C)``.

    ``forward(x)`` returns :func:`mixture_log_probs` of the members, in float32: the log of
    :math:`\\frac{1}{M}\\sum_m \\mathrm{softmax}(f_m(x))`, ``(N, C)``; :meth:`member_logits`
    the members' own logits ``(M, N, C)``. Every member needs a ``config`` and, for
    checkpoints, an ``arch`` registered with :func:`dunno.checkpoints.register_model` (the
    :mod:`dunno.nets` backbones have both). Built by :func:`train_ensemble` (``dunno train
    classifier --ensemble M``) or by ``uncertainty.predictive.DeepEnsemble.to_module()``.
    """

    arch = "ensemble"

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("The 'members' of an EnsembleClassifier must hold at least one "
                             "model. Got an empty list.")
        self.members = nn.ModuleList(members)
        self.config = {"members": [
            {"arch": getattr(m, "arch", "nets"), "config": getattr(m, "config", None)}
            for m in members]}

    @property
    def num_members(self) -> int:
        """:math:`M`."""
        return len(self.members)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's logits, ``(M, N, C)``."""
        return torch.stack([m(x) for m in self.members])

    def check_checkpointable(self) -> None:
        """Raise :class:`~dunno.errors.CheckpointError` unless every member can be rebuilt
        from a checkpoint (a registered ``arch`` and a ``config``); called by
        :func:`dunno.checkpoints.save_checkpoint`, so an ensemble of the user's own models is
        refused at save time instead of failing to load. Such an ensemble is saved with
        :func:`dunno.models.save_model` (TorchScript or ``torch.export``)."""
        for k, member in enumerate(self.members):
            arch = getattr(member, "arch", "nets")
            config = getattr(member, "config", None)
            if not isinstance(config, dict) or (arch not in MODELS
                                                and arch not in registered_models()):
                raise CheckpointError(
                    f"Member {k} of the EnsembleClassifier ({type(member).__name__}) has no "
                    "'config' of a registered model builder, so a checkpoint of this ensemble "
                    "could not be loaded. Save it with dunno.models.save_model(ensemble, path, "
                    "example_input=x) instead (TorchScript or torch.export; loads without "
                    "your code)."
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mixture's class probabilities, ``(N, C)``."""
        return mixture_log_probs(self.member_logits(x).float())


@register_model("ensemble")
def _build_ensemble(members: list[dict[str, Any]]) -> EnsembleClassifier:
    """An :class:`EnsembleClassifier` rebuilt from its members' ``arch`` and ``config``."""
    if not isinstance(members, list) or not members:
        raise CheckpointError("The 'members' of an ensemble config must be a non-empty list of "
                              f"{{'arch': str, 'config': dict}}. Got {members!r} instead.")
    for k, member in enumerate(members):
        if not (isinstance(member, dict) and isinstance(member.get("arch"), str)
                and isinstance(member.get("config"), dict)):
            raise CheckpointError(f"Member {k} of the ensemble config must be "
                                  f"{{'arch': str, 'config': dict}}. Got {member!r} instead.")
    return EnsembleClassifier([build_model(m["arch"], m["config"]) for m in members])


def member_ranks(num_members: int, world_size: int) -> list[int]:
    """The rank that trains each member: ``[k % world_size for k in range(num_members)]``."""
    return [k % world_size for k in range(num_members)]


@dataclass
class TrainedEnsemble:
    """What :func:`train_ensemble` returns: the ensemble (eval mode), its test metrics
    (``test_acc``, ``test_nll``, ``val_acc``, ``val_nll``, ``member_test_acc``, ``minutes``),
    the checkpoint path (``None`` without ``out``) and the member configuration."""

    model: EnsembleClassifier
    metrics: dict[str, Any]
    checkpoint: Path | None
    config: ClassifierConfig


def _broadcast_member(member: nn.Module, src: int) -> None:
    for tensor in [*member.parameters(), *member.buffers()]:
        with torch.no_grad():
            dist.broadcast(tensor.data, src=src)


def train_ensemble(
    config: ClassifierConfig | None = None,
    num_members: int = 5,
    *,
    out: str | Path | None = None,
    root=None,
    resume: bool = False,
    progress: bool | None = None,
    on_epoch_end: Callable[[nn.Module, int, dict[str, float]], None] | None = None,
    **overrides,
) -> TrainedEnsemble:
    """Train a deep ensemble of ``num_members`` classifiers (see the module docstring).

    Parameters
    ----------
    config : ClassifierConfig, optional
        The members' recipe (``**overrides`` replace fields); member ``k`` uses seed
        ``config.seed + k``.
    num_members : int
        :math:`M \\ge 1`.
    out : path-like, optional
        ``out/member<k>/`` holds member ``k``'s checkpoint and resumable training state;
        ``out/model.pt`` the ensemble checkpoint (arch ``"ensemble"``).
    resume : bool
        Reuse finished members (``out/member<k>/model.pt``) and resume the others from
        their training state -- each only if it was trained with this configuration (else
        a CheckpointError naming the differing keys; see :func:`train_classifier`).
    progress, on_epoch_end :
        As for :func:`train_classifier`, for every member; the epoch records passed to
        ``on_epoch_end`` carry the member's index as ``member``.

    ``out`` is checked writable and locked for the whole run
    (:func:`dunno.outputs.run_output_dir`), each member's folder too.
    """
    config = config or ClassifierConfig()
    if overrides:
        config = ClassifierConfig.from_dict({**asdict(config), **overrides})
    config.validate()
    check_int(num_members, "num_members", "train_ensemble", low=1)
    with run_output_dir(out):
        return _train_ensemble(config, num_members, out, root, resume, progress, on_epoch_end)


def _member_hook(on_epoch_end, k: int):
    """``on_epoch_end`` with ``member = k`` added to each record (None stays None)."""
    if on_epoch_end is None:
        return None
    return lambda model, epoch, record: on_epoch_end(model, epoch, {"member": k, **record})


def _train_ensemble(config: ClassifierConfig, num_members: int, out, root, resume: bool,
                    progress: bool | None, on_epoch_end) -> TrainedEnsemble:
    device = resolve_device(config.device)
    info = distributed.setup(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    out_dir = Path(out) if out is not None else None
    owners = member_ranks(num_members, info.world_size)

    t0 = time.perf_counter()
    members: list[nn.Module | None] = [None] * num_members
    with distributed.local_only():
        for k, owner in enumerate(owners):
            if owner != info.rank:
                continue
            member_config = replace(config, seed=config.seed + k, device=str(device))
            member_dir = None if out_dir is None else out_dir / f"member{k}"
            done = member_dir is not None and (member_dir / "model.pt").exists()
            if resume and done:
                finished = load_checkpoint(member_dir / "model.pt")
                check_run_config(finished.meta.get("training"), asdict(member_config),
                                 str(member_dir / "model.pt"))
                members[k] = finished.build().to(device).eval()
                data = load_dataset(config.data, "test", root)  # the same spec, other content?
                check_model_data(members[k], data.x, num_classes=data.info.num_classes,
                                 data_name=config.data, owner=f"train_ensemble (member {k})")
                continue
            members[k] = train_classifier(member_config, out=member_dir, root=root,
                                          resume=resume, progress=progress,
                                          on_epoch_end=_member_hook(on_epoch_end, k)).model
    minutes = (time.perf_counter() - t0) / 60

    if info.enabled:  # every rank builds the members it did not train, then receives them
        template = next(m for m in members if m is not None)
        for k, owner in enumerate(owners):
            if members[k] is None:
                members[k] = build_model(getattr(template, "arch", "nets"),
                                         template.config).to(device)
            _broadcast_member(members[k], src=owner)
    ensemble = EnsembleClassifier(list(members)).to(device).eval()

    test_loader = make_loader(load_dataset(config.data, "test", root), 1000)
    val_loader = make_loader(load_dataset(config.data, "val", root), 1000)
    test_m = evaluate_classifier(ensemble, test_loader, device=device)
    val_m = evaluate_classifier(ensemble, val_loader, device=device)
    metrics = {
        "test_acc": test_m["acc"], "test_nll": test_m["loss"],
        "val_acc": val_m["acc"], "val_nll": val_m["loss"],
        "member_test_acc": [evaluate_classifier(m, test_loader, device=device)["acc"]
                            for m in ensemble.members],
        "minutes": minutes,
        "world_size": info.world_size,
        "member_ranks": owners,
    }
    checkpoint = None
    if out_dir is not None:
        checkpoint = out_dir / "model.pt"
        if distributed.is_main_process():
            save_checkpoint(checkpoint, ensemble, arch="ensemble", config=ensemble.config,
                            meta={"trained_on": config.data, "training": asdict(config),
                                  "num_members": num_members, "metrics": metrics})
        distributed.barrier()
    return TrainedEnsemble(ensemble, metrics, checkpoint, config)
