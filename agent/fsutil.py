"""Crash-safe small-file writes: temp file, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

from agent.errors import OperationalError


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


def refuse_foreign_state(state_dir: Path, command: str, *, euid: int | None = None) -> None:
    """Root must not write into another user's state dir: the service could not read the files.

    ``basketagent flush`` run with sudo would otherwise leave root-owned journal
    segments or an identity behind, and the service (user basketagent) would
    fail on its next start.
    """
    euid = os.geteuid() if euid is None else euid
    try:
        owner = Path(state_dir).stat().st_uid
    except OSError:
        return  # not there yet (created by whoever runs), or unreadable: reported later
    if euid != 0 or owner == 0:
        return
    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    raise OperationalError(
        f"state dir {state_dir} belongs to user {name}; '{command}' run as root would leave "
        "files there that the service cannot read",
        fix=f"sudo -u {name} basketagent {command}")
