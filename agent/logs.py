"""Logging setup (placeholder: replaced by the full journald/console setup)."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str, fmt: str, *, journal_stream: str | None = None,
                      stream=None) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=stream or sys.stderr,
                        format="%(message)s", force=True)
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        cache_logger_on_first_use=False,
    )
