"""Data directory resolution, sha256 verification and downloads from mirror lists."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from dunno.errors import DataError

__all__ = ["data_dir", "download_files", "fetch_file", "files_status", "mirror_list",
           "sha256_of", "verify_file"]

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


def mirror_list(spec: dict, mirrors: list[str] | None = None) -> list[str]:
    """The mirrors to download a dataset ``spec`` from: ``mirrors`` if given, else the
    comma-separated list in the environment variable ``spec["env"]``, else ``spec["mirrors"]``."""
    if mirrors is not None:
        return list(mirrors)
    env = os.environ.get(spec["env"])
    if env:
        return [m for m in env.split(",") if m]
    return list(spec["mirrors"])


def download_files(spec: dict, root=None, mirrors: list[str] | None = None) -> Path:
    """Fetch the files of a dataset ``spec`` (``folder``, ``files``: name -> sha256,
    ``mirrors``, ``env``) that are missing or fail their sha256; returns the folder."""
    folder = data_dir(root) / spec["folder"]
    for filename, sha in spec["files"].items():
        path = folder / filename
        if path.is_file():
            try:
                verify_file(path, sha)
                continue
            except DataError:
                pass
        fetch_file(filename, sha, folder, mirror_list(spec, mirrors))
    return folder


def files_status(spec: dict, root=None) -> tuple[str, str]:
    """``("verified" | "missing" | "corrupt", detail)`` for the files of a dataset ``spec``."""
    folder = data_dir(root) / spec["folder"]
    n = len(spec["files"])
    missing = [f for f in spec["files"] if not (folder / f).is_file()]
    if missing:
        return "missing", f"{len(missing)} of {n} file(s) missing in {folder}"
    for filename, sha in spec["files"].items():
        try:
            verify_file(folder / filename, sha)
        except DataError:
            return "corrupt", f"sha256 mismatch: {folder / filename}"
    return "verified", f"{n} file(s), sha256 ok, in {folder}"
