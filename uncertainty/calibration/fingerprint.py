"""A fingerprint of a classifier, so that a calibrator is only applied to the model it was
fitted for.

A calibration map is fitted to one model's logits; the same map on another model (even one
with the same class count) gives confident, wrong probabilities. :func:`model_fingerprint`
summarises a model as ``"<class>:arch=<12 hex>:weights=<16 hex>"``:

* ``arch``: SHA-256 of the module's ``repr`` (its layers and their configuration) and the
  names, shapes and dtypes of its parameters and buffers;
* ``weights``: SHA-256 of the bytes of every parameter and buffer, in ``state_dict`` order.

:class:`~uncertainty.calibration.CalibratedClassifier` records it when fitted and in its
saved file, and refuses another model on loading and on every prediction.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["check_same_model", "model_fingerprint"]

# id(model) -> (parameter versions, fingerprint): re-hashing the weights on every call
# would be slow; a tensor's version counter changes on every in-place update.
_CACHE: dict[int, tuple[tuple, str]] = {}


def _versions(model: nn.Module) -> tuple:
    return tuple((id(t), t._version) for t in model.state_dict(keep_vars=True).values()
                 if isinstance(t, torch.Tensor))


def model_fingerprint(model: nn.Module) -> str:
    """``"<class>:arch=<hash>:weights=<hash>"`` of ``model`` (see the module docstring)."""
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"The 'model' argument must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    versions = _versions(model)
    cached = _CACHE.get(id(model))
    if cached is not None and cached[0] == versions:
        return cached[1]
    arch, weights = hashlib.sha256(), hashlib.sha256()
    arch.update(repr(model).encode())
    for key, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        arch.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        weights.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    name = getattr(model, "original_name", None) or type(model).__name__
    out = f"{name}:arch={arch.hexdigest()[:12]}:weights={weights.hexdigest()[:16]}"
    _CACHE[id(model)] = (versions, out)
    return out


def check_same_model(expected: str | None, model: nn.Module, what: str) -> None:
    """Raise ValueError unless ``model``'s fingerprint is ``expected`` (``None``: nothing
    was recorded, nothing to check). ``what`` says where the fingerprint came from."""
    if expected is None:
        return
    got = model_fingerprint(model)
    if got != expected:
        raise ValueError(
            f"The 'model' ({got}) is not the model {what} was fitted for ({expected}): a "
            "calibration map only holds for the model whose logits it was fitted on. Pass that "
            "model, or fit a new calibrator for this one."
        )
