"""``torch.func`` plumbing of :class:`~uncertainty.predictive.ensemble.DeepEnsemble`: the
members' stacked parameters evaluated by one ``vmap`` over ``functional_call``, the trial
pass that tells whether ``vmap`` handles a model, and the timing probe of the two
inference paths."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = ["best_times", "has_batch_norm", "stacked_forward", "vmap_trial"]


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` holds a batch-norm layer (in place running statistics)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def stacked_forward(members: list[nn.Module], *, train: bool, shared_input: bool,
                    params=None, buffers=None):
    """``(params, buffers, fn)`` with ``fn(params, buffers, x)`` the members' outputs
    ``(M, N, ...)`` in one ``vmap``: ``x (M, N, ...)`` (one batch per member, random
    numbers drawn per member) or, with ``shared_input``, ``x (N, ...)`` for all. ``params``
    / ``buffers`` default to the members' stacked (detached) state."""
    if params is None:
        params, buffers = stack_module_state(members)
        params = {k: v.detach() for k, v in params.items()}
        buffers = {k: v.detach() for k, v in buffers.items()}
    base = copy.deepcopy(members[0]).to("meta").train(train)

    def call(p, b, xx):
        return functional_call(base, (p, b), (xx,))

    if shared_input:
        return params, buffers, vmap(call, in_dims=(0, 0, None))
    return params, buffers, vmap(call, randomness="different")


def vmap_trial(member: nn.Module, x: torch.Tensor, vectorize, owner: str) -> tuple[bool, str]:
    """Whether ``vmap`` handles ``member`` (a train-mode and an eval-mode pass on 2 rows of
    ``x``) and why; ``vectorize=True`` turns a failure into a ValueError."""
    if vectorize is False:
        return False, "vectorize=False"
    if has_batch_norm(member):
        reason = "batch norm updates running statistics in place in training mode"
        if vectorize is True:
            raise ValueError(f"{owner} cannot vectorise this model: {reason}.")
        return False, reason
    try:
        probe = [copy.deepcopy(member), copy.deepcopy(member)]
        xb = x[:2].unsqueeze(0).expand(2, *x[:2].shape)
        for training in (True, False):
            params, buffers, fn = stacked_forward(probe, train=training, shared_input=False)
            fn(params, buffers, xb)
    except Exception as err:  # noqa: BLE001 - any failure means "cannot vmap"
        if vectorize is True:
            raise ValueError(
                f"{owner} cannot vectorise this model with torch.func.vmap: "
                f"{type(err).__name__}: {err}"
            ) from err
        return False, f"vmap failed ({type(err).__name__}: {err}); using a loop"
    return True, "torch.func.vmap over stacked parameters"


def best_times(runs: dict[str, Callable[[], object]], rounds: int = 3) -> dict[str, float]:
    """The best of ``rounds`` wall times (seconds) of each zero-argument callable, the
    callables alternating within each round (a busy machine slows them alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(ts) for name, ts in times.items()}
