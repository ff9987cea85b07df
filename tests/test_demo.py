"""The demo end to end, as a person runs it: a real child process, no hardware, no network."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands.demo import check_outcome
from agent.errors import OperationalError
from agent.service import RunSummary


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
    # Both routes: pending items are held while unpaired and delivered after pairing.
    assert "-> pending approval" in out and "to pending approval" in out
    assert out.index("paired: code") < out.index("to pending approval")
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("summary:") and "journal empty" in summary
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing left behind in the working directory


def test_demo_rejects_bad_arguments_with_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "agent", "demo", "--frames", "0"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("basketagent: error:")


def test_one_frame_is_too_little_to_see_a_product_and_says_so() -> None:
    result = subprocess.run([sys.executable, "-m", "agent", "demo", "--frames", "1", "--fps", "50"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "basketagent: error: demo: the model detected no products "
        "(check models/ holds the trained demo model (models/README.md))")


def test_undelivered_events_fail_the_demo() -> None:
    summary = RunSummary(frames=600, events=7, fps=30.0, device="cpu", fallback_reason="",
                         journal_pending=2)
    with pytest.raises(OperationalError, match="2 events were not delivered"):
        check_outcome(summary)
    check_outcome(dataclasses.replace(summary, journal_pending=0))
