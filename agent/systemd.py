"""systemd Type=notify support without libsystemd: READY, STATUS, WATCHDOG, STOPPING.

The protocol is one datagram of ``KEY=value`` lines sent to the unix socket
named by ``NOTIFY_SOCKET`` (a path, or an abstract name starting with '@').
Without that variable every method is a no-op, so the same code runs under
systemd, in a terminal and in tests. A failed send never raises into the
frame loop: it is logged once and the service carries on (systemd's watchdog
will notice if the pings really stop).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    """Tells systemd about the service's state; see ``from_env``."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        pid: int | None = None,
    ) -> None:
        self.address = address or None
        # systemd kills the service after WATCHDOG_USEC without a ping; ping at half that.
        self.watchdog_interval_s = watchdog_interval_s
        self._clock = clock
        self._pid = os.getpid() if pid is None else pid
        self._socket: socket.socket | None = None
        self._last_ping: float | None = None
        self._failed = False

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.monotonic,
        *,
        pid: int | None = None,
    ) -> Notifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (which must name this process)."""
        own_pid = os.getpid() if pid is None else pid
        address = env.get("NOTIFY_SOCKET", "").strip() or None
        interval = None
        usec_text = env.get("WATCHDOG_USEC", "").strip()
        pid_text = env.get("WATCHDOG_PID", "").strip()
        if usec_text:
            try:
                usec = int(usec_text)
                watched_pid = int(pid_text) if pid_text else own_pid
            except ValueError:
                log.warning("ignoring a malformed systemd watchdog setting",
                            watchdog_usec=usec_text, watchdog_pid=pid_text)
            else:
                if usec > 0 and watched_pid == own_pid:
                    interval = usec / 1_000_000
        return cls(address, watchdog_interval_s=interval, clock=clock, pid=own_pid)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_enabled(self) -> bool:
        return self.enabled and self.watchdog_interval_s is not None

    def ready(self) -> None:
        self._send(f"READY=1\nMAINPID={self._pid}")

    def status(self, text: str) -> None:
        # One line: a newline would start a new (bogus) assignment.
        self._send("STATUS=" + " ".join(text.split()))

    def watchdog(self, now: float | None = None) -> None:
        """Ping the watchdog, at most once per half WATCHDOG_USEC."""
        if not self.watchdog_enabled:
            return
        assert self.watchdog_interval_s is not None
        moment = self._clock() if now is None else now
        if self._last_ping is not None and moment - self._last_ping < self.watchdog_interval_s / 2:
            return
        self._last_ping = moment
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _target(self) -> str:
        assert self.address is not None
        if self.address.startswith("@"):
            return "\0" + self.address[1:]
        return self.address

    def _send(self, message: str) -> None:
        if self.address is None:
            return
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never let a slow or wedged systemd stall the frame loop.
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(message.encode("utf-8"), self._target())
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notification failed; carrying on", socket=self.address,
                            message=message.split("=", 1)[0], error=str(exc))
                self._failed = True
            else:
                log.debug("systemd notification failed", error=str(exc))
            return
        if self._failed:
            log.info("systemd notifications work again", socket=self.address)
            self._failed = False
