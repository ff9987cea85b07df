"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from sender_support import Rig

    from agent.delivery.client import BackendClient
    from agent.devserver import ReferenceBackend

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


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ReferenceBackend]:
    """The reference backend on loopback, its data in an SQLite file under tmp_path."""
    from agent.devserver import ReferenceBackend

    with ReferenceBackend(db_path=tmp_path / "backend.sqlite3") as server:
        yield server


@pytest.fixture
def client(backend: ReferenceBackend) -> Iterator[BackendClient]:
    """A client of ``backend`` on a fake monotonic clock (see sender_support.make_client)."""
    from sender_support import make_client

    with make_client(backend) as made:
        yield made


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Builds stepped senders on real parts (sender_support.Rig); closes them afterwards."""
    from sender_support import Rig

    rigs: list[Rig] = []

    def make(url: str, state: str = "state", **delivery: object) -> Rig:
        rig = Rig(tmp_path / state, url, **delivery)
        rigs.append(rig)
        return rig

    yield make
    for rig in reversed(rigs):
        rig.close()
