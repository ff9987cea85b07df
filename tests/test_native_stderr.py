"""Native runtime output on fd 2 is turned into log records, and fd 2 is restored."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from agent.detect.native_stderr import native_stderr_logged
from agent.logs import configure_logging


@pytest.fixture(autouse=True)
def debug_logging() -> Iterator[None]:
    configure_logging("debug", "plain")
    yield
    configure_logging("debug", "plain")


def test_native_lines_become_log_records_at_their_level(capfd: pytest.CaptureFixture[str]) -> None:
    with capture_logs() as records:
        with native_stderr_logged():
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                        b"WARNING: something odd\nERROR: op failed\n\n")
    assert [(r["log_level"], r["message"]) for r in records] == [
        ("debug", "Created TensorFlow Lite XNNPACK delegate for CPU."),
        ("warning", "something odd"),
        ("error", "op failed"),
    ]
    assert capfd.readouterr().err == ""


def test_fd_2_is_restored_even_when_the_block_raises(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), capture_logs() as records:
        with native_stderr_logged():
            os.write(2, b"INFO: before the failure\n")
            raise RuntimeError("interpreter failed")
    assert records[0]["message"] == "before the failure"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_real_interpreter_load_prints_nothing_unprefixed() -> None:
    # A fresh process: the runtime prints its delegate line once per process.
    code = ("from agent.logs import configure_logging; configure_logging('debug', 'plain'); "
            "from agent.config import ModelConfig; from agent.detect.detector import open_detector; "
            "open_detector(ModelConfig(device='cpu')).close()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    err = result.stderr.splitlines()
    assert not any(line.startswith("INFO:") for line in err)
    assert any("XNNPACK" in line and "debug" in line for line in err)  # logged, as a record
