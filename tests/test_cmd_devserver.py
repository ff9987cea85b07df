"""basketagent devserver: serves until a signal, pairs over HTTP, one-line errors."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agent.cli import main
from agent.commands.devserver import open_backend, serve
from agent.devserver import ReferenceBackend


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_returns_when_stopped() -> None:
    backend = open_backend(None, "127.0.0.1", 0)
    try:
        stop = threading.Event()
        stop.set()
        serve(backend, stop)
        assert requests.get(backend.url + "/health", timeout=5).status_code == 200
    finally:
        backend.close()


class ListeningWriter(io.StringIO):
    """stdout that tells a waiting thread when the server has said it is listening."""

    def __init__(self) -> None:
        super().__init__()
        self.listening = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "listening on" in self.getvalue():
            self.listening.set()
        return written


def test_in_process_serves_until_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "backend.sqlite"
    # A free port, found and released; the command binds it again at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = ListeningWriter()
    seen: dict[str, object] = {}

    def client() -> None:
        try:
            assert out.listening.wait(10)
            url = f"http://127.0.0.1:{port}"
            with requests.Session() as http:
                answer = http.post(url + "/api/devices/register", json={}, timeout=5).json()
                seen["paired"] = http.post(url + "/api/devices/pair",
                                           json={"code": answer["code"]}, timeout=5).status_code
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=client)
    thread.start()
    with contextlib.redirect_stdout(out):
        code = main(["devserver", "--port", str(port), "--db", str(db)])
    thread.join(10)
    assert code == 0
    assert seen["paired"] == 200
    assert f"listening on http://127.0.0.1:{port}" in out.getvalue()
    # The handlers are put back, and the data is in the file.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with ReferenceBackend(db) as reopened:
        assert reopened.devices()[0]["paired"] is True


def test_port_in_use_is_exit_1_one_line(busy_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devserver", "--port", str(busy_port)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("basketagent")]
    assert err == [(f"basketagent: error: cannot listen on 127.0.0.1:{busy_port}: Address "
                    "already in use (choose another --port or --host, or stop what uses it)")]


def test_a_db_that_is_not_sqlite_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("these are not the tables you are looking for " * 100)
    assert main(["devserver", "--port", "0", "--db", str(db)]) == 2
    assert f"--db {db}: cannot use it as an SQLite database" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_bad_port_is_exit_2(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devserver", "--port", port]) == 2
    assert "is not a port number" in capsys.readouterr().err


def test_help_shows_how_to_pair(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devserver", "--help"]) == 0
    out = capsys.readouterr().out
    assert "curl -X POST" in out and "/api/devices/pair" in out


def test_as_a_real_process_sigint_and_sigterm_stop_it_cleanly() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BASKETAGENT_")}
    for signum in (signal.SIGTERM, signal.SIGINT):
        child = subprocess.Popen([sys.executable, "-m", "agent", "devserver", "--port", "0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            url = line.split("listening on ")[1].split()[0]
            assert requests.get(url + "/health", timeout=5).status_code == 200
            child.send_signal(signum)
            _, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        assert child.returncode == 0
        assert "Traceback" not in err
        assert "reference backend stopped" in err
