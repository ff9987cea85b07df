"""Expiry by age when the wall clock cannot be trusted: a Pi has no real-time clock.

After a month switched off it boots with the clock a month behind; events
appended before NTP sets it must not look a month old once it does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from journal_support import ENOSPC, Clock, FlakyOps, event, open_journal, pending_ids

from agent.basket.event import ProductEvent
from agent.config import JournalConfig
from agent.delivery.journal import Journal
from agent.errors import JournalError

DAY = 86400.0
CONFIG = JournalConfig(max_age_s=DAY)


def unsynced(n: int) -> ProductEvent:
    return replace(event(n), clock_synced=False)


def synced(n: int) -> ProductEvent:
    return replace(event(n), clock_synced=True)


def expired_ids(journal: Journal) -> list[str]:
    return [d.event_id for d in journal.dead_letters() if d.reason == "expired"]


def test_ntp_setting_the_clock_a_month_ahead_expires_nothing(tmp_path: Path) -> None:
    wall, mono = Clock(1_700_000_000.0), Clock(50.0)
    j = open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono)
    j.append(unsynced(0))
    mono.now += 5
    wall.now += 5
    j.append(synced(1))
    mono.now += 5
    wall.now += 5 + 31 * DAY  # NTP sets the clock
    j.append(synced(2))
    assert pending_ids(j) == [event(n).event_id for n in range(3)]
    assert j.stats().expired == 0 and j.stats().oldest_age_s == 10.0
    mono.now += DAY - 10  # event 0 has now been pending a day of monotonic time
    assert pending_ids(j) == [event(n).event_id for n in (1, 2)]
    assert expired_ids(j) == [event(0).event_id]
    j.close()


def test_a_wall_clock_jump_in_a_running_agent_expires_nothing(tmp_path: Path) -> None:
    """Written by this process, an event's age is monotonic time, synchronised or not."""
    wall, mono = Clock(), Clock(0.0)
    j = open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono)
    j.append(synced(1))
    wall.now += 365 * DAY
    mono.now += 2
    assert pending_ids(j) == [event(1).event_id]
    assert j.stats().oldest_age_s == 2.0
    j.close()


def test_after_a_restart_unsynced_events_age_from_the_open(tmp_path: Path) -> None:
    wall, mono = Clock(1_700_000_000.0), Clock(0.0)
    with open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono) as j:
        j.append(unsynced(0))
        j.append(synced(1))
    # Off for a month; the next boot's clock is set right away; monotonic time restarts.
    wall.now += 31 * DAY
    mono.now = 0.0
    j = open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono)
    # The synchronised event is a month old by the wall clock: it expires. The other one's
    # appended_at says nothing; it has been pending (at least) since this open.
    assert pending_ids(j) == [event(0).event_id]
    assert expired_ids(j) == [event(1).event_id]
    assert j.stats().oldest_age_s == 0.0
    mono.now += DAY - 1
    wall.now += DAY - 1
    assert pending_ids(j) == [event(0).event_id]
    mono.now += 1
    assert pending_ids(j) == []
    assert expired_ids(j) == [event(1).event_id, event(0).event_id]
    j.close()


def test_a_clock_behind_after_boot_only_delays_expiry(tmp_path: Path) -> None:
    """A synchronised event read at open is aged by whichever measure is larger."""
    wall, mono = Clock(1_700_000_000.0), Clock(0.0)
    with open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono) as j:
        j.append(synced(1))
    wall.now -= 10 * DAY  # booted with a stale clock
    j = open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono)
    assert pending_ids(j) == [event(1).event_id]
    mono.now += DAY
    wall.now += DAY
    assert pending_ids(j) == []  # a day pending since the open, whatever the wall says
    j.close()


def test_synced_events_behind_unsynced_ones_still_expire(tmp_path: Path) -> None:
    """An old synchronised event is found behind younger unsynchronised ones."""
    wall, mono = Clock(1_700_000_000.0), Clock(0.0)
    with open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono) as j:
        for n in range(3):
            j.append(unsynced(n))
        j.append(synced(3))
        j.append(synced(4))
        wall.now += DAY / 2
        j.append(synced(5))
    wall.now += DAY / 2 + 1
    j = open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono)
    assert pending_ids(j) == [event(n).event_id for n in (0, 1, 2, 5)]
    assert expired_ids(j) == [event(3).event_id, event(4).event_id]
    j.ack(event(5).event_id)
    wall.now += DAY
    mono.now += 1
    assert pending_ids(j) == [event(n).event_id for n in (0, 1, 2)]
    j.close()


def test_a_requeued_event_ages_in_monotonic_time_only(tmp_path: Path) -> None:
    """Requeueing may happen before NTP: its new appended_at is not trusted across a restart."""
    wall, mono = Clock(1_700_000_000.0), Clock(0.0)
    with open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono) as j:
        j.append(synced(1))
        j.dead_letter(event(1).event_id, 409, "", "refused")
        assert j.requeue() == 1
    wall.now += 31 * DAY
    j = open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono)
    assert pending_ids(j) == [event(1).event_id]
    mono.now += DAY
    assert pending_ids(j) == [] and expired_ids(j) == [event(1).event_id]
    j.close()


def test_a_failed_expiry_is_tried_again(tmp_path: Path) -> None:
    """An expiry that could not be written is not forgotten by the scan's shortcut."""
    wall, mono = Clock(1_700_000_000.0), Clock(0.0)
    with open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono) as j:
        j.append(synced(1))
    wall.now += 2 * DAY
    ops = FlakyOps()
    j = open_journal(tmp_path, CONFIG, wall_clock=wall, clock=mono, ops=ops)
    ops.fail_write = ENOSPC
    with pytest.raises(JournalError, match="no space"):
        j.pending()
    ops.fail_write = None
    assert pending_ids(j) == [] and expired_ids(j) == [event(1).event_id]
    j.close()
