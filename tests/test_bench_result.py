"""How a benchmark result reads: value, baseline, ratio, goal verdict."""

from __future__ import annotations

import math

from agent.bench.result import BenchResult


def test_ratio_against_the_baseline_and_the_verdict() -> None:
    result = BenchResult("appends", 800.0, "appends/s", baseline=1000.0, goal=">= 0.80", ok=True)
    assert math.isclose(result.ratio or 0, 0.8)
    assert result.line() == ("appends: 800.00 appends/s vs raw 1,000.00 -> ratio 0.80 "
                             "(goal >= 0.80 ok)")


def test_below_goal_and_a_named_baseline() -> None:
    result = BenchResult("fps", 90.0, "fps", baseline=100.0, goal=">= 0.95", ok=False,
                         baseline_label="empty journal", note="2000 frames")
    assert result.line() == ("fps: 90.00 fps vs empty journal 100.00 -> ratio 0.90 "
                             "(goal >= 0.95 BELOW GOAL) [2000 frames]")


def test_no_baseline_no_ratio() -> None:
    result = BenchResult("open", 0.25, "s", goal="< 1 s", ok=True)
    assert result.ratio is None
    assert result.line() == "open: 0.25 s (goal < 1 s ok)"
    assert BenchResult("x", 1.0, "s", baseline=0.0).ratio is None
