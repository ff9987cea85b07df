"""basketagent status: identity, journal, dead letters, breaker; for a running and a stopped agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sender_support import basket_event, free_port, make_config, pending_event, wait_until

from agent.cli import main
from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.sender import Sender
from agent.devserver import ReferenceBackend


def status_json(state: Path, url: str, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()  # what the test's own parts logged before
    assert main(["status", "--json", "--state-dir", str(state), "--backend", url]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "exactly one JSON object on one line"
    return json.loads(out)


def test_status_of_a_stopped_agent(tmp_path: Path, backend: ReferenceBackend,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    backend.inject("/api/basket", 422, body='{"error": "unknown productId P009"}', times=1)
    basket_ok = basket_event()
    config = make_config(state, backend.url)
    with Journal.open(state, config.journal) as journal, \
            BackendClient(config.backend, config.delivery) as client:
        sender = Sender(journal, client, IdentityStore(state), config)
        refused, held = basket_event("P009"), pending_event()
        for event in (refused, basket_ok, held):
            journal.append(event)
        sender.drain(1.0)
    identity = IdentityStore(state).load()

    data = status_json(state, backend.url, capsys)
    assert data["deviceId"] == identity.device_id and data["pairingCode"] == identity.code
    assert data["paired"] is False
    assert data["service"] == "stopped"
    assert data["breaker"] == "closed" and data["backendUp"] is True
    assert data["journal"]["pending"] == 1
    assert data["journal"]["pendingByRoute"].get("pending") == 1
    assert 0 <= data["journal"]["oldestAgeS"] < 60
    assert data["journal"]["deadLetters"] == 1
    [letter] = data["deadLetters"]
    assert letter["eventId"] == refused.event_id and letter["status"] == 422
    assert "unknown productId" in letter["bodyStart"]
    assert [call.path for call in backend.calls][-1] == "/health"

    assert main(["status", "--state-dir", str(state), "--backend", backend.url]) == 0
    text = capsys.readouterr().out
    assert f"{identity.device_id} (not paired: code {identity.code})" in text
    assert "journal:      1 pending (pending 1)" in text
    assert f"{refused.event_id} HTTP 422 refused: " in text and "unknown productId" in text
    assert "breaker closed" in text


def test_status_of_a_stopped_agent_that_cannot_reach_the_backend(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    data = status_json(tmp_path / "state", url, capsys)
    assert data["breaker"] == "closed" and data["backendUp"] is False
    assert data["deviceId"] is None and data["journal"]["pending"] == 0
    assert data["journal"]["oldestAgeS"] is None
    assert data["lastError"] == f"backend at {url} not answering"
    assert main(["status", "--state-dir", str(tmp_path / "state"), "--backend", url]) == 0
    text = capsys.readouterr().out
    assert f"backend:      {url} not answering; breaker closed" in text
    assert f"last error:   backend at {url} not answering" in text


def test_status_reports_a_damaged_identity_and_leaves_it_in_place(
        tmp_path: Path, backend: ReferenceBackend, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    damaged = state / "identity.json"
    damaged.write_bytes(b'{"deviceId": "d"')
    data = status_json(state, backend.url, capsys)
    assert data["deviceId"] is None
    assert data["identityProblem"].startswith(f"{damaged} is damaged (")
    assert main(["status", "--state-dir", str(state), "--backend", backend.url]) == 0
    assert f"device:       {damaged} is damaged (" in capsys.readouterr().out
    assert damaged.read_bytes() == b'{"deviceId": "d"'
    assert not list(state.glob("identity.json.damaged*")), "status changes nothing on disk"


def test_status_while_the_service_runs_reads_without_the_lock(
        tmp_path: Path, backend: ReferenceBackend, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    config = make_config(state, backend.url)
    journal = Journal.open(state, config.journal)  # held, as the running service does
    client = BackendClient(config.backend, config.delivery)
    sender = Sender(journal, client, IdentityStore(state), config)
    try:
        sender.start()
        journal.append(basket_event())
        sender.wake()
        assert wait_until(lambda: journal.stats().pending == 0)
        backend.stop()  # the running agent's view is used, not a probe
        data = status_json(state, backend.url, capsys)
        assert data["service"] == "running"
        assert data["breaker"] == "closed" and data["backendUp"] is None
        assert data["deviceId"] == sender.status().device_id
        assert data["journal"]["pending"] == 0
    finally:
        sender.stop(2.0)
        client.close()
        journal.close()


def test_status_json_as_a_real_process(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run([sys.executable, "-m", "agent", "status", "--json", "--state-dir",
                             str(tmp_path / "state"), "--backend", url],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    data = json.loads(result.stdout)  # the whole stdout is one JSON object
    assert isinstance(data, dict) and data["breaker"] == "closed"
    assert data["backendUp"] is False and "not answering" in data["lastError"]
    assert "Traceback" not in result.stderr


def test_status_never_shows_the_backend_password(tmp_path: Path, backend: ReferenceBackend,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    up = backend.url.replace("http://", "http://ann:s3cret@")
    down = f"http://ann:s3cret@127.0.0.1:{free_port()}"
    for url, plain in ((up, backend.url), (down, down.replace("ann:s3cret@", ""))):
        data = status_json(tmp_path / "state", url, capsys)
        assert data["backendUrl"] == plain
        assert main(["status", "--state-dir", str(tmp_path / "state"), "--backend", url]) == 0
        captured = capsys.readouterr()
        assert f"backend:      {plain} " in captured.out
        assert "s3cret" not in json.dumps(data) + captured.out + captured.err
    assert data["lastError"] == f"backend at {plain} not answering"
