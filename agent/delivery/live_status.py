"""The running sender's state, shared with `basketagent status` through a small file.

The breaker and the last error live in the service's memory; `status` runs in
another process and must not take the journal lock, so the sender thread
writes this file (atomically, only when something changed) and marks it
stopped when it ends. A file whose pid is gone was left by a killed agent and
is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog

from agent.fsutil import atomic_write_bytes

log = structlog.get_logger(__name__)

LIVE_STATUS_FILE = "delivery-status.json"


def live_status_path(state_dir: Path) -> Path:
    return Path(state_dir) / LIVE_STATUS_FILE


def write_live_status(path: Path, data: dict[str, Any]) -> None:
    """Replace the file; raises OSError for the caller to log (status is best effort)."""
    atomic_write_bytes(path, json.dumps(data, sort_keys=True).encode("utf-8") + b"\n", mode=0o644)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (status run by a person, service by its user)
        return True
    return True


def read_live_status(path: Path) -> dict[str, Any] | None:
    """The state of a running sender, or None when no sender is running (or the file is unusable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("running"):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or pid <= 0 or not _pid_alive(pid):
        return None
    return data
