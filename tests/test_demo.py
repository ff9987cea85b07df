"""The demo end to end, as a person runs it: a real child process, no hardware, no network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_shows_registration_pairing_deliveries_and_an_empty_journal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASKETAGENT_", "NOTIFY_"))}
    result = subprocess.run(
        [sys.executable, "-m", "agent", "demo", "--fps", "60", "--frames", "480",
         "--pair-after", "1"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "registered as device" in out and "pairing code" in out
    assert "paired: code" in out
    assert "  detected  +" in out
    assert "  delivered " in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("summary:") and "journal empty" in summary
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing left behind in the working directory


def test_demo_rejects_bad_arguments_with_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "agent", "demo", "--frames", "0"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("basketagent: error:")
