"""The fault queue: prefix matching, use counts, order, waiting for use."""

from __future__ import annotations

import pytest

from agent.devserver.faults import Fault, FaultQueue


def test_first_matching_fault_is_used_and_counted_down() -> None:
    queue = FaultQueue()
    queue.add(Fault("/api/basket", 503, remaining=2))
    queue.add(Fault("/api/", 500))
    assert queue.take("/health") is None
    assert queue.take("/api/pending-items").status == 500  # type: ignore[union-attr]
    assert queue.pending() == 2
    assert queue.take("/api/basket").status == 503  # type: ignore[union-attr]
    assert queue.take("/api/basket").status == 503  # type: ignore[union-attr]
    assert queue.take("/api/basket") is None
    assert queue.pending() == 0


def test_wait_taken_and_clear() -> None:
    queue = FaultQueue()
    assert queue.wait_taken(0.0)
    queue.add(Fault("/x", 500))
    assert not queue.wait_taken(0.0)
    queue.clear()
    assert queue.wait_taken(0.0) and queue.pending() == 0


@pytest.mark.parametrize("fault", [Fault("/x", 500, remaining=0), Fault("/x", 500, delay_s=-1)])
def test_bad_faults_are_refused(fault: Fault) -> None:
    with pytest.raises(ValueError):
        FaultQueue().add(fault)
