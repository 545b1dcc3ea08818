"""Model files of every kind the toolkit reads, told apart by their content, and
:func:`save_model`, which writes a self-contained one for any module.

Four kinds of classifier reach the command line and :func:`load_any_model`:

``"checkpoint"``
    A project checkpoint (:func:`dunno.checkpoints.save_checkpoint`): weights plus the JSON
    config of a registered builder. Read with ``torch.load(weights_only=True)``.
``"torchscript"``
    A TorchScript archive (``torch.jit.save``), read with :func:`torch.jit.load`. TorchScript
    code is run by the TorchScript interpreter; no pickled Python object is ever rebuilt.
``"export"``
    A ``torch.export`` program (``torch.export.save``, conventionally ``.pt2``), read with
    :func:`torch.export.load` and wrapped in :class:`ExportedModel`.
``"factory"``
    ``model="package.module:factory"`` plus ``weights=FILE``: the named module of the user's
    own code is imported (an explicit, documented import: the only code that runs is the code
    the user names), ``factory(**model_options)`` builds the module and the weights -- a state
    dict written with ``torch.save`` (read with ``weights_only=True``), a ``.safetensors``
    file, or a project checkpoint -- are loaded with a strict key check
    (:mod:`dunno.models.factory`).

The kind of a file is found by :func:`detect_model_file` from its bytes alone (the entries of
the zip archive ``torch`` writes, or a safetensors header), never by running anything and
never from the file name.

Every loaded model carries ``model.dunno_info``: a dict with the ``kind``, the ``source`` and,
when the file records them, the ``input_shape`` of one example (e.g. ``(1, 8, 8)``) and the
``num_classes`` -- what :func:`dunno.models.check_model_data` compares the data against.
:func:`save_model` records both in the file (``extra/dunno.json``).
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dunno.checkpoints import _atomic_write, load_checkpoint
from dunno.errors import CheckpointError
from dunno.models.checks import finite_pair
from dunno.models.detect import MODEL_FILE_KINDS, detect_model_file, zip_entries
from dunno.models.factory import load_factory_model

__all__ = [
    "MODEL_FILE_KINDS",
    "ExportedModel",
    "detect_model_file",
    "load_any_model",
    "load_model_file",
    "read_model_metadata",
    "save_model",
]

#: The entry of a TorchScript / export archive that holds :func:`save_model`'s metadata.
METADATA_NAME = "dunno.json"
METADATA_FORMAT = "dunno-model"


def _check_metadata(meta: Any, path: Path) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        return {}
    out: dict[str, Any] = {}
    shape = meta.get("input_shape")
    if isinstance(shape, list) and shape and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        out["input_shape"] = tuple(shape)
    classes = meta.get("num_classes")
    if isinstance(classes, int) and not isinstance(classes, bool) and classes >= 1:
        out["num_classes"] = classes
    span = finite_pair(meta.get("input_range"))  # the training inputs' (min, max)
    if span is not None:
        out["input_range"] = list(span)
    for key in ("trained_on", "split_rule"):  # what the training run's splits were
        if isinstance(meta.get(key), str):
            out[key] = meta[key]
    return out


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """``{"input_shape": (C, H, W), "num_classes": K}`` (each only when known) recorded in a
    model file: :func:`save_model`'s ``dunno.json`` entry of a TorchScript / export archive, or
    the ``meta`` of a project checkpoint. Reads JSON only."""
    path = Path(path)
    entries = zip_entries(path) or []
    for name in entries:
        if name.rsplit("/", 1)[-1] == METADATA_NAME and "/extra/" in f"/{name}":
            with zipfile.ZipFile(path) as archive:
                try:
                    return _check_metadata(json.loads(archive.read(name)), path)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return {}
    return {}


class ExportedModel(nn.Module):
    """A loaded ``torch.export`` program as a classifier module: ``forward(x)`` runs the
    program. The program was captured in eval mode (dropout off, batch-norm statistics
    frozen), so :meth:`train` only sets the flag and changes no computation; its weights are
    the ``program``'s."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The program's output for ``x``, e.g. logits ``(N, C)``."""
        return self.program(x)

    def train(self, mode: bool = True) -> ExportedModel:
        """Set ``self.training`` only (an exported graph has no train mode)."""
        self.training = mode
        return self


def _info(model: nn.Module, kind: str, source: str, meta: dict[str, Any]) -> nn.Module:
    model.dunno_info = {"kind": kind, "source": source, **meta}
    return model


def _export_input_shape(program) -> tuple[int, ...] | None:
    """The static per-example shape of an exported program's one tensor input, if it has
    exactly one and only its batch dimension is symbolic."""
    try:
        user = [s.arg.name for s in program.graph_signature.input_specs
                if s.kind.name == "USER_INPUT"]
        nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        if len(user) != 1:
            return None
        shape = nodes[user[0]].meta["val"].shape
        dims = tuple(int(s) for s in shape[1:])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return dims or None


def load_model_file(path: str | os.PathLike, *, device: str | torch.device = "cpu",
                    expected_arch: str | None = None) -> nn.Module:
    """Load a classifier file of any kind (:func:`detect_model_file`) in eval mode on
    ``device``, with ``model.dunno_info`` set (see the module docstring)."""
    path = Path(path)
    kind = detect_model_file(path)
    source = str(path)
    if kind == "checkpoint":
        ckpt = load_checkpoint(path, expected_arch=expected_arch)
        model = ckpt.build()
        meta = _check_metadata({"format": METADATA_FORMAT, **ckpt.meta}, path)
        return _info(model.to(device).eval(), kind, source, meta)
    if expected_arch is not None:
        raise CheckpointError(f"{source!r} is a {kind} file, not a checkpoint for "
                              f"architecture {expected_arch!r}.")
    meta = read_model_metadata(path)
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; we read it
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(str(path), map_location=device)
        except Exception as err:  # RuntimeError for a corrupt archive
            raise CheckpointError(f"TorchScript file {source!r} cannot be loaded: "
                                  f"{_first_line(err)}") from err
        return _info(model.eval(), kind, source, meta)
    if kind == "export":
        try:
            program = torch.export.load(str(path))
        except Exception as err:
            raise CheckpointError(f"torch.export program {source!r} cannot be loaded: "
                                  f"{_first_line(err)}") from err
        if "input_shape" not in meta:
            shape = _export_input_shape(program)
            if shape is not None:
                meta["input_shape"] = shape
        model = ExportedModel(program.module()).to(device)
        return _info(model.eval(), kind, source, meta)
    raise CheckpointError(
        f"{source!r} is a safetensors weights file, which holds no model; pass it as "
        "--weights with --model package.module:factory (Python: load_any_model(model=..., "
        "weights=...))."
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def load_any_model(
    path: str | os.PathLike | None = None,
    *,
    model: str | None = None,
    weights: str | os.PathLike | None = None,
    model_options: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Load a classifier from a file of any kind, or build one from the user's own code.

    Parameters
    ----------
    path : path-like, optional
        A project checkpoint, a TorchScript file or a ``torch.export`` program; the kind is
        read from the content (:func:`detect_model_file`).
    model : str, optional
        Instead of ``path``: ``"package.module:factory"`` (or ``"file.py:factory"``); the
        module is imported and ``factory(**model_options)`` must return an ``nn.Module``.
    weights : path-like, optional
        With ``model`` (required there): the weights, loaded strictly
        (:func:`dunno.models.load_factory_model`).
    model_options : dict, optional
        Keyword arguments of the factory.
    device : str or torch.device
        Where the model is put; it is returned in eval mode.

    Returns
    -------
    nn.Module
        With ``dunno_info`` (``kind``, ``source``, and ``input_shape`` / ``num_classes`` when
        recorded).
    """
    if (path is None) == (model is None):
        raise ValueError("load_any_model needs exactly one of 'path' (a model file) and "
                         f"'model' (package.module:factory). Got path={path!r}, "
                         f"model={model!r}.")
    if model is None:
        if weights is not None or model_options:
            raise ValueError(f"The 'weights' and 'model_options' arguments of load_any_model "
                             f"go with 'model' (a factory); {str(path)!r} is a model file "
                             "that holds its own weights.")
        return load_model_file(path, device=device)
    return load_factory_model(model, weights, options=model_options, device=device)


def _example_batch(example_input: Any) -> torch.Tensor:
    if not isinstance(example_input, torch.Tensor):
        try:
            example_input = torch.as_tensor(example_input)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"The 'example_input' argument of save_model must be a tensor "
                             f"(or array) batch (N, ...). Got {type(example_input).__name__} "
                             "instead.") from err
    if example_input.ndim < 2 or example_input.shape[0] < 1:
        raise ValueError(f"The 'example_input' argument of save_model must be a batch "
                         f"(N, ...) with N >= 1 and at least one dimension per example. Got "
                         f"shape {tuple(example_input.shape)} instead.")
    if not example_input.is_floating_point():
        example_input = example_input.float()
    if example_input.shape[0] == 1:  # export specialises a size-1 batch; give it two
        example_input = torch.cat([example_input, example_input])
    return example_input


def save_model(
    module: nn.Module,
    path: str | os.PathLike,
    example_input: Any,
    *,
    format: str | None = None,
    method: str = "trace",
    num_classes: int | None = None,
) -> Path:
    """Write ``module`` as a self-contained file that every ``--checkpoint`` of the command line
    (and :func:`load_any_model`) reads, without the module's Python code.

    Parameters
    ----------
    module : nn.Module
        Any module ``x (N, ...) -> logits (N, C)`` (a user's ``nn.Sequential``, an
        :class:`~dunno.ensemble.EnsembleClassifier` of user models, a backbone). It is put
        in eval mode (dropout off) for the capture and restored after.
    path : path-like
        Target file; written atomically.
    example_input : tensor or array
        A batch ``(N, ...)`` of real inputs: it is run through the model, its per-example shape
        is recorded as ``input_shape`` and, for 2-D outputs, ``num_classes = C``.
    format : {"torchscript", "export"}, optional
        ``None`` (default): ``"export"`` (``torch.export``, batch dimension dynamic) for a
        ``.pt2`` path, else ``"torchscript"``.
    method : {"trace", "script"}
        How TorchScript captures the model: ``torch.jit.trace`` on ``example_input`` (the
        default; control flow is frozen) or ``torch.jit.script``.
    num_classes : int, optional
        Recorded instead of the output width (when they differ, a ValueError).

    Returns
    -------
    Path
        The file written. The saved model gives the same outputs as ``module`` (checked on
        ``example_input`` and on its first example alone, after the capture; a capture that
        changes them is refused).
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"The 'module' argument of save_model must be a torch.nn.Module. Got "
                         f"{type(module).__name__} instead.")
    path = Path(path)
    fmt = format if format is not None else ("export" if path.suffix == ".pt2" else
                                             "torchscript")
    if fmt not in ("torchscript", "export"):
        raise ValueError(f"The 'format' parameter of save_model must be 'torchscript', "
                         f"'export' or None. Got {format!r} instead.")
    if method not in ("trace", "script"):
        raise ValueError(f"The 'method' parameter of save_model must be 'trace' or 'script'. "
                         f"Got {method!r} instead.")
    device = next((t.device for t in module.parameters()), torch.device("cpu"))
    x = _example_batch(example_input).to(device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            reference = module(x)
        if fmt == "export":
            batch = torch.export.Dim.DYNAMIC
            captured = torch.export.export(module, (x,), dynamic_shapes=({0: batch},))
            run = captured.module()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                # input checks that read shapes warn while tracing; the outputs are verified
                # below, on the example and on a batch of another size
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                captured = (torch.jit.trace(module, x) if method == "trace"
                            else torch.jit.script(module))
            run = captured
        with torch.no_grad():
            again, single = run(x), run(x[:1])
    finally:
        module.train(was_training)

    def same(a, b) -> bool:
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and \
            a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)

    if not (same(reference, again) and same(reference[:1], single)):
        raise ValueError(f"save_model: the captured {fmt} model does not reproduce the outputs "
                         f"of {type(module).__name__} on 'example_input' (data-dependent "
                         "control flow? try method='script' or format='export').")
    width = int(reference.shape[1]) if reference.ndim == 2 else None
    if num_classes is not None and width is not None and num_classes != width:
        raise ValueError(f"The 'num_classes' argument of save_model is {num_classes}, but the "
                         f"model outputs {width} logits per example.")
    meta = {"format": METADATA_FORMAT, "version": 1, "kind": fmt,
            "input_shape": list(x.shape[1:]), "num_classes": num_classes or width,
            "model_class": type(module).__name__}
    extra = {METADATA_NAME: json.dumps(meta, sort_keys=True)}
    if fmt == "export":
        return _atomic_write(path, lambda h: torch.export.save(captured, h, extra_files=extra),
                             "wb")

    def write(handle) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(captured, handle, _extra_files=extra)

    return _atomic_write(path, write, "wb")
