"""The delivery benchmark runs end to end in quick mode and reports sane numbers (no timing asserts)."""

from __future__ import annotations

import math

from agent.bench.delivery import QUICK_EVENTS, run


def test_quick_delivery_bench_reports_positive_rates_for_a_complete_drain() -> None:
    [result] = run(quick=True)
    assert result.unit == "events/s"
    assert math.isfinite(result.value) and result.value > 0
    assert result.baseline is not None and math.isfinite(result.baseline) and result.baseline > 0
    assert result.ratio is not None and result.ratio > 0
    assert "INCOMPLETE" not in result.note and f"{QUICK_EVENTS:,} events (quick)" in result.note
    assert result.goal == ">= 0.80" and isinstance(result.ok, bool)
    assert "ratio" in result.line()
