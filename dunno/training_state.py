"""The training state behind :func:`dunno.training.fit`'s exact resume: the states of the
named objects (models, optimisers, schedulers, Pyro param stores), the history so far and
every random generator (Python, NumPy, torch CPU and CUDA, and the loader's shuffling
generator), saved atomically after every epoch and checked on load against the run that
resumes it.

A recipe's run configuration is part of the state: :func:`run_fingerprint` hashes it (minus
:data:`RESUMABLE_KEYS`, the fields a resumed run may change), and a run resumes only a state
with its own fingerprint -- :func:`check_run_config` names every differing key with both
values otherwise, so ``--resume`` never continues (and then overwrites) another run."""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import random
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dunno import distributed
from dunno.checkpoints import atomic_save, safe_load
from dunno.errors import CheckpointError

__all__ = [
    "ADDED_KEYS",
    "ADDED_STATES",
    "RECORDED_LATER",
    "RESUMABLE_KEYS",
    "TRAINING_STATE_FORMAT",
    "check_run_config",
    "data_identity",
    "load_training_state",
    "object_state",
    "restore_object",
    "rng_state",
    "run_fingerprint",
    "save_training_state",
    "set_rng_state",
    "training_state_file",
]

TRAINING_STATE_FORMAT = "dunno-training-state"

#: Run-configuration fields a resumed run may change: the length of the run (``epochs``,
#: ``max_minutes``: the schedule is re-planned, see :mod:`dunno.schedules`), where and how
#: fast it runs (``device``, ``compile``, ``quiet``) and the scoring after training (``test``,
#: ``samples_k``, ``test_size``). Every other field must match.
RESUMABLE_KEYS = frozenset({"epochs", "max_minutes", "device", "compile", "quiet", "test",
                            "samples_k", "test_size"})


#: Run-configuration fields added after training states were first written, each with the
#: value that does what runs did before the field existed: a state written without one is
#: read as holding that value, so it resumes under the old behaviour and is refused (naming
#: the field) under another. ``budget_clock``: budgets were wall-clock time before it.
#: ``crop_padding``, ``flip``, ``normalize`` (classifier runs): ``None`` is the data's usual
#: augmentation, which for every dataset and backbone that existed before them is what runs
#: did (2-pixel crops for 28x28 and larger, no flips, no input normalisation).
ADDED_KEYS: Mapping[str, Any] = {"budget_clock": "wall", "crop_padding": None, "flip": None,
                                 "normalize": None}


#: Run-configuration records that states written before them lack, and whose old values are
#: unknown: such a state is compared without them. ``model_config``: the built model's own
#: config (``model.config``), so that a changed library default of a model parameter (which
#: ``options`` does not show) is refused on resume, naming the parameter's record.
RECORDED_LATER = frozenset({"model_config"})

#: Named training-state objects added after states were first written: a state without one
#: is still this run's, and the object keeps its freshly seeded state, as every resume did
#: before it was saved. ``augmentation``: a classifier's crop and flip generators.
ADDED_STATES = frozenset({"augmentation"})


def _canonical(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` minus :data:`RESUMABLE_KEYS`, as plain JSON values (tuples as lists)."""
    kept = {k: v for k, v in config.items() if k not in RESUMABLE_KEYS}
    return json.loads(json.dumps(kept, sort_keys=True, default=repr))


def run_fingerprint(config: Mapping[str, Any]) -> str:
    """A stable hash of a run configuration (a dict such as ``asdict(ClassifierConfig)``):
    the SHA-256 of its sorted JSON without :data:`RESUMABLE_KEYS`, 16 hex digits."""
    text = json.dumps(_canonical(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_identity(dataset: Any) -> dict[str, Any]:
    """What a run configuration records of its training data beyond the dataset spec, so
    that a resume on other data under the same name (a replaced ``mine.npz``) is refused:
    ``train_examples`` (its length), ``input_shape`` and ``classes`` (the class names, when
    the data has them)."""
    info = getattr(dataset, "info", None)
    shape = getattr(info, "shape", None)
    extras = getattr(info, "extras", None) or {}
    return {"train_examples": len(dataset),
            "input_shape": None if shape is None else [int(s) for s in shape],
            "classes": extras.get("classes")}


def check_run_config(saved: Mapping[str, Any] | None, config: Mapping[str, Any],
                     where: str) -> None:
    """Raise :class:`~dunno.errors.CheckpointError` unless the run configuration ``saved``
    (read from ``where``, a path) equals ``config`` up to :data:`RESUMABLE_KEYS`; the
    message names every differing key with the saved value and this run's. A field of
    :data:`ADDED_KEYS` that ``config`` has and ``saved`` lacks is read as its old-behaviour
    value; a record of :data:`RECORDED_LATER` that ``saved`` lacks is not compared."""
    if saved is None:
        raise CheckpointError(f"{where!r} records no run configuration (it was written by an "
                              "older version or outside a training recipe), so it cannot be "
                              "checked to belong to this run; start a new run instead.")
    implied = {k: v for k, v in ADDED_KEYS.items() if k in config and k not in saved}
    config = {k: v for k, v in config.items() if k in saved or k not in RECORDED_LATER}
    old, new = _canonical({**implied, **saved}), _canonical(config)
    if old == new:
        return

    def there(key):
        value = f"{old.get(key, '<unset>')!r}"
        return value + (" (implied: written before the field existed)" if key in implied
                        else "")

    diffs = [f"{key}: {there(key)} there, {new.get(key, '<unset>')!r} now"
             for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    raise CheckpointError(f"{where!r} belongs to another run (fingerprint "
                          f"{run_fingerprint(saved)}, this run {run_fingerprint(config)}): "
                          f"{'; '.join(diffs)}. Resume with the same settings, or start the "
                          "new run in another output directory.")


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
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.frombuffer(keys.tobytes(), dtype=np.uint8).copy()),
        "numpy_pos": int(pos),
        # the second normal of the last Box-Muller pair, returned by the next normal draw
        "numpy_gauss": [int(has_gauss), float(cached_gaussian)],
        "python": repr(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state` (a state written without NumPy's
    cached normal draw restores none)."""
    torch.set_rng_state(state["torch"])
    keys = np.frombuffer(state["numpy"].numpy().tobytes(), dtype=np.uint32)
    has_gauss, cached_gaussian = state.get("numpy_gauss", (0, 0.0))
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), int(has_gauss),
                         float(cached_gaussian)))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path, states: Mapping[str, Any], generator=None,
                        run_config: Mapping[str, Any] | None = None, **values: Any) -> None:
    """Write the training state atomically: ``states`` (name -> object, saved with
    :func:`object_state`), the global generators, the loader's ``generator``, the
    ``run_config`` (JSON text) with its :func:`run_fingerprint`, and ``values`` (epoch,
    history, early-stopping and budget bookkeeping)."""
    fingerprint = {} if run_config is None else {
        "run_config": json.dumps(dict(run_config), sort_keys=True, default=repr),
        "fingerprint": run_fingerprint(run_config)}
    atomic_save(
        {
            "format": TRAINING_STATE_FORMAT,
            **fingerprint,
            **values,
            "states": {k: object_state(v) for k, v in states.items()},
            "rng": rng_state(),
            "loader_rng": generator.get_state() if generator is not None else None,
        },
        path,
    )


def load_training_state(path, states: Mapping[str, Any], generator=None,
                        run_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a state written by :func:`save_training_state`, restore ``states``, the global
    generators and the loader's ``generator`` from it, and return the saved dict.

    Raises :class:`~dunno.errors.CheckpointError` for a file that is not a training state,
    that belongs to a run with other named objects or, given this run's ``run_config``, to
    a run with another configuration (:func:`check_run_config`; checked before anything is
    restored), or that is damaged; an object (or generator) that fails to restore leaves
    every object and generator as it was before the call.
    """
    saved = safe_load(path)
    if not isinstance(saved, dict) or saved.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a dunno training state.")
    if not isinstance(saved.get("states"), dict) or not isinstance(saved.get("rng"), dict):
        raise CheckpointError(f"{str(path)!r} is damaged: it lacks the 'states' or 'rng' of "
                              "a training state.")
    if run_config is not None:
        text = saved.get("run_config")
        if text is not None and not isinstance(text, str):
            raise CheckpointError(f"{str(path)!r} is damaged: its 'run_config' must be JSON "
                                  f"text. Got a {type(text).__name__} instead.")
        try:
            recorded = None if text is None else json.loads(text)
        except ValueError as err:
            raise CheckpointError(f"{str(path)!r} is damaged: its 'run_config' is not valid "
                                  f"JSON ({err}).") from err
        if recorded is not None and not isinstance(recorded, dict):
            raise CheckpointError(f"{str(path)!r} is damaged: its 'run_config' must be a JSON "
                                  f"object. Got a {type(recorded).__name__} instead.")
        check_run_config(recorded, run_config, str(path))
    missing = set(states) - set(saved["states"])
    if set(saved["states"]) - set(states) or missing - ADDED_STATES:
        raise CheckpointError(
            f"{str(path)!r} holds states {sorted(saved['states'])}, but this run has "
            f"{sorted(states)}: it belongs to another training setup."
        )
    # A state that fails to restore (after others did) must not leave the run half-restored:
    # every object gets its own state back before the error is raised.
    backups = {name: copy.deepcopy(object_state(obj)) for name, obj in states.items()
               if name not in missing}
    restored: list[str] = []
    try:
        for name, obj in states.items():
            if name in missing:  # written before it was saved: it keeps its seeded start
                continue
            try:
                restore_object(obj, saved["states"][name])
            except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise CheckpointError(
                    f"Cannot restore {name!r} from {str(path)!r}: {err}") from err
            finally:
                restored.append(name)
        generators = {"python": random.getstate(), "numpy": np.random.get_state(),
                      "torch": torch.get_rng_state()}
        try:
            set_rng_state(saved["rng"])
            if generator is not None and saved.get("loader_rng") is not None:
                generator.set_state(saved["loader_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError,
                SyntaxError) as err:
            random.setstate(generators["python"])
            np.random.set_state(generators["numpy"])
            torch.set_rng_state(generators["torch"])
            raise CheckpointError(f"Cannot restore the random generators from "
                                  f"{str(path)!r}: {err}") from err
    except CheckpointError:
        for name in restored:
            restore_object(states[name], backups[name])
        raise
    return saved


@contextmanager
def training_state_file(out: str | Path | None, prefix: str = "dunno-") -> Iterator[Path]:
    """The ``training_state.pt`` path for :func:`fit`: inside ``out`` (created) so that a run
    can resume, or, with ``out=None``, inside a temporary directory removed on exit."""
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder / "training_state.pt"
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp) / "training_state.pt"
