"""The journal benchmark runs in quick mode and reports sane numbers (no timing asserts)."""

from __future__ import annotations

import math

from agent.bench.journal import QUICK_APPENDS, QUICK_OPEN_EVENTS, run


def test_quick_journal_bench_reports_positive_figures_against_raw_baselines() -> None:
    results = run(quick=True)
    names = [r.name for r in results]
    assert names[0] == "journal durable appends"
    assert "journal open (warm)" in names
    for result in results:
        assert math.isfinite(result.value) and result.value > 0, result
        assert result.baseline is not None and result.baseline > 0, result
        assert result.ratio is not None and result.ratio > 0
        assert isinstance(result.ok, bool) and result.goal
        assert "ratio" in result.line()
    appends = results[0]
    assert appends.unit == "appends/s" and appends.goal == ">= 0.80"
    assert f"{QUICK_APPENDS:,} appends (quick)" in appends.note
    for result in results[1:]:
        assert result.unit == "s"
        assert f"{QUICK_OPEN_EVENTS:,} pending events (quick)" in result.note
        assert "goal scaled" in result.note
