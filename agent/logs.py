"""Logging setup: structlog for our records, the same formatting for the stdlib's.

Formats:

- ``journal``: one line per record, ``<N>`` syslog priority prefix (so
  ``journalctl -p warning`` works), no timestamp of our own (journald adds
  one), tracebacks folded onto the line with `` | ``.
- ``console``: structlog's readable renderer, colours only on a terminal.
- ``plain``: ``<UTC time> <level> <logger>: <event> key=value ...``, one line per record.
- ``json``: one JSON object per line.
- ``auto``: journal when the output stream is the one systemd connected to the
  journal (``JOURNAL_STREAM`` = its ``dev:ino``), console on a terminal, else plain.

Every record goes through the stdlib root logger and one handler, so third-party
libraries (urllib3, pybreaker) are formatted the same way; they are shown from
WARNING up. Keys that can carry secrets (token, password, authorization, ...)
are dropped from every record.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from agent.clock import utc_iso
from agent.errors import ConfigError

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
FORMATS = ("auto", "console", "journal", "plain", "json")

# syslog priorities for the journal prefix.
_PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
_SECRET_PARTS = ("token", "password", "passwd", "secret", "authorization", "cookie",
                 "api_key", "apikey", "private_key")
# Keys rendered in the line's fixed part, not as key=value.
_FIXED = ("event", "level", "logger", "timestamp", "exception")


def configure_logging(level: str, fmt: str, *, journal_stream: str | None = None,
                      stream: TextIO | None = None) -> str:
    """Send every log record to ``stream`` (default stderr) at ``level`` in format ``fmt``.

    May be called again (the CLI configures defaults first, then the config's
    choice); each call replaces the previous setup. Returns the format chosen
    (what ``auto`` resolved to), so the CLI can print its last line to match.
    """
    threshold = LEVELS.get(level.lower()) if isinstance(level, str) else None
    if threshold is None:
        raise ConfigError(f"unknown log level {level!r}", fix="use one of " + ", ".join(LEVELS))
    if fmt not in FORMATS:
        raise ConfigError(f"unknown log format {fmt!r}", fix="use one of " + ", ".join(FORMATS))
    out = sys.stderr if stream is None else stream
    chosen = resolve_format(fmt, out, journal_stream)

    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        drop_secrets,
    ]
    handler = logging.StreamHandler(out) if stream is not None else _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *_renderer_chain(chosen, out)],
    ))
    handler.addFilter(_ForeignFilter(max(threshold, logging.WARNING)))
    handler.setLevel(threshold)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if old is not handler:
            old.close()
    root.addHandler(handler)
    root.setLevel(threshold)
    logging.captureWarnings(True)

    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Filtered-out levels are no-op methods: a debug call costs nothing at info.
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        # Not cached: a logger used before the second configure call must follow it.
        cache_logger_on_first_use=False,
    )
    return chosen


def resolve_format(fmt: str, stream: Any, journal_stream: str | None) -> str:
    """What ``auto`` means for this stream."""
    if fmt != "auto":
        return fmt
    if journal_stream and is_journal_stream(stream, journal_stream):
        return "journal"
    if _isatty(stream):
        return "console"
    return "plain"


def is_journal_stream(stream: Any, journal_stream: str) -> bool:
    """True when ``stream`` is the socket systemd named in JOURNAL_STREAM (``dev:ino``)."""
    try:
        dev_text, ino_text = journal_stream.split(":", 1)
        want = (int(dev_text), int(ino_text))
        info = os.fstat(stream.fileno())
    except (ValueError, AttributeError, OSError):
        # io.UnsupportedOperation (no fileno) is an OSError too.
        return False
    return (info.st_dev, info.st_ino) == want


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def drop_secrets(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    for key in [k for k in event_dict if isinstance(k, str)]:
        lowered = key.lower()
        if any(part in lowered for part in _SECRET_PARTS):
            del event_dict[key]
    return event_dict


def add_utc_timestamp(wall_clock: Callable[[], float] = time.time) -> Processor:
    def processor(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        event_dict["timestamp"] = utc_iso(wall_clock())
        return event_dict

    return processor


def _renderer_chain(chosen: str, stream: Any) -> list[Processor]:
    exc = structlog.processors.format_exc_info
    if chosen == "journal":
        return [exc, render_journal]
    if chosen == "plain":
        return [add_utc_timestamp(), exc, render_plain]
    if chosen == "json":
        return [add_utc_timestamp(), exc, structlog.processors.JSONRenderer(default=str)]
    return [structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=_isatty(stream))]


def fold(text: str) -> str:
    """Several lines as one: ``a | b | c``."""
    return " | ".join(line.rstrip() for line in str(text).strip().splitlines() if line.strip())


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if text and not any(c in text for c in ' ="\'\n\r\t\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _body(event_dict: MutableMapping[str, Any]) -> str:
    parts = [fold(str(event_dict.get("event", "")))]
    parts += [f"{key}={_value(value)}" for key, value in event_dict.items()
              if key not in _FIXED]
    if event_dict.get("exception"):
        parts.append("| " + fold(event_dict["exception"]))
    return " ".join(part for part in parts if part)


def render_journal(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    priority = _PRIORITY.get(str(event_dict.get("level", "info")), 6)
    name = event_dict.get("logger")
    prefix = f"<{priority}>{name}: " if name else f"<{priority}>"
    return prefix + _body(event_dict)


def render_plain(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    level = str(event_dict.get("level", "info"))
    name = event_dict.get("logger")
    where = f" {name}:" if name else ""
    return f"{event_dict.get('timestamp', '')} {level:<7}{where} {_body(event_dict)}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, as logging's last-resort handler does.

    A test harness (or a daemoniser) may swap sys.stderr after setup; a handler
    holding the old object would then write to a closed file.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class _ForeignFilter(logging.Filter):
    """Our records are filtered by structlog already; other libraries' only from ``floor``."""

    def __init__(self, floor: int) -> None:
        super().__init__()
        self.floor = floor

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "_logger") and isinstance(record.msg, dict):
            return True
        return record.levelno >= self.floor
