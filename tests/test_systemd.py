"""sd_notify over a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent.systemd import Notifier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    # A short path: AF_UNIX addresses are limited to 108 bytes, pytest's tmp_path may be longer.
    directory = Path(tempfile.mkdtemp(prefix="ba-sd-"))
    path = directory / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2.0)
    try:
        yield str(path), server
    finally:
        server.close()
        path.unlink(missing_ok=True)
        directory.rmdir()


def received(server: socket.socket) -> list[str]:
    """Every datagram waiting on the socket, without blocking for more."""
    messages = []
    server.setblocking(False)
    try:
        while True:
            messages.append(server.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        server.settimeout(2.0)
    return messages


def test_messages_arrive_in_order(notify_socket: tuple[str, socket.socket]) -> None:
    path, server = notify_socket
    clock = Clock()
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, clock,
                                 pid=4321)
    assert notifier.enabled and notifier.watchdog_enabled
    notifier.ready()
    notifier.status("2.0 fps on cpu;\njournal 0 pending")
    notifier.watchdog()
    notifier.stopping()
    notifier.close()
    assert received(server) == [
        "READY=1\nMAINPID=4321",
        "STATUS=2.0 fps on cpu; journal 0 pending",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_watchdog_pings_at_most_every_half_interval(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, server = notify_socket
    clock = Clock()
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}, clock)
    assert notifier.watchdog_interval_s == 4.0
    notifier.watchdog()                 # t=0: first ping always goes
    clock.now += 1.0
    notifier.watchdog()                 # t=1: too soon
    clock.now += 0.999
    notifier.watchdog()                 # t=1.999: still too soon
    clock.now += 0.001
    notifier.watchdog()                 # t=2.0: half the interval, ping
    notifier.watchdog(now=clock.now + 1.5)   # explicit time, too soon
    notifier.watchdog(now=clock.now + 2.5)   # explicit time, due
    assert received(server) == ["WATCHDOG=1"] * 3


def test_abstract_socket(notify_socket: tuple[str, socket.socket]) -> None:
    name = f"basketagent-test-{secrets.token_hex(6)}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        notifier.status("starting")
        assert received(server) == [f"READY=1\nMAINPID={os.getpid()}", "STATUS=starting"]
    finally:
        server.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert not notifier.watchdog_enabled
    notifier.ready()
    notifier.status("x")
    notifier.watchdog(5.0)
    notifier.stopping()
    assert notifier._socket is None  # nothing was even opened


def test_watchdog_for_another_pid_is_ignored(notify_socket: tuple[str, socket.socket]) -> None:
    path, server = notify_socket
    notifier = Notifier.from_env(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, pid=999)
    assert notifier.enabled and not notifier.watchdog_enabled
    notifier.watchdog(1.0)
    notifier.ready()
    assert received(server) == ["READY=1\nMAINPID=999"]


def test_watchdog_for_this_pid_is_used(notify_socket: tuple[str, socket.socket]) -> None:
    path, _ = notify_socket
    notifier = Notifier.from_env(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "999"}, pid=999)
    assert notifier.watchdog_interval_s == 3.0


@pytest.mark.parametrize("usec, pid", [("soon", ""), ("1000000", "init"), ("0", "")])
def test_malformed_or_zero_watchdog_settings_disable_the_watchdog(
    notify_socket: tuple[str, socket.socket], usec: str, pid: str
) -> None:
    path, server = notify_socket
    notifier = Notifier.from_env(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": usec, "WATCHDOG_PID": pid})
    assert not notifier.watchdog_enabled
    notifier.watchdog(1.0)
    assert received(server) == []


def test_send_failure_is_logged_once_and_never_raises(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"), watchdog_interval_s=1.0, clock=Clock())
    with structlog.testing.capture_logs() as logs:
        notifier.ready()
        notifier.status("a")
        notifier.watchdog(1.0)
        notifier.stopping()
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["message"] == "READY"


def test_recovers_after_systemd_socket_returns(tmp_path: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ba-sd-"))
    path = directory / "notify"
    notifier = Notifier(str(path))
    with structlog.testing.capture_logs() as logs:
        notifier.status("nobody listening")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(str(path))
        try:
            notifier.status("back")
            assert received(server) == ["STATUS=back"]
        finally:
            server.close()
            path.unlink()
            directory.rmdir()
    assert [entry["log_level"] for entry in logs] == ["warning", "info"]


def test_full_socket_buffer_does_not_block(notify_socket: tuple[str, socket.socket]) -> None:
    path, server = notify_socket
    notifier = Notifier(path)
    # Nobody reads: the receive queue fills and sends would block; they must not.
    for n in range(5_000):
        notifier.status(f"status {n} " + "x" * 200)
    assert notifier._failed is True
    assert received(server)[0].startswith("STATUS=status 0 ")
