"""Multi-process training and evaluation on PyTorch's own distributed engine.

Nothing here schedules processes: launch with ``torchrun`` (one node or several, with the
usual rendezvous flags) and :func:`setup` reads the environment it sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``)::

    torchrun --nproc_per_node=2 -m dunno.cli train classifier --data mnist --out runs/ddp

* :func:`setup` initialises the default process group (``nccl`` on CUDA, ``gloo`` on CPU)
  and returns a :class:`DistInfo`; in a plain single process it is a no-op.
* :func:`wrap_model` wraps a module in :class:`~torch.nn.parallel.DistributedDataParallel`
  (gradients averaged over ranks) when more than one process runs.
* :class:`ShardedBatchLoader` (what :func:`dunno.data.make_loader` returns for shuffled
  training data inside a process group) draws one global permutation per epoch from a
  generator seeded identically on every rank and gives rank ``r`` the ``r``-th contiguous
  slice of every global batch. Hence ``batch_size`` is the *global* batch, every epoch is
  reshuffled, and an epoch of ``N`` ranks sees exactly the batches of the single-process
  run: with mean losses and DDP's gradient averaging the updates are the same (up to
  floating-point summation order) whatever the world size, and a run resumes from a
  checkpoint written with another world size.
* :func:`all_reduce_sums` and :func:`reduce_accumulator` reduce epoch metrics and the
  streaming metric accumulators of :mod:`evaluation.metrics` across ranks.
* Only rank 0 writes checkpoints and reports (:func:`is_main_process`).
* :func:`local_only` turns all of that off for a block of per-rank work (the members of a
  deep ensemble spread over ranks, :mod:`dunno.ensemble`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "ShardedBatchLoader",
    "all_reduce_sums",
    "barrier",
    "current",
    "is_main_process",
    "local_only",
    "reduce_accumulator",
    "setup",
    "teardown",
    "unwrap",
    "wrap_model",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


_LOCAL_DEPTH = 0  # > 0 inside local_only()


@contextmanager
def local_only():
    """Inside this block the process acts as a single process although a group is running:
    :func:`current` reports world size 1, so :func:`wrap_model` does not wrap, loaders do not
    shard, :func:`dunno.training.fit` reduces nothing across ranks and this rank writes its
    own files. For work that is independent per rank, such as training the members of a deep
    ensemble (:func:`dunno.ensemble.train_ensemble`: member ``k`` on rank ``k mod N``, no
    gradient sharing)."""
    global _LOCAL_DEPTH
    _LOCAL_DEPTH += 1
    try:
        yield
    finally:
        _LOCAL_DEPTH -= 1


def current() -> DistInfo:
    """The running process group's view (single process when none is initialised, or inside
    :func:`local_only`)."""
    if _LOCAL_DEPTH == 0 and dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def is_main_process() -> bool:
    """True on rank 0 (and in a plain single process)."""
    return current().rank == 0


def setup(device: torch.device | str | None = None, *, timeout_s: float = 300.0) -> DistInfo:
    """Initialise the default process group from ``torchrun``'s environment variables.

    Does nothing (and returns a single-process :class:`DistInfo`) when ``WORLD_SIZE`` is
    unset or 1, or when a group is already initialised. The backend is ``nccl`` for CUDA
    devices and ``gloo`` otherwise; on CUDA the local rank's GPU becomes current.
    """
    if _LOCAL_DEPTH > 0 or (dist.is_available() and dist.is_initialized()):
        return current()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed.")
    device = torch.device(device) if device is not None else None
    use_cuda = device is not None and device.type == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    from datetime import timedelta

    dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                            timeout=timedelta(seconds=timeout_s))
    return current()


def teardown() -> None:
    """Destroy the default process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if current().enabled:
        dist.barrier()


def wrap_model(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """``DistributedDataParallel(model)`` when several processes run, else ``model``.

    On CUDA the module must already be on the local rank's device.
    """
    info = current()
    if not info.enabled:
        return model
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index or 0])
    return nn.parallel.DistributedDataParallel(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP (or ``torch.compile``) wrapper."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def all_reduce_sums(values: dict[str, float]) -> dict[str, float]:
    """Sum each named float over ranks (float64; identity in a single process).

    Keys must be the same on every rank.
    """
    if not current().enabled or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(keys, tensor.tolist(), strict=True))


def reduce_accumulator(accumulator):
    """Merge a streaming accumulator (``state_dict`` / ``merge``) from every rank.

    Every rank ends with the accumulator of the whole data, merged in rank order: for
    :class:`evaluation.metrics.OODAccumulator` the metrics equal the single-process ones
    bit for bit; for :class:`evaluation.metrics.CalibrationAccumulator` the counts are exact
    and float sums differ only by summation order. Returns the accumulator.
    """
    info = current()
    if not info.enabled:
        return accumulator
    import copy

    states = [None] * info.world_size
    dist.all_gather_object(states, accumulator.state_dict())
    empty = copy.deepcopy(accumulator).reset()
    accumulator.reset()
    for state in states:  # rank order
        accumulator.merge(copy.deepcopy(empty).load_state_dict(state))
    return accumulator


class ShardedBatchLoader:
    """Global-batch sharding over ranks for an in-memory dataset (see the module docstring).

    ``batch_size`` is the global batch; each rank yields its contiguous share (sizes differ
    by at most one when the batch does not divide evenly, so use a batch size divisible by
    the world size for exact equivalence with a single process). A final batch with fewer
    examples than ranks is dropped.
    """

    def __init__(self, dataset, batch_size: int, *, generator: torch.Generator,
                 drop_last: bool = False, transform=None, info: DistInfo | None = None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.generator = generator
        self.drop_last = drop_last
        self.transform = transform
        self.info = info or current()

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator)  # same on every rank
        x, y = self.dataset.x, self.dataset.targets
        rank, world = self.info.rank, self.info.world_size
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if self.drop_last and stop - start < self.batch_size:
                break
            if stop - start < world:  # a tail too small to give every rank an example
                break
            chunk = order[start:stop].tensor_split(world)[rank]
            xb, yb = x[chunk], y[chunk]
            if self.transform is not None:
                xb = self.transform(xb)
            yield xb, yb
