"""The whole-agent benchmarks on small workloads: real child processes, sane numbers.

Only that they run and report; speed itself is never asserted in tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.bench.agent import DevServer, bench_backlog, bench_memory
from agent.cli import main


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    dev = DevServer(tmp_path / "backend.sqlite3")
    yield dev
    dev.close()


def test_memory_bench_samples_a_real_run(tmp_path: Path, server: DevServer) -> None:
    peak, growth = bench_memory(800, tmp_path, server.url)
    assert peak.name == "run peak RSS" and peak.unit == "MB"
    assert 10 < peak.value < 2000  # a Python process with numpy and LiteRT loaded
    assert peak.ok is not None and math.isfinite(growth.value)
    assert "MB" in growth.note


def test_memory_bench_reports_a_failed_run(tmp_path: Path) -> None:
    blocker = tmp_path / "mem-state"
    blocker.write_text("a file where the state dir should be")
    (result,) = bench_memory(50, tmp_path, "http://127.0.0.1:9")
    assert result.ok is False and "exited 1" in result.note


def test_backlog_bench_compares_against_an_empty_journal(tmp_path: Path,
                                                         server: DevServer) -> None:
    (result,) = bench_backlog(60, 300, tmp_path, server.url, rounds=2)
    assert result.baseline_label == "empty journal"
    assert result.value > 0 and result.baseline and result.baseline > 0
    assert result.note.startswith("best of 2 alternating rounds") and "of 300 delivered" in result.note


def test_bench_command_prints_each_result(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--quick", "--only", "vision"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[vision]"
    assert " -> ratio " in out[1] and "(goal >= 0.90" in out[1]
    assert [line.split(":")[0].strip() for line in out[2:5]] == [
        "preprocess per frame (cpu)", "invoke per frame (cpu)", "decode per frame (cpu)"]
    assert out[-1].startswith("  process RSS: ")
    assert code in (0, 1)  # 1 only when a goal is missed on this machine
