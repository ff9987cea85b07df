"""basketagent requeue: dead letters back to pending, by id or all; bad ids change nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sender_support import basket_event

from agent.cli import main
from agent.config import JournalConfig
from agent.delivery.journal import Journal


def dead_letters(state: Path, count: int) -> list[str]:
    """``count`` journaled events the backend refused, as the sender records them."""
    events = [basket_event(f"P00{n}") for n in range(count)]
    with Journal.open(state, JournalConfig()) as journal:
        for event in events:
            journal.append(event)
            journal.dead_letter(event.event_id, 422, '{"error": "unknown product"}', "refused")
    return [event.event_id for event in events]


def journal_state(state: Path) -> tuple[list[str], list[str]]:
    with Journal.open(state, JournalConfig(), read_only=True) as journal:
        return ([entry.event.event_id for entry in journal.pending()],
                [letter.event_id for letter in journal.dead_letters()])


def test_requeue_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = dead_letters(tmp_path, 3)
    assert main(["requeue", "--all", "--state-dir", str(tmp_path)]) == 0
    assert "requeued 3 dead letters" in capsys.readouterr().out
    assert journal_state(tmp_path) == (ids, [])


def test_requeue_named_ids_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = dead_letters(tmp_path, 3)
    assert main(["requeue", ids[1], "--state-dir", str(tmp_path)]) == 0
    assert "requeued 1 dead letter" in capsys.readouterr().out
    assert journal_state(tmp_path) == ([ids[1]], [ids[0], ids[2]])


def test_an_unknown_id_is_bad_input_and_requeues_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = dead_letters(tmp_path, 2)
    assert main(["requeue", ids[0], "no-such-event", "--state-dir", str(tmp_path)]) == 2
    assert "not a dead letter: no-such-event" in capsys.readouterr().err
    assert journal_state(tmp_path) == ([], ids)


@pytest.mark.parametrize("argv", [[], ["--all", "some-id"]])
def test_requeue_needs_all_or_ids(tmp_path: Path, argv: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["requeue", *argv, "--state-dir", str(tmp_path)]) == 2
    assert "give --all or one or more EVENT_IDs" in capsys.readouterr().err


def test_requeue_while_the_service_holds_the_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead_letters(tmp_path, 1)
    with Journal.open(tmp_path, JournalConfig()):
        assert main(["requeue", "--all", "--state-dir", str(tmp_path)]) == 1
    assert "the running service holds the journal" in capsys.readouterr().err
    assert journal_state(tmp_path)[0] == []


def test_requeue_as_a_real_process(tmp_path: Path) -> None:
    ids = dead_letters(tmp_path, 2)
    result = subprocess.run([sys.executable, "-m", "agent", "requeue", "--all", "--state-dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "requeued 2 dead letters"
    assert journal_state(tmp_path) == (ids, [])
