"""A sender killed between the backend's 2xx and the journal's ack re-sends on restart, stored once;
and senders SIGKILLed at random moments mid-send, hundreds of times, lose and double nothing.

The children are real agent processes: real journal, real client, real sender. In the first
test the journal's ``ack`` reports the event on stdout and then waits to be killed, so the
SIGKILL lands exactly after the 2xx and before the ack.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sender_support import basket_event, make_config, pending_event

from agent.config import JournalConfig
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


# A pre-imported parent forks each sending child, so a round costs a fork, not an interpreter
# start: hundreds of SIGKILLs fit in seconds. The child's output goes to /dev/null (structlog's
# default output is stdout, which here carries the protocol: "go" -> pid, "reap" -> exit code).
FORKER = r"""
import os, sys
from pathlib import Path
from agent.config import build_config
from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.sender import Sender

state_dir, url = Path(sys.argv[1]), sys.argv[2]
config = build_config(flags={
    "backend": {"url": url, "connect_timeout_s": 2.0, "read_timeout_s": 2.0},
    "state": {"dir": str(state_dir)},
    "delivery": {"not_paired_retry_s": 0.01, "backoff_initial_s": 0.01, "backoff_max_s": 0.05},
})


def deliver():
    journal = Journal.open(state_dir, config.journal)
    client = BackendClient(config.backend, config.delivery)
    try:
        return Sender(journal, client, IdentityStore(state_dir, backend_url=url), config).drain(20.0)
    finally:
        client.close()
        journal.close()


while sys.stdin.readline().strip() == "go":
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        code = 1
        try:
            code = 0 if deliver() else 1
        finally:
            os._exit(code)
    print(pid, flush=True)
    sys.stdin.readline()  # "reap": the test has killed the child, or lets it finish
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""
KILL_ROUNDS = 300
EVENTS_PER_ROUND = 4


class Forker:
    def __init__(self, state_dir: Path, url: str, stderr: Path) -> None:
        self._err = stderr.open("w")
        self.proc = subprocess.Popen([sys.executable, "-c", FORKER, str(state_dir), url],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True)

    def _say(self, word: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the forking parent died: see its stderr file"
        return line

    def start_child(self) -> int:
        return int(self._say("go"))

    def reap(self) -> int:
        return int(self._say("reap"))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._err.close()


def pair_everyone(backend: ReferenceBackend) -> None:
    for device in backend.devices():
        backend.pair(device["code"])


@pytest.mark.slow
def test_senders_killed_mid_send_hundreds_of_times_lose_and_double_nothing(
        tmp_path: Path) -> None:
    rng = random.Random(20261205)
    state_dir = tmp_path / "state"
    sent: list[str] = []
    killed = 0
    with ReferenceBackend(db_path=tmp_path / "backend.sqlite3") as backend:
        forker = Forker(state_dir, backend.url, tmp_path / "forker.err")
        try:
            for _ in range(KILL_ROUNDS):
                with Journal.open(state_dir, JournalConfig()) as journal:
                    for _ in range(EVENTS_PER_ROUND):
                        event = pending_event() if rng.random() < 0.25 else basket_event()
                        journal.append(event)
                        sent.append(event.event_id)
                pair_everyone(backend)  # a device registered by a killed child, too
                seen = len(backend.calls)
                pid = forker.start_child()
                # Killed after its first to third request reached the backend, give or take
                # a few milliseconds: before, during or after the 2xx and the journal's ack.
                backend.wait_calls(seen + rng.randint(1, 3), timeout=10.0)
                time.sleep(rng.uniform(0.0, 0.004))  # a real process: let it get somewhere
                os.kill(pid, signal.SIGKILL)
                code = forker.reap()
                assert code in (0, -signal.SIGKILL), f"child exit {code}: see forker.err"
                killed += code == -signal.SIGKILL
            pair_everyone(backend)
            forker.start_child()
            assert forker.reap() == 0, "the last child, left alone, empties the journal"
        finally:
            forker.close()
        stored = [item["eventId"] for item in backend.basket_items() + backend.pending_items()]
        posts = [call for call in backend.calls if call.path in ("/api/basket", "/api/pending-items")]
    assert killed >= KILL_ROUNDS // 2, "the kills must land while the child is at work"
    assert sorted(stored) == sorted(sent)  # every journaled event, each exactly once
    assert posts and [call for call in posts if call.idempotency_key != call.event_id] == []
    # Some kills landed between the backend storing an event and the child's ack: re-sent.
    assert len({call.event_id for call in posts}) < len(posts)
    with Journal.open(state_dir, JournalConfig(), read_only=True) as journal:
        assert journal.stats().pending == 0 and journal.dead_letters() == []
