"""A sender killed between the backend's 2xx and the journal's ack re-sends on restart, stored once.

The child is a real agent process: real journal, real client, real sender. Its
journal's ``ack`` first reports the event on stdout and then waits to be
killed, so the SIGKILL lands exactly after the 2xx and before the ack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sender_support import basket_event, make_config

from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.sender import Sender
from agent.devserver import ReferenceBackend

CHILD = r"""
import sys, threading
from pathlib import Path
from agent.config import build_config
from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.sender import Sender

state_dir, url = Path(sys.argv[1]), sys.argv[2]
config = build_config(flags={"backend": {"url": url}, "state": {"dir": str(state_dir)}})


class AckAfterReport:
    def __init__(self, journal):
        self._journal = journal

    def ack(self, event_id):
        print("2xx", event_id, flush=True)
        threading.Event().wait(60)  # killed here, before the ack is written
        self._journal.ack(event_id)

    def __getattr__(self, name):
        return getattr(self._journal, name)


journal = Journal.open(state_dir, config.journal)
client = BackendClient(config.backend, config.delivery)
sender = Sender(AckAfterReport(journal), client, IdentityStore(state_dir), config)
sender.drain(30.0)
print("drain returned", flush=True)
"""


def test_kill_between_2xx_and_ack_resends_and_the_backend_stores_it_once(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    event = basket_event()
    with ReferenceBackend(db_path=tmp_path / "backend.sqlite3") as backend:
        config = make_config(state_dir, backend.url)
        with Journal.open(state_dir, config.journal) as journal:
            journal.append(event)

        child = subprocess.Popen([sys.executable, "-c", CHILD, str(state_dir), backend.url],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert child.stdout is not None
            # structlog's default output shares stdout with the report: skip log lines.
            report = next((line.split() for line in child.stdout if line.startswith("2xx ")), [])
            assert report == ["2xx", event.event_id]
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
        assert [item["eventId"] for item in backend.basket_items()] == [event.event_id]

        journal = Journal.open(state_dir, config.journal)
        client = BackendClient(config.backend, config.delivery)
        try:
            assert [entry.event.event_id for entry in journal.pending()] == [event.event_id]
            sender = Sender(journal, client, IdentityStore(state_dir), config)
            assert sender.drain(10.0) is True
        finally:
            client.close()
            journal.close()
        posts = [call for call in backend.calls if call.path == "/api/basket"]
        assert [call.idempotency_key for call in posts] == [event.event_id, event.event_id]
        assert [item["eventId"] for item in backend.basket_items()] == [event.event_id]
