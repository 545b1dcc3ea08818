"""Device selection: ``auto | cpu | cuda[:i] | mps``."""

from __future__ import annotations

import re

import torch

__all__ = ["resolve_amp", "resolve_device"]

_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a user's device string into a :class:`torch.device`.

    ``"auto"`` (or ``None``) picks CUDA when available, then MPS, else CPU. An explicit
    ``cuda`` or ``mps`` that is not available raises :class:`ValueError` rather than
    silently running elsewhere.
    """
    if isinstance(device, torch.device):
        return device
    if device is None:
        device = "auto"
    if not isinstance(device, str) or not _PATTERN.match(device):
        raise ValueError(
            f"The 'device' parameter must be one of 'auto', 'cpu', 'cuda', 'cuda:<index>' "
            f"or 'mps'. Got {device!r} instead."
        )
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available here.")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible."
            )
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError("device='mps' was requested but MPS is not available here.")
    return torch.device(device)


def resolve_amp(amp: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` in ``{None, "bf16", "fp16", "auto"}`` on ``device``."""
    if amp is None or amp == "none":
        return None
    if amp not in ("bf16", "fp16", "auto"):
        raise ValueError(
            f"The 'amp' parameter must be None, 'bf16', 'fp16' or 'auto'. Got {amp!r} instead."
        )
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device; use amp='bf16' on the CPU.")
    return torch.bfloat16 if amp == "bf16" else torch.float16
