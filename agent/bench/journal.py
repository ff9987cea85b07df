"""Journal benchmark: durable appends against a raw write+fdatasync loop, and opening time.

Appends: the journal appends events (each durable on return: one pwrite, one
fdatasync), then a bare loop writes exactly the same framed bytes with
os.pwrite + os.fdatasync per record into a file zeroed ahead of time, as the
journal's segments are, so neither fdatasync has a file size to update. That
is the raw baseline: ratio = journal appends/s over it (goal >= 0.80). The
journal's zeroing ahead is inside its timed appends; the baseline's is not.
A second, informative line times the same bytes appended with O_APPEND (each
fdatasync then also commits the new file size) against the same baseline:
what zeroing ahead saves. The journal and its baseline run in alternating blocks
in the same directory, so drift in the disk or the machine hits them alike; the
O_APPEND loop runs after them, as its filesystem-journal commits would slow
whichever loop came next.

Opening: a journal holding 100,000 pending events (quick: 10,000, goal scaled)
is opened, once with its files in the page cache and once with them evicted
(posix_fadvise DONTNEED, as after a reboot), against a raw read of the same
files. Filling that journal is not timed and skips fdatasync (a setup shortcut
through the journal's file-operations seam; the records are the real ones).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ProductEvent
from agent.bench.result import BenchResult
from agent.clock import utc_iso, uuid7
from agent.config import JournalConfig
from agent.delivery import journal_records as rec
from agent.delivery.journal import Journal
from agent.delivery.journal_segments import FileOps
from agent.errors import OperationalError

APPEND_GOAL = 0.80
APPENDS = 2_000
QUICK_APPENDS = 200
BLOCKS = 8
OPEN_EVENTS = 100_000
QUICK_OPEN_EVENTS = 10_000
OPEN_GOAL_S = 1.0
OPENS = 3


class _NoSync(FileOps):
    """Setup only: fill a large journal without paying an fdatasync per event."""

    def fdatasync(self, fd: int) -> None:
        pass


def _events(count: int) -> list[ProductEvent]:
    now = utc_iso(time.time())
    return [ProductEvent(uuid7(), ROUTE_PENDING if n % 4 == 0 else ROUTE_BASKET,
                         f"P00{n % 6 + 1}", "Organic Apples", 1 + n % 3, 0.9, now)
            for n in range(count)]


def _bench_root() -> str | None:
    """A disk-backed temp directory: /var/tmp when usable (/tmp may be RAM)."""
    candidate = Path("/var/tmp")
    return str(candidate) if candidate.is_dir() and os.access(candidate, os.W_OK) else None


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (from /proc/self/mounts), or "?"."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return "?"
    best, kind = "", "?"
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and (resolved == fields[1] or resolved.startswith(
                fields[1].rstrip("/") + "/")) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


def _segment_bytes(state: Path) -> bytes:
    """Every segment's bytes in order (the active one ends in zeroes written ahead)."""
    return b"".join(p.read_bytes() for p in sorted((state / "journal").glob("seg-*.log")))


def bench_appends(root: Path, count: int) -> tuple[float, float, float]:
    """Appends/s of (the journal, raw pwrite into zeroed space, raw O_APPEND), fdatasync each,
    for the same framed bytes."""
    state = root / "appends"
    events = _events(count)
    per_block = max(1, count // BLOCKS)
    journal_s = raw_s = append_s = 0.0
    raw_fd = os.open(root / "raw.bin", os.O_RDWR | os.O_CREAT, 0o600)
    append_fd = os.open(root / "append.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    raw_end = raw_zeroed = 0
    all_frames: list[bytes] = []
    try:
        with Journal.open(state, JournalConfig(max_events=count + 1)) as journal:
            done = rec.scan(_segment_bytes(state)).data_end
            for start in range(0, count, per_block):
                block = events[start:start + per_block]
                began = time.perf_counter()
                for event in block:
                    journal.append(event)
                journal_s += time.perf_counter() - began
                written = _segment_bytes(state)
                found = rec.scan(written)
                frames = [written[offset:offset + size]
                          for offset, size, _ in found.records if offset >= done]
                done = found.data_end
                needed = raw_end + sum(len(frame) for frame in frames)
                if needed > raw_zeroed:  # zeroed ahead, untimed
                    os.pwrite(raw_fd, bytes(needed - raw_zeroed), raw_zeroed)
                    os.fsync(raw_fd)
                    raw_zeroed = needed
                began = time.perf_counter()
                for frame in frames:
                    os.pwrite(raw_fd, frame, raw_end)
                    os.fdatasync(raw_fd)
                    raw_end += len(frame)
                raw_s += time.perf_counter() - began
                all_frames += frames
        # Informative, and after the alternation: each O_APPEND fdatasync also commits the
        # filesystem journal, which would slow whichever loop ran next.
        began = time.perf_counter()
        for frame in all_frames:
            os.write(append_fd, frame)
            os.fdatasync(append_fd)
        append_s = time.perf_counter() - began
    finally:
        os.close(raw_fd)
        os.close(append_fd)
    return count / journal_s, count / raw_s, count / append_s


def _evict(paths: list[Path]) -> bool:
    """Drop these files' pages from the page cache; False where the OS cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def open_all(state: Path, count: int) -> None:
    """Open the journal in ``state`` and close it again; OperationalError unless all ``count``
    events came back."""
    with Journal.open(state, JournalConfig(max_events=count + 1)) as journal:
        found = journal.stats().pending
    if found != count:
        raise OperationalError(
            f"journal benchmark: reopening {state} found {found} of {count} pending events",
            fix="the journal lost events on reopen; run 'basketagent status' on a copy to see why")


def bench_open(root: Path, count: int) -> dict[str, tuple[float, float]]:
    """{"warm"/"cold": (median seconds to open, median seconds to read the files raw)}."""
    state = root / "open"
    with Journal.open(state, JournalConfig(max_events=count + 1), ops=_NoSync()) as journal:
        for event in _events(count):
            journal.append(event)
    files = sorted((state / "journal").glob("seg-*.log"))
    results: dict[str, tuple[float, float]] = {}
    for mode in ("warm", "cold"):
        opens, reads = [], []
        for _ in range(OPENS):
            if mode == "cold" and not _evict(files):
                break
            began = time.perf_counter()
            for path in files:
                path.read_bytes()
            reads.append(time.perf_counter() - began)
            if mode == "cold":
                _evict(files)
            began = time.perf_counter()
            open_all(state, count)
            opens.append(time.perf_counter() - began)
        if opens:
            results[mode] = (statistics.median(opens), statistics.median(reads))
    return results


def run(quick: bool = False) -> list[BenchResult]:
    appends = QUICK_APPENDS if quick else APPENDS
    open_events = QUICK_OPEN_EVENTS if quick else OPEN_EVENTS
    with tempfile.TemporaryDirectory(prefix="basketagent-bench-journal-",
                                     dir=_bench_root()) as tmp:
        root = Path(tmp)
        where = f"{_filesystem(root)} at {root.parent}"
        journal_rate, raw_rate, append_rate = bench_appends(root, appends)
        opened = bench_open(root, open_events)
    ratio = journal_rate / raw_rate
    results = [BenchResult(
        "journal durable appends", journal_rate, "appends/s", baseline=raw_rate,
        goal=f">= {APPEND_GOAL:.2f}", ok=ratio >= APPEND_GOAL,
        note=f"{appends:,} appends{' (quick)' if quick else ''}, fdatasync each, {where}; "
             "baseline: the same bytes by pwrite into a file zeroed ahead"),
        BenchResult(
            "raw O_APPEND appends (informative)", append_rate, "appends/s",
            baseline=raw_rate, baseline_label="raw zeroed ahead",
            note=f"the same {appends:,} records appended with O_APPEND, fdatasync each "
                 "(each also commits the file size): what zeroing ahead saves")]
    goal_s = OPEN_GOAL_S * open_events / OPEN_EVENTS
    scaled = f"; goal scaled from {OPEN_GOAL_S:g} s for {OPEN_EVENTS:,}" if quick else ""
    for mode, (open_s, read_s) in opened.items():
        cache = "page cache warm" if mode == "warm" else "page cache evicted, as after a reboot"
        results.append(BenchResult(
            f"journal open ({mode})", open_s, "s", baseline=read_s, goal=f"< {goal_s:g} s",
            ok=open_s < goal_s,
            note=f"{open_events:,} pending events{' (quick)' if quick else ''}, {cache}; "
                 f"baseline: raw read of the same files{scaled}"))
    return results
