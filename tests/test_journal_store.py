"""SegmentStore: batches land in one write, read back by position; segments roll and go."""

from __future__ import annotations

from pathlib import Path

import pytest
from journal_support import FlakyOps, event, segments

from agent.delivery import journal_records as rec
from agent.delivery.journal_load import load
from agent.delivery.journal_store import SegmentStore
from agent.errors import JournalError


def _store(tmp_path: Path, ops: FlakyOps | None = None, segment_bytes: int = 1 << 20):
    directory = tmp_path / "journal"
    directory.mkdir(exist_ok=True)
    store = SegmentStore(directory, load(directory, repair=True), ops or FlakyOps(),
                         segment_bytes)
    store.start(0)
    return store


def _event_record(n: int, seq: int) -> rec.Rec:
    e = event(n)
    return rec.make(rec.EVENT, id=e.event_id, route=e.route, seq=seq, at=1.0,
                    tail={"e": e.to_dict()})


def test_a_batch_is_one_write_and_reads_back(tmp_path: Path) -> None:
    ops = FlakyOps()
    store = _store(tmp_path, ops)
    writes, syncs = ops.writes, ops.syncs
    store.commit([_event_record(1, 1), _event_record(2, 2)], sync=True)
    assert (ops.writes - writes, ops.syncs - syncs) == (1, 1)
    item = store.index.pending[event(2).event_id]
    assert store.record(item).seq == 2
    assert store.event(item) == event(2)
    store.close()


def test_unsynced_batches_are_counted_until_a_sync(tmp_path: Path) -> None:
    ops = FlakyOps()
    store = _store(tmp_path, ops)
    store.commit([_event_record(1, 1)], sync=True)
    store.commit([rec.make(rec.ACK, id=event(1).event_id)], sync=False)
    store.commit([rec.make(rec.ACK, id="other")], sync=False)
    assert store.unsynced == 2
    syncs = ops.syncs
    store.sync()
    store.sync()  # nothing left: no second fdatasync
    assert store.unsynced == 0 and ops.syncs == syncs + 1
    store.close()


def test_segments_roll_with_a_meta_record_first(tmp_path: Path) -> None:
    store = _store(tmp_path, segment_bytes=1024)
    for n in range(10):
        store.commit([_event_record(n, n + 1)], sync=True)
    files = segments(tmp_path)
    assert len(files) > 1
    for path in files:
        records = rec.scan(path.read_bytes()).records
        assert records[0][2].kind == rec.META
    assert sorted(store.index.pending) == sorted(event(n).event_id for n in range(10))
    store.close()


def test_acked_segments_are_deleted_oldest_first(tmp_path: Path) -> None:
    store = _store(tmp_path, segment_bytes=1024)
    for n in range(30):
        store.commit([_event_record(n, n + 1)], sync=True)
        store.commit([rec.make(rec.ACK, id=event(n).event_id)], sync=False)
    assert len(segments(tmp_path)) <= 2
    assert store.index.pending == {}
    store.close()


def test_a_record_changed_under_the_store_is_a_journal_error(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit([_event_record(1, 1)], sync=True)
    item = store.index.pending[event(1).event_id]
    path = segments(tmp_path)[0]
    data = bytearray(path.read_bytes())
    data[item.offset + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="changed on disk"):
        store.event(item)
    store.close()


def test_a_tail_without_an_event_is_a_journal_error(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit([rec.make(rec.EVENT, id="x", route="basket", seq=1, tail={"e": 5})], sync=True)
    with pytest.raises(JournalError, match="unreadable"):
        store.event(store.index.pending["x"])
    store.commit([rec.make(rec.EVENT, id="y", route="basket", seq=2, tail={"e": {}})], sync=True)
    with pytest.raises(JournalError, match="no valid event"):
        store.event(store.index.pending["y"])
    store.close()
