"""The journal benchmark runs in quick mode and reports sane numbers (no timing asserts)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.bench.journal import (
    QUICK_APPENDS,
    QUICK_OPEN_EVENTS,
    _events,
    bench_appends,
    open_all,
    run,
)
from agent.config import JournalConfig
from agent.delivery import journal_records as rec
from agent.delivery.journal import Journal
from agent.errors import OperationalError


def test_quick_journal_bench_reports_positive_figures_against_raw_baselines() -> None:
    results = run(quick=True)
    names = [r.name for r in results]
    assert names[0] == "journal durable appends"
    assert "journal open (warm)" in names
    for result in results:
        assert math.isfinite(result.value) and result.value > 0, result
        assert result.baseline is not None and result.baseline > 0, result
        assert result.ratio is not None and result.ratio > 0
        assert "ratio" in result.line()
    appends, o_append = results[0], results[1]
    assert appends.unit == "appends/s" and appends.goal == ">= 0.80"
    assert isinstance(appends.ok, bool)
    assert f"{QUICK_APPENDS:,} appends (quick)" in appends.note
    assert "zeroed ahead" in appends.note
    # The O_APPEND line is informative: measured against the same baseline, no goal.
    assert o_append.name == "raw O_APPEND appends (informative)"
    assert o_append.unit == "appends/s" and o_append.baseline == appends.baseline
    assert o_append.goal == "" and o_append.ok is None
    assert "vs raw zeroed ahead" in o_append.line()
    for result in results[2:]:
        assert isinstance(result.ok, bool) and result.goal
        assert result.unit == "s"
        assert f"{QUICK_OPEN_EVENTS:,} pending events (quick)" in result.note
        assert "goal scaled" in result.note


def test_reopening_finds_every_event_or_says_how_many_it_found(tmp_path: Path) -> None:
    with Journal.open(tmp_path, JournalConfig()) as journal:
        for event in _events(3):
            journal.append(event)
    open_all(tmp_path, 3)
    with pytest.raises(OperationalError, match="found 3 of 5 pending events"):
        open_all(tmp_path, 5)


def test_the_raw_baselines_write_exactly_the_journal_bytes(tmp_path: Path) -> None:
    rates = bench_appends(tmp_path, 24)
    assert all(math.isfinite(rate) and rate > 0 for rate in rates)
    raw = (tmp_path / "raw.bin").read_bytes()
    appended = (tmp_path / "append.bin").read_bytes()
    assert raw == appended  # zeroed ahead to exactly what was written
    frames = rec.scan(raw).records
    assert len(frames) == 24 and all(r.kind == rec.EVENT for _, _, r in frames)
