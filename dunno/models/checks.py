"""Is this model meant for this data? Checked up front, before any pass over the data.

A convolutional classifier with adaptive pooling accepts images of any size: an 8x8 ``digits``
model run on 28x28 MNIST produces logits, and every number computed from them (accuracy 0.09,
an AUROC) is meaningless. :func:`check_model_data` refuses such a pairing with one message
naming both sides:

1. **Recorded input shape.** :func:`model_input_shape`: the per-example shape the model was
   trained or saved for -- ``model.dunno_info["input_shape"]`` (recorded by
   :func:`dunno.models.save_model` and by ``dunno train classifier``, read back by
   :func:`dunno.models.load_any_model`), else a backbone's ``config`` (``in_channels`` and
   ``input_size``; an ensemble's members' if they agree). It must equal the data's.
2. **First layer.** The first convolution's ``in_channels`` must be the data's channel count;
   a first ``nn.Linear``'s ``in_features`` the size of a flattened example (or its last axis).
   Only for plain modules (not TorchScript or exported graphs, whose layers are not inspected).
3. **One forward pass on one example** (two, for exported programs with a dynamic batch): it
   must run (its error is reported with both shapes) and give ``(N, C)`` logits with ``C``
   equal to the data's number of classes, and every label must be ``< C``.
4. **Recorded input range.** :func:`model_input_range`: the ``(min, max)`` of the training
   inputs (recorded by ``dunno train classifier``). The data's largest magnitude must be
   within a factor of 20 above / 50 below the training inputs' (:func:`check_input_scale`):
   [0, 255] images given to a model of [0, 1] images are refused, not scored.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["SCALE_RATIO", "check_compiled_features", "check_input_dtype", "check_input_scale",
           "check_model_data", "input_magnitude", "model_input_range", "model_input_shape",
           "model_kind"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RECORDED_IN = {"checkpoint": "checkpoint", "torchscript": "TorchScript file",
                "export": "torch.export program", "factory": "weights", "module": "config"}


def model_kind(model: nn.Module) -> str:
    """``"torchscript"``, ``"export"``, ``"factory"``, ``"checkpoint"`` (as recorded by the
    loader) or ``"module"`` (a module built in Python)."""
    info = getattr(model, "dunno_info", None)
    if isinstance(info, dict) and isinstance(info.get("kind"), str):
        return info["kind"]
    if isinstance(model, torch.jit.ScriptModule):
        return "torchscript"
    return "module"


def _config_shape(config: Any) -> tuple[int, ...] | None:
    if not isinstance(config, dict):
        return None
    channels, size = config.get("in_channels"), config.get("input_size")
    if isinstance(channels, int) and isinstance(size, int):
        return (channels, size, size)
    if isinstance(channels, int) and isinstance(size, list | tuple) and all(
            isinstance(s, int) for s in size):
        return (channels, *size)
    members = config.get("members")
    if isinstance(members, list) and members:
        shapes = {_config_shape(m.get("config")) if isinstance(m, dict) else None
                  for m in members}
        if len(shapes) == 1:
            return shapes.pop()
    return None


def model_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The per-example input shape recorded for ``model`` (module docstring), or ``None``."""
    info = getattr(model, "dunno_info", None)
    if isinstance(info, dict) and info.get("input_shape") is not None:
        return tuple(int(s) for s in info["input_shape"])
    return _config_shape(getattr(model, "config", None))


def _first_layer(model: nn.Module) -> nn.Module | None:
    if isinstance(model, torch.jit.ScriptModule) or model_kind(model) == "export":
        return None
    for module in model.modules():
        if isinstance(module, (*_CONVS, nn.Linear)):
            return module
        if next(module.parameters(recurse=False), None) is not None:
            return None  # another parametrised layer comes first (an embedding, a norm)
    return None


def _describe(data_name) -> str:
    return f"the data {data_name!r}" if isinstance(data_name, str) and data_name else "the data"


def _first_layer_error(model: nn.Module, shape: tuple[int, ...], data_name: str) -> str | None:
    layer = _first_layer(model)
    if isinstance(layer, _CONVS):
        dims = len(shape) - 1
        expected = 1 if isinstance(layer, nn.Conv1d) else 2 if isinstance(layer, nn.Conv2d) else 3
        if dims == expected and layer.in_channels != shape[0]:
            return (f"The model's first layer ({type(layer).__name__}) takes "
                    f"{layer.in_channels} input channels, but {_describe(data_name)} has "
                    f"{shape[0]} (examples of shape {shape}).")
    if isinstance(layer, nn.Linear) and layer.in_features not in (math.prod(shape), shape[-1]):
        return (f"The model's first layer (Linear) takes {layer.in_features} input features, "
                f"but {_describe(data_name)} has examples of shape {shape} "
                f"({math.prod(shape)} values).")
    return None


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


#: How far apart (a factor, either way) the largest magnitudes of two sets of inputs may be
#: before :func:`check_input_scale` calls them stored on different scales: 20 above, 50
#: below ([0, 1] against [0, 255] is 255 either way).
SCALE_RATIO = (20.0, 50.0)


def input_magnitude(x: torch.Tensor) -> float:
    """The largest absolute value of the inputs ``x (N, ...)`` (0 for empty or non-floating
    data)."""
    if not isinstance(x, torch.Tensor) or not x.numel() or not x.is_floating_point():
        return 0.0
    return float(x.detach().abs().amax())


def check_input_scale(x: torch.Tensor, reference: float, *, what: str, reference_what: str,
                      owner: str = "") -> None:
    r"""Refuse inputs ``x`` stored on another scale than a reference set whose largest
    magnitude is ``reference``: images in [0, 255] scored by a model of [0, 1] images (or
    the reverse) give numbers that measure the scale, not the contents (an AUROC of 0 or 1,
    a temperature of 300).

    With :math:`s = \max |x|` and :math:`r` = ``reference``, refused when :math:`r > 0` and
    :math:`s > 20 r` or :math:`0 < s < r / 50` (:data:`SCALE_RATIO`); a set with no
    non-zero value (blank images) passes.
    """
    if not reference > 0:
        return
    scale = input_magnitude(x)
    up, down = SCALE_RATIO
    if scale > up * reference or 0 < scale < reference / down:
        prefix = f"{owner}: " if owner else ""
        raise ValueError(
            f"{prefix}{what} reach |x| = {scale:g}, but {reference_what} reach |x| = "
            f"{reference:g}: the two are stored on different scales (e.g. [0, 255] against "
            "[0, 1]), and every number computed from them would measure the scale, not the "
            "data. Store them on one scale (uint8 files are read as x / 255)."
        )


def model_input_range(model: nn.Module) -> tuple[float, float] | None:
    """``(min, max)`` of the inputs ``model`` was trained on, as recorded by ``dunno train
    classifier`` (``model.dunno_info["input_range"]``), or ``None``."""
    info = getattr(model, "dunno_info", None)
    return finite_pair(info.get("input_range") if isinstance(info, dict) else None)


def finite_pair(value: Any) -> tuple[float, float] | None:
    """``value`` as two finite floats when it is a list / tuple of two finite real numbers
    (not bools), else ``None``: how a recorded range is read."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value):
        return float(value[0]), float(value[1])
    return None


def check_input_dtype(model: nn.Module, x: torch.Tensor, owner: str = "") -> None:
    """Raise a ValueError naming both dtypes when a model with floating weights cannot run on
    integer inputs ``x`` (uint8 images in [0, 255], say). Call it only once the model has
    failed on ``x``, so that models that do take integers (token ids) are never refused."""
    weights = next((t for t in (*model.parameters(), *model.buffers())
                    if t.is_floating_point()), None)
    if weights is None or x.is_floating_point():
        return
    prefix = f"{owner}: " if owner else ""
    raise ValueError(
        f"{prefix}the inputs have dtype {x.dtype} but the model's weights are {weights.dtype}, "
        "and the model cannot run on them. Pass floating inputs on the scale the model was "
        "trained on: images stored as uint8 in [0, 255] become x.astype(np.float32) / 255 for "
        "dunno's [0, 1] datasets (user image files are scaled this way when loaded)."
    )


def check_model_data(
    model: nn.Module,
    x: torch.Tensor,
    *,
    num_classes: int | None = None,
    labels: torch.Tensor | None = None,
    data_name: str = "",
    owner: str = "",
) -> int:
    """Refuse a classifier that does not fit the data, before any work (module docstring).

    Parameters
    ----------
    model : nn.Module
        The classifier ``x -> logits (N, C)``.
    x : Tensor
        The data's inputs ``(N, ...)`` (only ``x[:2]`` is run through the model).
    num_classes : int, optional
        The data's number of classes; ``C`` must equal it.
    labels : Tensor, optional
        ``(N,)`` integer labels; each must be ``< C``.
    data_name : str
        The data's name (a dataset spec or path), used in messages.
    owner : str
        Who checks (``"run_calibration"``, ``"dunno ood"``), used in messages.

    Returns
    -------
    int
        ``C``, the number of logits the model outputs.

    Raises
    ------
    ValueError
        Naming both shapes (or both class counts) when they do not match.
    """
    prefix = f"{owner}: " if owner else ""
    shape = tuple(int(s) for s in x.shape[1:])
    recorded = model_input_shape(model)
    if recorded is not None and tuple(recorded) != shape:
        raise ValueError(
            f"{prefix}the model was trained for inputs of shape {tuple(recorded)} (recorded in "
            f"its {_RECORDED_IN.get(model_kind(model), 'file')}), but {_describe(data_name)} "
            f"has inputs of shape {shape}. "
            "Use the data the model was trained on, or a model trained on this data."
        )
    message = _first_layer_error(model, shape, data_name)
    if message is not None:
        raise ValueError(prefix + message)
    trained = model_input_range(model)
    if trained is not None:
        check_input_scale(x, max(abs(trained[0]), abs(trained[1])),
                          what=f"the inputs of {_describe(data_name)}",
                          reference_what="the inputs the model was trained on "
                          f"([{trained[0]:g}, {trained[1]:g}], recorded in its "
                          f"{_RECORDED_IN.get(model_kind(model), 'file')})", owner=owner)
    if len(x) == 0:
        raise ValueError(f"{prefix}{_describe(data_name)} has no examples.")
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    batch = x[:2].to(_device_of(model), dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(batch)
    except Exception as err:  # noqa: BLE001 - any failure of the user's model is reported
        text = str(err).strip().splitlines()
        raise ValueError(
            f"{prefix}the model cannot run on {_describe(data_name)} (inputs of shape {shape}): "
            f"{type(err).__name__}: {text[0] if text else ''}"
        ) from err
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(batch):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{prefix}the model must map a batch (N, ...) to logits (N, C); on "
                         f"{len(batch)} example(s) of shape {shape} it returned {got}.")
    width = int(out.shape[1])
    if num_classes is not None and width != num_classes:
        raise ValueError(
            f"{prefix}the model outputs {width} logits per example, but "
            f"{_describe(data_name)} has {num_classes} classes. Use the data the model was "
            "trained on, or a model trained on this data."
        )
    if labels is not None and len(labels) and not labels.is_floating_point():
        top = int(labels.max())
        if top >= width:
            raise ValueError(f"{prefix}{_describe(data_name)} has the label {top}, but the "
                             f"model outputs only {width} logits (classes 0..{width - 1}).")
    return width



def check_compiled_features(model: nn.Module, layer, feature_users: list[str],
                            logit_users: list[str]) -> None:
    """Refuse feature access on a TorchScript or ``torch.export`` model without a
    ``features`` method: such a model runs as one compiled graph, with no sub-modules to hook.

    ``layer`` is the requested hook (``None``: ``model.features``); ``feature_users`` /
    ``logit_users`` name the detectors (or other consumers) that need features / only logits,
    listed in the message. A ValueError names the layer or the detectors and what to use
    instead.
    """
    kind = model_kind(model)
    if kind not in ("torchscript", "export") or callable(getattr(model, "features", None)):
        return
    what = "a TorchScript file" if kind == "torchscript" else "a torch.export program"
    if layer is not None:
        raise ValueError(
            f"The 'layer' parameter (--layer) {layer!r} needs forward hooks on the model's "
            f"modules, but the model is {what}, which runs as one compiled graph. Use the "
            "logit-based detectors (e.g. msp, energy, maxlogit, odin), or load the model with "
            "--model MODULE:FACTORY --weights FILE (Python: the nn.Module itself) to hook a "
            "layer."
        )
    if feature_users:
        raise ValueError(
            f"The detectors {list(feature_users)} need penultimate features, but the model is "
            f"{what}, which exposes only its logits (no features method, no layers to hook). "
            f"Use the logit-based detectors ({', '.join(logit_users) or 'msp, energy, maxlogit'})"
            " or load the model with --model MODULE:FACTORY --weights FILE and pass --layer."
        )
