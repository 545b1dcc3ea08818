"""Safe, atomic checkpoints: weights plus a JSON config from which the model is rebuilt.

A checkpoint is one file written with :func:`torch.save` holding only tensors, strings,
numbers, lists and dicts::

    {"format": "dunno-checkpoint", "version": 1,
     "arch": "nets",                     # key into the model registry
     "config": "<JSON text>",            # keyword arguments of the registered builder
     "meta": "<JSON text>",              # free-form: metrics, dataset, seed, ...
     "state_dict": {name: tensor},       # the weights
     "extra": {name: tensor or plain}}   # optional tensors (e.g. fitted statistics)

Loading uses ``torch.load(weights_only=True)``, so a checkpoint can never run code, and the
model is rebuilt by looking ``arch`` up in an explicit registry of builders (never by an
import path stored in the file). Writes go to a temporary file in the same directory,
are flushed to disk and then renamed over the target, so a crash never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dunno.errors import CheckpointError
from dunno.registry import Registry

__all__ = [
    "MODELS",
    "Checkpoint",
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "build_model",
    "load_checkpoint",
    "load_model",
    "register_model",
    "registered_models",
    "remove_stale_temp_files",
    "safe_load",
    "save_checkpoint",
]

FORMAT = "dunno-checkpoint"
VERSION = 1

#: Model builders ``builder(**config) -> nn.Module`` by architecture name; plugins of the
#: entry-point group ``dunno.models`` (installed code, never anything from a file) included.
MODELS: Registry[Callable[..., nn.Module]] = Registry("model architecture", "dunno.models")
# Our own packages that register builders when imported. Only these fixed names are ever
# imported on behalf of a checkpoint; the file itself cannot name a module.
_REGISTERING_MODULES = ("dunno.nets", "dunno.ensemble", "uncertainty", "generative")


def register_model(arch: str):
    """Decorator registering ``builder(**config) -> nn.Module`` under the name ``arch`` in
    :data:`MODELS` (a name taken by another builder is refused)."""
    return MODELS.register(arch)


@register_model("nets")
def _build_backbone(**config: Any) -> nn.Module:
    """Backbones of :mod:`dunno.nets`, rebuilt from their ``model.config``."""
    from dunno import nets

    return nets.create(**config)


def _load_registries() -> None:
    for module in _REGISTERING_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # pragma: no cover - a package without models yet
            pass


def registered_models() -> list[str]:
    """Names of every registered model builder."""
    _load_registries()
    return sorted(MODELS.available())


def build_model(arch: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its registered builder name and JSON config."""
    if arch not in MODELS:
        _load_registries()
    if arch not in MODELS:
        raise CheckpointError(
            f"Unknown model architecture {arch!r}; known: {', '.join(sorted(MODELS))}."
        )
    builder = MODELS.get(arch)
    try:
        return builder(**config)
    except CheckpointError:  # a nested builder's own message (e.g. an ensemble member's)
        raise
    except (TypeError, ValueError) as err:  # unknown / missing keys, values out of range
        raise CheckpointError(
            f"Cannot rebuild a {arch!r} model from config {config}: {err}"
        ) from err


# ----------------------------------------------------------------------------- writing
def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


#: The temporary files of :func:`atomic_save` / :func:`atomic_write_text` are named
#: ``.<target name>.dunno-<pid>-<random>.tmp`` in the target's directory.
_TEMP_NAME = re.compile(r"^\..+\.dunno-(\d+)-[^.]+\.tmp$")


def _umask() -> int:
    """The process's umask (read from /proc where it can be, without changing it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):  # pragma: no cover - not Linux
        pass
    mask = os.umask(0o022)  # pragma: no cover
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.dunno-{os.getpid()}-", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; open() would give 0666 & ~umask
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:  # the writer failed or was interrupted: the old file stays intact
        try:
            os.unlink(tmp)
        except FileNotFoundError:  # renamed already, or never created
            pass
        raise
    return path


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``folder`` (only
    files of this module's naming, ``.<name>.dunno-<pid>-<random>.tmp``, whose process
    ``pid`` no longer runs on this host); returns the removed paths."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if match and entry.is_file() and not _pid_alive(int(match.group(1))):
            try:
                entry.unlink()
            except FileNotFoundError:  # pragma: no cover - removed meanwhile
                continue
            removed.append(entry)
    return removed


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through a temporary file and an atomic rename."""
    return _atomic_write(path, lambda handle: torch.save(obj, handle), "wb")


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (report, JSON, CSV) atomically (UTF-8)."""
    return _atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), "wb")


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write a binary file (a figure) atomically."""
    return _atomic_write(path, lambda handle: handle.write(data), "wb")


# ----------------------------------------------------------------------------- reading
def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)`` with clear errors.

    Raises :class:`~dunno.errors.CheckpointError` when the file is missing, truncated or
    corrupt (a zip archive, which is what :func:`torch.save` writes, must pass the CRC-32
    check of every member: :func:`torch.load` does not check them, so a flipped byte in the
    weights would otherwise load as other weights), or holds anything other than tensors and
    plain containers (which would need code to be executed to load).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {str(path)!r} does not exist.")
    data = path.read_bytes()  # read once: the bytes checked are the bytes loaded
    if not data:
        raise CheckpointError(f"Checkpoint file {str(path)!r} is empty (0 bytes).")
    buffer = io.BytesIO(data)
    if zipfile.is_zipfile(buffer):
        try:
            with zipfile.ZipFile(buffer) as archive:
                damaged = archive.testzip()
        except Exception as err:  # BadZipFile, a damaged directory, ...
            raise CheckpointError(
                f"Checkpoint file {str(path)!r} is truncated or corrupt and cannot be read "
                f"({type(err).__name__}: {err})."
            ) from err
        if damaged is not None:
            raise CheckpointError(
                f"Checkpoint file {str(path)!r} is corrupt: its part {damaged!r} fails its "
                "CRC-32 check (bytes were changed after it was written)."
            )
    buffer.seek(0)  # is_zipfile and testzip moved it
    try:
        return torch.load(buffer, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        text = str(err)
        if "weights_only" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"Checkpoint file {str(path)!r} contains Python objects other than tensors "
                "and plain containers; refusing to load it because that would execute code "
                "from the file."
            ) from err
        raise CheckpointError(
            f"Checkpoint file {str(path)!r} is truncated or corrupt and cannot be read "
            f"({type(err).__name__}: {text.splitlines()[0] if text else ''})."
        ) from err


@dataclass
class Checkpoint:
    """The decoded content of a checkpoint file."""

    arch: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: The file it was read from (named in the errors of :meth:`build`), if any.
    source: str | None = None

    def build(self) -> nn.Module:
        """Rebuild the model and load the weights (strict); a config or weights that do not
        fit the builder raise :class:`~dunno.errors.CheckpointError` naming the file."""
        try:
            model = build_model(self.arch, self.config)
            _load_state_strict(model, self.state_dict, self.arch)
        except CheckpointError as err:
            if self.source is None:
                raise
            raise CheckpointError(f"Checkpoint file {self.source!r}: {err}") from err
        return model


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    config: dict[str, Any],
    meta: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights with the config that rebuilds it, atomically.

    Parameters
    ----------
    path : path-like
        Target file (conventionally ``*.pt``); parent directories are created.
    model : nn.Module
        The model whose ``state_dict`` is stored (moved to CPU).
    arch : str
        Name of a builder registered with :func:`register_model`.
    config : dict
        JSON-serialisable keyword arguments of that builder.
    meta : dict, optional
        JSON-serialisable information (metrics, dataset, seed, ...).
    extra : dict, optional
        Tensors or plain values (str, int, float, bool, None and lists / tuples / dicts of
        them) stored beside the weights.

    Anything that the file could not be loaded back with (another type, an object in
    ``extra``) is a ValueError here, before the file (and any previous one) is touched.
    """
    check = getattr(model, "check_checkpointable", None)
    if callable(check):  # e.g. an ensemble of members that cannot be rebuilt from a config
        check()
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"The checkpoint 'arch' must be the name of a registered model "
                         f"builder (a non-empty str). Got {arch!r} instead.")
    for name, value in (("config", config), ("meta", meta or {}), ("extra", extra or {})):
        if not isinstance(value, dict):
            raise ValueError(f"The checkpoint {name!r} must be a dict. Got a "
                             f"{type(value).__name__} instead.")
    _check_plain(extra or {}, "extra")
    try:
        config_text = json.dumps(config, sort_keys=True)
        meta_text = json.dumps(meta or {}, sort_keys=True)
    except TypeError as err:
        raise ValueError(
            f"The checkpoint 'config' and 'meta' must be JSON-serialisable: {err}"
        ) from err
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "config": config_text,
        "meta": meta_text,
        "state_dict": state,
        "extra": extra or {},
    }
    return atomic_save(payload, path)


#: What :func:`torch.load` with ``weights_only=True`` reads back without refusing.
_PLAIN = (torch.Tensor, str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Raise ValueError unless ``value`` is made of tensors, plain scalars, strings and
    lists / tuples / dicts of them: anything else would be written, then refused on load."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, list | tuple):
        for k, item in enumerate(value):
            _check_plain(item, f"{where}[{k}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise ValueError(f"The checkpoint's {where} has a key {key!r} of type "
                                 f"{type(key).__name__}; keys must be str or int.")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"The checkpoint's {where} holds a {type(value).__name__}; it must hold "
                     "only tensors, str, int, float, bool, None and lists / tuples / dicts of "
                     "them (anything else could not be loaded without running code).")


def _json_dict(payload: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """The dict stored as JSON text under ``payload[key]``, or a CheckpointError naming the
    file and the key."""
    text = payload.get(key)
    if not isinstance(text, str):
        raise CheckpointError(f"{source!r} is damaged: its {key!r} must be JSON text of a "
                              f"dict. Got {'nothing' if text is None else type(text).__name__}"
                              " instead.")
    try:
        value = json.loads(text)
    except ValueError as err:
        raise CheckpointError(f"{source!r} is damaged: its {key!r} is not valid JSON "
                              f"({err}).") from err
    if not isinstance(value, dict):
        raise CheckpointError(f"{source!r} is damaged: its {key!r} must be a JSON object "
                              f"(a dict). Got a {type(value).__name__} instead.")
    return value


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expected_arch: str | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (never executes code)."""
    payload = safe_load(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a dunno checkpoint (no '{FORMAT}' header). A state dict of "
            "your own model loads with --model package.module:factory --weights FILE "
            "(dunno.models.load_any_model); dunno.models.save_model(model, path, "
            "example_input=...) writes a file that loads without your code."
        )
    version = payload.get("version")
    if type(version) is not int or version != VERSION:  # True == 1 and 1.0 == 1: refused
        raise CheckpointError(
            f"{str(path)!r} has checkpoint version {version!r}; this version of "
            f"dunno reads version {VERSION}."
        )
    source = str(path)
    arch = payload.get("arch")
    if not isinstance(arch, str):
        raise CheckpointError(f"{source!r} is damaged: its 'arch' must be the name of a model "
                              f"builder (a str). Got {arch!r} instead.")
    if expected_arch is not None and arch != expected_arch:
        raise CheckpointError(
            f"{source!r} is a checkpoint for architecture {arch!r}, not {expected_arch!r}."
        )
    config, meta = _json_dict(payload, "config", source), _json_dict(payload, "meta", source)
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{source!r} is damaged: its 'state_dict' must map parameter "
                              "names to tensors.")
    extra = payload.get("extra", {})
    if not isinstance(extra, dict):
        raise CheckpointError(f"{source!r} is damaged: its 'extra' must be a dict. Got a "
                              f"{type(extra).__name__} instead.")
    return Checkpoint(arch=arch, config=config, state_dict=state, meta=meta, extra=extra,
                      source=source)


def load_model(
    path: str | os.PathLike,
    *,
    expected_arch: str | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild and return the model stored in a checkpoint, in eval mode on ``device``."""
    model = load_checkpoint(path, expected_arch=expected_arch).build()
    return model.to(device).eval()


def _load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    check = getattr(model, "check_state_dict", None)
    if callable(check):  # a model's own, clearer message (e.g. a VAE's latent size)
        check(state)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    # load_state_dict would cast silently (float64 weights rounded to float32, floats
    # truncated into an integer buffer): the rebuilt model would not compute what was saved
    retyped = [f"{k}: checkpoint {state[k].dtype} vs model {own[k].dtype}"
               for k in own if k in state and state[k].dtype != own[k].dtype]
    if missing or unexpected or mismatched or retyped:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(
                f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
            )
        if mismatched:
            parts.append(f"shape mismatches {mismatched[:5]}")
        if retyped:
            parts.append(f"dtype mismatches {retyped[:5]}")
        raise CheckpointError(
            f"The weights do not fit the {arch!r} model rebuilt from the config (a checkpoint "
            f"for another architecture?): {'; '.join(parts)}."
        )
    model.load_state_dict(state)
