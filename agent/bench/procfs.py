"""Resident memory as Linux reports it in /proc/<pid>/status."""

from __future__ import annotations

from pathlib import Path


def memory_kb(status: Path) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in kB from a /proc status file; None when it is gone or says neither."""
    try:
        text = status.read_text()
    except OSError:  # the process ended, or no /proc here
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (KeyError, ValueError, IndexError):
        return None
