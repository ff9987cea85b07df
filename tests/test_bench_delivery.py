"""The delivery benchmark runs end to end in quick mode and reports sane numbers (no timing asserts);
its failures are one-line operational errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.bench.agent import DevServer
from agent.bench.delivery import QUICK_EVENTS, RawLoop, _events, _stored, run
from agent.devserver import ReferenceBackend
from agent.errors import OperationalError


def test_quick_delivery_bench_reports_positive_rates_for_a_complete_drain() -> None:
    [result] = run(quick=True)
    assert result.unit == "events/s"
    assert math.isfinite(result.value) and result.value > 0
    assert result.baseline is not None and math.isfinite(result.baseline) and result.baseline > 0
    assert result.ratio is not None and result.ratio > 0
    assert "INCOMPLETE" not in result.note and f"{QUICK_EVENTS:,} events (quick)" in result.note
    assert result.goal == ">= 0.80" and isinstance(result.ok, bool)
    assert "ratio" in result.line()



def test_the_raw_loop_says_what_failed_when_an_event_is_refused(backend: ReferenceBackend) -> None:
    raw = RawLoop(backend.url)
    try:
        backend.inject("/api/basket", 500)
        with pytest.raises(OperationalError, match=r"the raw loop an event was refused at .*HTTP 500"):
            raw.post(_events(2))
    finally:
        raw.close()


def test_the_raw_loop_says_what_failed_when_it_cannot_register(backend: ReferenceBackend) -> None:
    backend.inject("/api/devices/register", 503, body="down")
    with pytest.raises(OperationalError, match="the raw loop cannot register"):
        RawLoop(backend.url)
    backend.stop()
    with pytest.raises(OperationalError, match="the raw loop cannot register"):
        RawLoop(backend.url)


def test_counting_what_a_stopped_backend_stored_is_an_operational_error(
        backend: ReferenceBackend) -> None:
    backend.stop()
    with pytest.raises(OperationalError, match="cannot count what"):
        _stored(backend.url, "dev")


def test_a_backend_process_that_exits_at_once_is_reported_not_waited_for(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OperationalError, match="exited with status 2") as info:
        DevServer(blocker / "backend.sqlite3")
    assert info.value.fix and "basketagent devserver" in info.value.fix
