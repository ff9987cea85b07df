"""basketagent flush: in process through agent.cli.main, plus one real child for the exit code."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sender_support import basket_event, free_port, pending_event

from agent.cli import main
from agent.config import JournalConfig
from agent.delivery.journal import Journal
from agent.devserver import ReferenceBackend


def journal_events(state_dir: Path, *events) -> None:  # type: ignore[no-untyped-def]
    with Journal.open(state_dir, JournalConfig()) as journal:
        for event in events:
            journal.append(event)


def pending_count(state_dir: Path) -> int:
    with Journal.open(state_dir, JournalConfig(), read_only=True) as journal:
        return journal.stats().pending


def test_flush_delivers_everything_and_exits_0(tmp_path: Path, backend: ReferenceBackend,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    events = [basket_event() for _ in range(3)]
    journal_events(state, *events)
    assert main(["flush", "--state-dir", str(state), "--backend", backend.url]) == 0
    assert "delivered 3 events; journal empty" in capsys.readouterr().out
    assert [item["eventId"] for item in backend.basket_items()] == [e.event_id for e in events]
    assert pending_count(state) == 0


def test_flush_of_an_empty_journal_exits_0(tmp_path: Path, backend: ReferenceBackend,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flush", "--state-dir", str(tmp_path / "s"), "--backend", backend.url]) == 0
    assert "nothing to deliver" in capsys.readouterr().out
    assert backend.calls == []


def test_flush_counts_refused_events(tmp_path: Path, backend: ReferenceBackend,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    journal_events(state, basket_event(), basket_event())
    backend.inject("/api/basket", 422, body='{"error": "bad productId"}')
    assert main(["flush", "--state-dir", str(state), "--backend", backend.url]) == 0
    assert "delivered 1 event; journal empty; 1 refused by the backend" in capsys.readouterr().out


def test_flush_not_paired_exits_1_with_the_count(tmp_path: Path, backend: ReferenceBackend,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    journal_events(state, basket_event(), pending_event(), pending_event())
    assert main(["flush", "--state-dir", str(state), "--backend", backend.url,
                 "--timeout", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("basketagent: error: 2 events still journaled: not paired")
    assert len(backend.basket_items()) == 1 and pending_count(state) == 2


def test_flush_with_the_backend_down_exits_1(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    journal_events(state, basket_event())
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["flush", "--state-dir", str(state), "--backend", url, "--timeout", "0.3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("basketagent: error: 1 event still journaled: backend down")
    assert pending_count(state) == 1


def test_flush_while_the_service_holds_the_journal_exits_1(
        tmp_path: Path, backend: ReferenceBackend, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    with Journal.open(state, JournalConfig()) as held:
        held.append(basket_event())
        assert main(["flush", "--state-dir", str(state), "--backend", backend.url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("basketagent: error:")]) == 1
    assert "the running service holds the journal" in err[-1]
    assert "systemctl stop basketagent" in err[-1]
    assert backend.calls == []


def test_flush_as_a_real_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    journal_events(state, basket_event(), basket_event())
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run([sys.executable, "-m", "agent", "flush", "--state-dir", str(state),
                             "--backend", url, "--timeout", "0.3"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("basketagent:")]
    assert errors == [line for line in errors if "2 events still journaled: backend down" in line]
    assert len(errors) == 1


def test_flush_names_a_config_fault(tmp_path: Path, backend: ReferenceBackend,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    journal_events(state, basket_event())
    config = tmp_path / "agent.toml"
    config.write_text('[backend]\nbasket_path = "/api/baskets"\n')
    assert main(["flush", "--config", str(config), "--state-dir", str(state),
                 "--backend", backend.url]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("basketagent: error: 1 event still journaled: config fault: the backend "
                          "refuses POST /api/baskets even for a freshly registered device: "
                          "check backend.basket_path and backend.url (HTTP 404")
    assert pending_count(state) == 1


def test_flush_gives_up_on_a_backend_that_never_answers_within_its_timeout(
        tmp_path: Path, backend: ReferenceBackend, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    journal_events(state, basket_event())
    config = tmp_path / "agent.toml"
    # Timeouts far beyond --timeout: only the flush deadline can end the stalled call early.
    config.write_text("[backend]\nconnect_timeout_s = 60.0\nread_timeout_s = 60.0\n")
    backend.inject("/api/basket", delay_s=50.0, passthrough=True)  # stored, answered too late
    assert main(["flush", "--config", str(config), "--state-dir", str(state),
                 "--backend", backend.url, "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("basketagent: error: 1 event still journaled: backend down")
    assert pending_count(state) == 1


def test_flush_counts_deliveries_not_events_that_left_by_expiry(
        tmp_path: Path, backend: ReferenceBackend, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    wall = [time.time() - 10.0]
    with Journal.open(state, JournalConfig(), wall_clock=lambda: wall[0]) as journal:
        journal.append(old := basket_event())  # 10 s old
        journal.append(dead := basket_event())
        journal.dead_letter(dead.event_id, 422, "{}", "refused")
        wall[0] = time.time()
        journal.append(fresh := basket_event())
    config = tmp_path / "agent.toml"
    # The old event expires when flush looks at the journal; the dead letter it becomes
    # pushes the refused one out, so the dead letters do not grow.
    config.write_text("[journal]\nmax_age_s = 5.0\nmax_dead_letters = 1\n")
    assert main(["flush", "--config", str(config), "--state-dir", str(state),
                 "--backend", backend.url]) == 0
    out = capsys.readouterr().out
    assert "delivered 1 event; journal empty; 1 expired (older than journal.max_age_s)" in out
    assert [item["eventId"] for item in backend.basket_items()] == [fresh.event_id]
    with Journal.open(state, JournalConfig(), read_only=True) as journal:
        assert [letter.event_id for letter in journal.dead_letters()] == [old.event_id]
