"""The training state behind :func:`dunno.training.fit`'s exact resume: the states of the
named objects (models, optimisers, schedulers, Pyro param stores), the history so far and
every random generator (Python, NumPy, torch CPU and CUDA, and the loader's shuffling
generator), saved atomically after every epoch and checked on load against the run that
resumes it."""

from __future__ import annotations

import ast
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from dunno import distributed
from dunno.checkpoints import atomic_save, safe_load
from dunno.errors import CheckpointError

__all__ = [
    "TRAINING_STATE_FORMAT",
    "load_training_state",
    "object_state",
    "restore_object",
    "rng_state",
    "save_training_state",
    "set_rng_state",
]

TRAINING_STATE_FORMAT = "dunno-training-state"


def object_state(obj: Any) -> Any:
    """``obj.state_dict()`` (modules unwrapped from DDP) or ``obj.get_state()``."""
    obj = distributed.unwrap(obj) if isinstance(obj, nn.Module) else obj
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if hasattr(obj, "get_state"):
        return obj.get_state()
    raise TypeError(f"Cannot checkpoint {type(obj).__name__}: it has no state_dict()/get_state().")


def restore_object(obj: Any, state: Any) -> None:
    """The inverse of :func:`object_state`."""
    obj = distributed.unwrap(obj) if isinstance(obj, nn.Module) else obj
    if hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
    elif hasattr(obj, "set_state"):
        obj.set_state(state)
    else:  # pragma: no cover - guarded by object_state on save
        raise TypeError(f"Cannot restore {type(obj).__name__}.")


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators, as
    tensors and plain values (loadable with ``torch.load(weights_only=True)``)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(
            np.frombuffer(np.random.get_state()[1].tobytes(), dtype=np.uint8).copy()
        ),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": repr(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    keys = np.frombuffer(state["numpy"].numpy().tobytes(), dtype=np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path, states: Mapping[str, Any], generator=None, **values: Any) -> None:
    """Write the training state atomically: ``states`` (name -> object, saved with
    :func:`object_state`), the global generators, the loader's ``generator`` and ``values``
    (epoch, history, early-stopping and budget bookkeeping)."""
    atomic_save(
        {
            "format": TRAINING_STATE_FORMAT,
            **values,
            "states": {k: object_state(v) for k, v in states.items()},
            "rng": rng_state(),
            "loader_rng": generator.get_state() if generator is not None else None,
        },
        path,
    )


def load_training_state(path, states: Mapping[str, Any], generator=None) -> dict[str, Any]:
    """Read a state written by :func:`save_training_state`, restore ``states``, the global
    generators and the loader's ``generator`` from it, and return the saved dict.

    Raises :class:`~dunno.errors.CheckpointError` for a file that is not a training state or
    that belongs to a run with other named objects.
    """
    saved = safe_load(path)
    if not isinstance(saved, dict) or saved.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a dunno training state.")
    if set(saved["states"]) != set(states):
        raise CheckpointError(
            f"{str(path)!r} holds states {sorted(saved['states'])}, but this run has "
            f"{sorted(states)}: it belongs to another training setup."
        )
    for name, obj in states.items():
        try:
            restore_object(obj, saved["states"][name])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"Cannot restore {name!r} from {str(path)!r}: {err}") from err
    set_rng_state(saved["rng"])
    if generator is not None and saved.get("loader_rng") is not None:
        generator.set_state(saved["loader_rng"])
    return saved
