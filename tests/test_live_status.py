"""The running sender's status file: written atomically, read only while its process lives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent.delivery.live_status import live_status_path, read_live_status, write_live_status


def test_a_running_senders_state_is_read_back(tmp_path: Path) -> None:
    path = live_status_path(tmp_path)
    data = {"running": True, "pid": os.getpid(), "breaker": "open", "lastError": "HTTP 503"}
    write_live_status(path, data)
    assert read_live_status(path) == data
    assert path.stat().st_mode & 0o777 == 0o644  # a person's `status` may read the service's file


def test_a_stopped_sender_is_not_running(tmp_path: Path) -> None:
    path = live_status_path(tmp_path)
    write_live_status(path, {"running": False, "pid": os.getpid(), "breaker": "closed"})
    assert read_live_status(path) is None


def test_a_killed_agents_file_is_ignored(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, timeout=30, check=False)
    gone = int(child.stdout)
    path = live_status_path(tmp_path)
    write_live_status(path, {"running": True, "pid": gone, "breaker": "open"})
    assert read_live_status(path) is None


def test_missing_or_damaged_files_read_as_not_running(tmp_path: Path) -> None:
    path = live_status_path(tmp_path)
    assert read_live_status(path) is None
    for text in ("", "{not json", "[1, 2]", '{"running": true}', '{"running": true, "pid": "1"}'):
        path.write_text(text)
        assert read_live_status(path) is None, text
