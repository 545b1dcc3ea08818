"""A model built by the user's own code: ``--model package.module:factory --weights FILE``.

**What runs.** :func:`import_factory` imports the module the user names -- with
:func:`importlib.import_module` for a dotted name (found on ``sys.path``; the current directory
is searched last, so ``--model mynet:build`` finds ``./mynet.py``), or from a ``.py`` file
given by path (``--model path/to/mynet.py:build``) -- and looks the attribute up. That import,
and the call ``factory(**options)``, are the only code that runs, and it is code the user
chose; nothing is ever imported or executed on behalf of a file.

**The weights** never run code: a ``torch.save`` file is read with
``torch.load(weights_only=True)`` (tensors and plain containers only), a ``.safetensors`` file
by :func:`read_safetensors` (a JSON header and raw little-endian buffers). Either a state dict
``{name: tensor}``, a dict with a ``"state_dict"`` entry holding one, or a project checkpoint
(its ``state_dict``). They are loaded strictly: a missing or unexpected key, or a shape that
differs, is a :class:`~dunno.errors.CheckpointError` listing them.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dunno.checkpoints import FORMAT, safe_load
from dunno.errors import CheckpointError
from dunno.models.detect import detect_model_file

__all__ = ["import_factory", "load_factory_model", "load_state_dict_file", "read_safetensors"]

_SPEC = re.compile(r"^(?P<module>[^:]+):(?P<attr>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_]\w*)*)$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def import_factory(spec: str) -> Callable[..., Any]:
    """``"package.module:factory"`` or ``"path/to/file.py:factory"`` -> the callable.

    Raises ValueError naming ``spec`` when it is malformed, the module cannot be imported, or
    the attribute is missing or not callable.
    """
    match = _SPEC.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"The 'model' argument (--model) must look like "
                         f"package.module:factory or path/to/file.py:factory. Got {spec!r}.")
    module_name, attr = match["module"], match["attr"]
    if module_name.endswith(".py"):
        file = Path(module_name)
        if not file.is_file():
            raise ValueError(f"--model {spec!r}: the file {module_name!r} does not exist.")
        name = f"dunno_user_model_{abs(hash(str(file.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as err:
            raise ValueError(f"--model {spec!r}: importing {module_name!r} failed: "
                             f"{type(err).__name__}: {err}") from err
    else:
        if not _DOTTED.match(module_name):
            raise ValueError(f"--model {spec!r}: {module_name!r} is not a module name "
                             "(package.module) nor a .py file.")
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.append(cwd)
        try:
            module = importlib.import_module(module_name)
        except Exception as err:
            raise ValueError(f"--model {spec!r}: cannot import {module_name!r} "
                             f"({type(err).__name__}: {err}); it must be installed or on the "
                             "Python path (the current directory is searched last).") from err
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"--model {spec!r}: the module {module_name!r} has no attribute "
                             f"{attr!r}.")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"--model {spec!r}: {attr!r} is a {type(target).__name__}, not a "
                         "callable that builds the model.")
    return target


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file: an 8-byte little-endian header length, a JSON
    header ``{name: {"dtype", "shape", "data_offsets"}}`` and the raw buffers. Pure parsing
    (no code runs); raises :class:`~dunno.errors.CheckpointError` for a malformed file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + size])
        body = memoryview(data)[8 + size:]
        out = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
            if dtype is None:
                raise CheckpointError(f"Weights file {str(path)!r}: tensor {name!r} has dtype "
                                      f"{entry['dtype']}, which dunno does not read.")
            start, stop = entry["data_offsets"]
            if not 0 <= start <= stop <= len(body):
                raise ValueError(f"offsets {start}..{stop} outside the data")
            array = np.frombuffer(body[start:stop], dtype=np.dtype(dtype).newbyteorder("<"))
            out[name] = torch.from_numpy(array.reshape(entry["shape"]).astype(dtype))
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"Weights file {str(path)!r} is not a valid safetensors file "
                              f"({type(err).__name__}: {err}).") from err
    return out


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in a weights file (see the module docstring), without running code."""
    kind = detect_model_file(path)
    if kind == "safetensors":
        return read_safetensors(path)
    if kind != "checkpoint":
        raise CheckpointError(f"--weights {str(path)!r} is a {kind} file, which is a whole "
                              "model: pass it as --checkpoint instead of --model/--weights.")
    payload = safe_load(path)
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT:
        payload = payload["state_dict"]
    elif isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    if not isinstance(payload, Mapping) or not payload or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
        raise CheckpointError(f"--weights {str(path)!r} does not hold a state dict "
                              "{name: tensor} (torch.save(model.state_dict(), path)).")
    return dict(payload)


def load_factory_model(
    spec: str,
    weights: str | os.PathLike | None,
    *,
    options: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build ``factory(**options)`` from ``spec`` (:func:`import_factory`), load ``weights``
    strictly, and return it in eval mode on ``device`` with ``dunno_info`` set (kind
    ``"factory"``)."""
    if weights is None:
        raise ValueError(f"--model {spec!r} needs --weights FILE (the trained weights; a model "
                         "with freshly initialised weights would give meaningless numbers).")
    factory = import_factory(spec)
    try:
        model = factory(**(options or {}))
    except TypeError as err:
        raise ValueError(f"--model {spec!r}: calling the factory with options "
                         f"{options or {}} failed: {err}") from err
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {spec!r} must build a torch.nn.Module. Got "
                         f"{type(model).__name__} instead.")
    state = load_state_dict_file(weights)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: weights {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}"
                         f"{' ...' if len(unexpected) > 5 else ''}")
        if mismatched:
            parts.append(f"shape mismatches {mismatched[:5]}")
        raise CheckpointError(f"The weights in {str(weights)!r} do not fit the model built by "
                              f"{spec!r}: {'; '.join(parts)}.")
    model.load_state_dict(state)
    model.dunno_info = {"kind": "factory", "source": f"{spec} + {weights}"}
    return model.to(device).eval()
