"""The in-memory index: replay is idempotent, copies keep their place, counters survive."""

from __future__ import annotations

from agent.delivery import journal_records as rec
from agent.delivery.journal_index import Index


def _event(n: int, route: str = "basket", flags: int = 0) -> rec.Rec:
    return rec.make(rec.EVENT, id=f"e{n}", route=route, seq=n, at=float(n), flags=flags)


def _replay(records: list[tuple[rec.Rec, int]]) -> Index:
    index = Index()
    for offset, (record, segment) in enumerate(records):
        index.apply(record, segment, offset * 100, 100)
    index.finish_replay()
    return index


def _state(index: Index) -> tuple[dict[str, list[str]], list[str]]:
    return {r: list(q) for r, q in index.routes.items()}, list(index.dead)


def test_replaying_twice_gives_the_same_state() -> None:
    records = [(_event(1), 1), (_event(2, "pending"), 1), (_event(3), 1),
               (rec.make(rec.ACK, id="e2"), 1),
               (rec.make(rec.DEAD, id="e1", route="basket", seq=4, flags=rec.OVERFLOW), 2)]
    once = _replay(records)
    twice = _replay(records + records)
    assert _state(once) == _state(twice) == ({"basket": ["e3"]}, ["e1"])


def test_a_compaction_copy_keeps_its_place_in_line() -> None:
    records = [(_event(1), 1), (_event(2), 1), (_event(3), 2),
               (_event(1, flags=rec.COPY), 3)]  # e1 copied forward into segment 3
    index = _replay(records)
    assert _state(index) == ({"basket": ["e1", "e2", "e3"]}, [])
    assert index.pending["e1"].segment == 3
    assert index.live == {1: [1, 100], 2: [1, 100], 3: [1, 100]}


def test_runtime_apply_keeps_routes_and_live_counts() -> None:
    index = _replay([])
    index.apply(_event(1), 1, 0, 50)
    index.apply(_event(2, "pending"), 1, 50, 60)
    index.apply(rec.make(rec.DEAD, id="e1", route="basket", seq=3), 2, 0, 70)
    assert _state(index) == ({"pending": ["e2"]}, ["e1"])
    assert index.live == {1: [1, 60], 2: [1, 70]}
    assert index.live_bytes() == 130
    index.apply(rec.make(rec.REQUEUE, id="e1", route="basket", seq=4), 2, 70, 80)
    index.apply(rec.make(rec.ACK, id="e2"), 2, 150, 20)
    assert _state(index) == ({"basket": ["e1"]}, [])
    assert index.live == {1: [0, 0], 2: [1, 80]}
    assert index.counters.next_seq == 5


def test_counters_come_from_meta_then_count_on() -> None:
    meta = rec.make(rec.META, seq=50, tail={"overflowed": 7, "expired": 2, "lost": 1,
                                             "dropped": 3})
    records = [(meta, 5),
               (rec.make(rec.DEAD, id="x", route="r", seq=51, flags=rec.OVERFLOW), 5),
               (rec.make(rec.DEAD, id="y", route="r", seq=52, flags=rec.EXPIRED), 5),
               (rec.make(rec.DEAD, id="y", route="r", seq=52, flags=rec.EXPIRED | rec.COPY), 6),
               (rec.make(rec.DROP, id="gone-with-an-older-segment"), 6),
               (rec.make(rec.LOST, tail={"n": 4}), 6)]
    counters = _replay(records).counters
    assert (counters.overflowed, counters.expired, counters.dropped, counters.lost) == (8, 3, 4, 5)
    assert counters.next_seq == 53


def test_an_unreadable_meta_or_lost_tail_does_not_stop_replay() -> None:
    records = [(rec.Rec(rec.META, 0, 9, 0.0, "", "", b"not json"), 1),
               (rec.Rec(rec.LOST, 0, 0, 0.0, "", "", b"[]"), 1), (_event(1), 1)]
    index = _replay(records)
    assert index.counters.lost == 1 and index.counters.next_seq == 9
    assert _state(index) == ({"basket": ["e1"]}, [])
