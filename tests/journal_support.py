"""Shared pieces for the journal tests: events, a settable clock, failing file operations."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from agent.basket.event import ProductEvent
from agent.config import JournalConfig
from agent.delivery.journal import Journal
from agent.delivery.journal_segments import FileOps


def event(n: int, route: str = "basket") -> ProductEvent:
    return ProductEvent(
        event_id=f"0190a1b2-0000-7000-8000-{n:012d}",
        route=route,
        product_id=f"P{n % 7:03d}",
        name=f"Product {n % 7} \u00e9",
        quantity=1 + n % 3,
        confidence=0.5 + (n % 50) / 100,
        detected_at="2026-12-04T10:00:00.123Z",
        clock_synced=n % 5 != 0,
    )


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FlakyOps(FileOps):
    """Real file operations that fail on demand, as a full or broken disk does."""

    def __init__(self) -> None:
        self.fail_write: int | None = None  # errno to raise from write
        self.short_first = False  # write half of the data first, then fail
        self.fail_sync: int | None = None
        self.fail_truncate: int | None = None
        self.fail_if: Callable[[bytes], bool] | None = None  # fail writes of matching data
        self.writes = 0
        self.syncs = 0

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        self.writes += 1
        if self.fail_if is not None and self.fail_if(bytes(data)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.fail_write is not None:
            if self.short_first and len(data) > 1:
                self.short_first = False
                return os.pwrite(fd, bytes(data[: len(data) // 2]), offset)
            raise OSError(self.fail_write, os.strerror(self.fail_write))
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        self.syncs += 1
        if self.fail_sync is not None:
            raise OSError(self.fail_sync, os.strerror(self.fail_sync))
        super().fdatasync(fd)

    def truncate(self, fd: int, size: int) -> None:
        if self.fail_truncate is not None:
            raise OSError(self.fail_truncate, os.strerror(self.fail_truncate))
        super().truncate(fd, size)


ENOSPC = errno.ENOSPC


def open_journal(state: Path, config: JournalConfig | None = None, **kwargs) -> Journal:
    return Journal.open(state, config or JournalConfig(), **kwargs)


def segments(state: Path) -> list[Path]:
    return sorted((state / "journal").glob("seg-*.log"))


def pending_ids(journal: Journal, route: str | None = None) -> list[str]:
    return [e.event.event_id for e in journal.pending(route, limit=10**9)]
