"""The calibrator registry (``make_calibrator("temperature")``) and calibrator files.

:data:`CALIBRATORS` is a :class:`dunno.registry.Registry` (read like a dict). A new method is
a :class:`~uncertainty.calibration._base.Calibrator` subclass with a ``name``, added with
:func:`register_calibrator` (usable as a class decorator) or, from another distribution,
through the entry-point group ``dunno.calibrators``::

    [project.entry-points."dunno.calibrators"]
    my-method = "my_package.calibration:MyCalibrator"

A calibrator file is written atomically with :func:`torch.save` and holds only plain values
and tensors (read back with ``weights_only=True``, never executing code)::

    {"format": "dunno-calibrator", "version": 1, "method": "temperature",
     "params": "<JSON of the hyper-parameters>", "state": {learned attributes}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dunno.checkpoints import atomic_save, safe_load
from dunno.errors import CheckpointError
from dunno.registry import Registry
from uncertainty.calibration._base import Calibrator
from uncertainty.calibration.beta import BetaCalibration, PlattScaling
from uncertainty.calibration.histogram import HistogramBinning
from uncertainty.calibration.isotonic import IsotonicCalibration
from uncertainty.calibration.temperature import TemperatureScaling
from uncertainty.calibration.vector_matrix import MatrixScaling, VectorScaling

__all__ = [
    "CALIBRATORS",
    "available_calibrators",
    "calibrator_to_dict",
    "calibrator_from_dict",
    "load_calibrator",
    "make_calibrator",
    "register_calibrator",
    "save_calibrator",
]





#: Every calibrator by registry name, multi-class methods first (plugins of the entry-point
#: group ``dunno.calibrators`` after them).
CALIBRATORS: Registry[type[Calibrator]] = Registry(
    "calibration method", "dunno.calibrators", base=Calibrator
)
for _cls in (TemperatureScaling, VectorScaling, MatrixScaling, HistogramBinning,
             IsotonicCalibration, PlattScaling, BetaCalibration):
    CALIBRATORS.register(obj=_cls)
del _cls

FORMAT = "dunno-calibrator"
VERSION = 1


def available_calibrators(num_classes: int | None = None) -> list[str]:
    """Registry names, in registry order; with ``num_classes``, those defined for it
    (the binary-only Platt and beta calibration need ``num_classes == 2``)."""
    return [name for name, cls in CALIBRATORS.items()
            if num_classes is None or not cls.binary_only or num_classes == 2]


def register_calibrator(cls: type[Calibrator]) -> type[Calibrator]:
    """Add ``cls`` to :data:`CALIBRATORS` under ``cls.name`` (usable as a class decorator);
    a name taken by another class is refused."""
    return CALIBRATORS.register(obj=cls)


def make_calibrator(name: str, **params: Any) -> Calibrator:
    """A new, unfitted calibrator ``name`` (see :data:`CALIBRATORS`) with ``params``."""
    cls = CALIBRATORS.get(name)
    accepted = cls.param_names()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for {cls.__name__}; accepted: {accepted}."
        )
    return cls(**params)


def calibrator_to_dict(calibrator: Calibrator) -> dict[str, Any]:
    """A fitted calibrator as plain values and CPU tensors (what :func:`save_calibrator`
    writes)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "method": calibrator.name,
        "params": json.dumps(calibrator.get_params(), sort_keys=True),
        "state": calibrator.state_dict(),
        # The model it was fitted for (CalibratedClassifier records it), or None.
        "model_fingerprint": getattr(calibrator, "model_fingerprint_", None),
    }


def calibrator_from_dict(payload: Any, source: str = "the payload") -> Calibrator:
    """Rebuild a fitted calibrator from :func:`calibrator_to_dict`'s output."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{source} is not a dunno calibrator (no '{FORMAT}' header).")
    version = payload.get("version")
    if type(version) is not int or version != VERSION:  # True == 1 and 1.0 == 1: refused
        raise CheckpointError(
            f"{source} has calibrator version {version!r}; this version of dunno reads "
            f"version {VERSION}."
        )
    try:
        raw = json.loads(payload["params"])
        if not isinstance(raw, dict):
            raise ValueError(f"its params must be a JSON object; got {type(raw).__name__}")
        params = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in raw.items()}  # JSON turned tuples to lists
        calibrator = make_calibrator(payload["method"], **params)
        state = payload["state"]
        if not isinstance(state, dict):
            raise ValueError(f"its state must be a dict; got {type(state).__name__}")
        calibrator.load_state_dict(state)
    except KeyError as err:
        raise CheckpointError(f"{source} is damaged: it has no {err.args[0]!r}.") from err
    except (TypeError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{source}: {err}") from err
    fingerprint = payload.get("model_fingerprint")
    if fingerprint is not None:
        calibrator.model_fingerprint_ = str(fingerprint)
    return calibrator


def save_calibrator(calibrator: Calibrator, path: str | os.PathLike) -> Path:
    """Write a fitted calibrator to ``path`` atomically."""
    return atomic_save(calibrator_to_dict(calibrator), path)


def load_calibrator(path: str | os.PathLike) -> Calibrator:
    """Read a calibrator written by :func:`save_calibrator` (never executes code)."""
    return calibrator_from_dict(safe_load(path), repr(str(path)))
