"""Crash-safe small-file writes: temp file, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename or create in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so a power cut leaves the old or the new file, never half.

    Raises ``OSError`` (ENOSPC, EACCES, ...) for the caller to translate.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def move_aside(path: Path, reason: str) -> Path:
    """Rename a damaged file to ``<name>.<reason>.<n>`` beside it and return the new path."""
    path = Path(path)
    n = 0
    while True:
        target = path.with_name(f"{path.name}.{reason}.{n}")
        if not target.exists():
            break
        n += 1
    os.replace(path, target)
    fsync_dir(path.parent)
    return target
