"""One benchmark result: a measured rate against its raw baseline from the same run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchResult:
    name: str
    value: float  # what we measured
    unit: str  # e.g. "appends/s", "fps", "s", "MB"
    baseline: float | None = None  # the raw loop's figure, same unit, same run
    goal: str = ""  # e.g. ">= 0.80", "< 1 s"
    ok: bool | None = None  # whether the goal is met; None when there is no goal
    note: str = ""
    baseline_label: str = "raw"  # what the baseline is, e.g. "raw", "empty journal"

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline

    def line(self) -> str:
        text = f"{self.name}: {self.value:,.2f} {self.unit}"
        if self.ratio is not None:
            text += f" vs {self.baseline_label} {self.baseline:,.2f} -> ratio {self.ratio:.2f}"
        if self.goal:
            verdict = "" if self.ok is None else (" ok" if self.ok else " BELOW GOAL")
            text += f" (goal {self.goal}{verdict})"
        if self.note:
            text += f" [{self.note}]"
        return text
