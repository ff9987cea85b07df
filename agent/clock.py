"""Event ids and timestamps: UUIDv7, UTC ISO strings, and whether the wall clock is trustworthy.

A Raspberry Pi has no real-time clock: until NTP has synchronised it, the wall
clock is whatever fake-hwclock saved at the last shutdown. Events made before
then are marked ``clock_synced=False`` rather than held back.
"""

from __future__ import annotations

import ctypes
import functools
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_RAND_BITS = 74  # 12 bits rand_a + 62 bits rand_b
_RAND_A_MASK = (1 << 12) - 1
_RAND_B_MASK = (1 << 62) - 1
_TS_MASK = (1 << 48) - 1


class Uuid7Generator:
    """RFC 9562 UUIDv7 ids, strictly increasing within the process.

    Each id is a 48-bit Unix millisecond timestamp followed by 74 random bits.
    When the clock has not moved on (same millisecond) or went backwards, the
    previous id's 122 payload bits are incremented instead (RFC 9562 6.2,
    method 2), so ids sort in creation order even under NTP steps.
    """

    def __init__(
        self,
        clock_ns: Callable[[], int] = time.time_ns,
        randbits: Callable[[int], int] = secrets.randbits,
    ) -> None:
        self._clock_ns = clock_ns
        self._randbits = randbits
        self._last = -1
        self._lock = threading.Lock()

    def __call__(self, now_ns: int | None = None) -> str:
        ns = self._clock_ns() if now_ns is None else now_ns
        millis = (ns // 1_000_000) & _TS_MASK
        payload = (millis << _RAND_BITS) | self._randbits(_RAND_BITS)
        with self._lock:
            if payload <= self._last:
                payload = self._last + 1
            self._last = payload
        return _format(payload)


def _format(payload: int) -> str:
    millis = payload >> _RAND_BITS
    rand_a = (payload >> 62) & _RAND_A_MASK
    rand_b = payload & _RAND_B_MASK
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_default_generator = Uuid7Generator()


def uuid7(now_ns: int | None = None) -> str:
    """A fresh UUIDv7 string, greater than every id this process made before."""
    return _default_generator(now_ns)


def utc_iso(wall_seconds: float) -> str:
    """Unix seconds as UTC ISO-8601 with milliseconds and a Z: ``2026-12-04T10:00:00.123Z``."""
    moment = datetime.fromtimestamp(wall_seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# adjtimex(2): status bit "clock unsynchronised" and the TIME_ERROR return state.
STA_UNSYNC = 0x0040
TIME_ERROR = 5
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; the trailing padding is larger than the
    # kernel's so a newer layout can never write past the buffer.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 32),
    ]


@functools.lru_cache(maxsize=1)
def _adjtimex() -> Callable[..., int] | None:
    """libc's adjtimex, looked up once (the process already has libc loaded)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.POINTER(_Timex)]
    function.restype = ctypes.c_int
    return function


def kernel_clock_synced() -> bool | None:
    """The kernel's own view (adjtimex, read only): True, False, or None when unknown."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    timex = _Timex()  # modes = 0: read only, needs no privilege
    state = adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    return state != TIME_ERROR and not (timex.status & STA_UNSYNC)


class ClockSync:
    """Whether the wall clock has been synchronised since boot; unknown counts as not.

    systemd-timesyncd touches ``/run/systemd/timesync/synchronized`` once it has
    set the clock; chrony and ntpd instead clear the kernel's STA_UNSYNC bit,
    which ``kernel`` reads. Both are injectable for tests.
    """

    def __init__(
        self,
        flag_path: Path = TIMESYNCD_FLAG,
        kernel: Callable[[], bool | None] = kernel_clock_synced,
    ) -> None:
        self.flag_path = Path(flag_path)
        self.kernel = kernel

    def __call__(self) -> bool:
        try:
            if self.flag_path.exists():
                return True
        except OSError:
            pass
        try:
            return self.kernel() is True
        except OSError as exc:
            log.debug("clock sync state unknown", error=str(exc))
            return False


_default_sync = ClockSync()


def clock_synced() -> bool:
    """True once NTP has synchronised the wall clock (see ClockSync)."""
    return _default_sync()

