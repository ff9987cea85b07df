"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True, scope="session")
def _logging_configured_first() -> None:
    """As in the CLI, logging is set up before any part can log.

    Records go to stderr, at debug so that every record reaches ``capture_logs``.
    """
    from agent.logs import configure_logging

    configure_logging("debug", "plain")
