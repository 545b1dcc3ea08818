"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).

Format (LeCun et al.): big-endian header ``0x00 0x00 <dtype> <ndim>``, then ``ndim``
uint32 sizes, then the data. MNIST's images use magic 2051 (uint8, 3 dims) and its labels
magic 2049 (uint8, 1 dim).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from dunno.errors import DataError

__all__ = ["read_idx"]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (``.gz`` or raw) into an array of its declared shape.

    Raises :class:`~dunno.errors.DataError` for a bad magic number, a truncated or
    over-long payload, or a corrupt gzip stream, naming the file.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(f"{str(path)!r} is truncated or not a valid gzip file: {err}") from err
    if len(raw) < 4:
        raise DataError(f"{str(path)!r} is truncated: {len(raw)} bytes, no IDX header.")
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype_code not in _DTYPES or not 1 <= ndim <= 4:
        raise DataError(
            f"{str(path)!r} is not an IDX file (magic bytes {raw[:4].hex()})."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{str(path)!r} is truncated inside its IDX header.")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_DTYPES[dtype_code])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DataError(
            f"{str(path)!r} is {what}: header declares shape {shape} ({expected} bytes of "
            f"data), file holds {got} bytes."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))
