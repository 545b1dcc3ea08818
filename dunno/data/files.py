"""Data directory resolution, sha256 verification and downloads from mirror lists."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from dunno.errors import DataError

__all__ = ["data_dir", "fetch_file", "sha256_of", "verify_file"]

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root`` if given, else ``$DUNNO_DATA``, else ``~/.cache/dunno``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("DUNNO_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dunno"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (cached by path, size and mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def verify_file(path: str | os.PathLike, expected_sha256: str) -> None:
    """Raise :class:`DataError` naming the file, expected and actual hash on mismatch."""
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise DataError(
            f"sha256 mismatch for {str(path)!r}: expected {expected_sha256}, got {actual}. "
            "The file is corrupt, truncated or a different version; delete it and fetch it "
            "again (download=True or `dunno datasets --download NAME`)."
        )


def fetch_file(
    filename: str,
    expected_sha256: str,
    directory: str | os.PathLike,
    mirrors: list[str],
    *,
    timeout: float = 30.0,
) -> Path:
    """Download ``filename`` from the first mirror that serves it with the right hash.

    Each mirror is a base URL; the file is fetched from ``mirror.rstrip('/') + '/' +
    filename`` into a temporary file in ``directory``, verified by sha256 while it streams,
    and renamed into place only when the hash matches. Raises :class:`DataError` listing
    what every mirror answered when none succeeds.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    if not mirrors:
        raise DataError(f"No mirror URLs are configured to download {filename!r}.")
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=directory)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected_sha256:
                failures.append(f"{url}: sha256 {digest.hexdigest()} != {expected_sha256}")
                continue
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, ValueError) as err:
            failures.append(f"{url}: {err}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"Could not download {filename!r} from any mirror:\n  " + "\n  ".join(failures))
