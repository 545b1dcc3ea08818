"""What kind of model file is this? Read from the bytes alone (the entries of the zip archive
``torch`` writes, a safetensors header, the pickle magic), never by running anything and never
from the file name."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from dunno.errors import CheckpointError

__all__ = ["MODEL_FILE_KINDS", "detect_model_file", "zip_entries"]

#: What :func:`detect_model_file` returns for a model file (``"safetensors"`` for weights).
MODEL_FILE_KINDS = ("checkpoint", "torchscript", "export")


def zip_entries(path: Path) -> list[str] | None:
    """The entry names of the zip archive at ``path``, or ``None`` when it is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def detect_model_file(path: str | os.PathLike) -> str:
    """The kind of model file at ``path``, read from its content: ``"checkpoint"`` (a
    ``torch.save`` archive or legacy pickle file: a project checkpoint or a state dict),
    ``"torchscript"`` (an archive with ``code/`` and ``constants.pkl``), ``"export"`` (an
    archive with an ``archive_format`` entry, as ``torch.export.save`` writes) or
    ``"safetensors"``.

    Raises :class:`~dunno.errors.CheckpointError` for a missing or empty file, or one that is
    none of these.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Model file {str(path)!r} does not exist.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Model file {str(path)!r} is empty (0 bytes).")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"PK"):
        entries = zip_entries(path)
        if entries is None:
            raise CheckpointError(f"Model file {str(path)!r} is a truncated or corrupt zip "
                                  "archive.")
        tails = {name.split("/", 1)[1] if "/" in name else name for name in entries}
        if "archive_format" in tails or any(t.startswith("models/") for t in tails):
            return "export"
        if "constants.pkl" in tails and any(t.startswith("code/") for t in tails):
            return "torchscript"
        if "data.pkl" in tails:
            return "checkpoint"
        raise CheckpointError(f"Model file {str(path)!r} is a zip archive but neither a torch "
                              "checkpoint, a TorchScript file nor a torch.export program.")
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":  # a legacy (non-zip) torch.save pickle
        return "checkpoint"
    raise CheckpointError(
        f"Model file {str(path)!r} is not a model file dunno reads (a project checkpoint, a "
        "TorchScript file, a torch.export .pt2 program or, with --model, a weights file)."
    )
