"""The persisted basket view, on real files."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import structlog

from agent.basket.view_store import ViewStore
from agent.errors import OperationalError


def test_missing_file_is_an_empty_view(tmp_path: Path) -> None:
    assert ViewStore(tmp_path / "view.json").load() == {}


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    store = ViewStore(tmp_path / "view.json")
    store.save({"P003": 1, "P001": 2, "P002": 0})
    assert ViewStore(tmp_path / "view.json").load() == {"P001": 2, "P003": 1}
    assert json.loads((tmp_path / "view.json").read_text()) == {
        "version": 1, "view": {"P001": 2, "P003": 1}}


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = ViewStore(tmp_path / "view.json")
    store.save({"P001": 1})
    store.save({"P001": 3})
    assert store.load() == {"P001": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.json"]
    assert (tmp_path / "view.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content", [
    b"{\"version\": 1, \"view\": {\"P001\": 2",     # torn write from an old, non-atomic writer
    b"\x00\x00\x00\x00",                            # zeroed blocks after a power cut
    b"[1, 2]",
    b"{\"version\": 2, \"view\": {}}",
    b"{\"version\": 1}",
    b"{\"version\": 1, \"view\": {\"P001\": -1}}",
    b"{\"version\": 1, \"view\": {\"P001\": \"2\"}}",
    b"{\"version\": 1, \"view\": {\"P001\": true}}",
    b"{\"version\": 1, \"view\": {\"P001\": 1.5}}",
])
def test_damaged_file_is_moved_aside_and_logged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "view.json"
    path.write_bytes(content)
    with structlog.testing.capture_logs() as logs:
        assert ViewStore(path).load() == {}
    assert not path.exists()
    aside = tmp_path / "view.json.damaged.0"
    assert aside.read_bytes() == content
    assert [entry["log_level"] for entry in logs] == ["warning"]
    assert logs[0]["moved_to"] == str(aside)


def test_second_damaged_file_gets_its_own_name(tmp_path: Path) -> None:
    path = tmp_path / "view.json"
    for n in range(2):
        path.write_bytes(b"garbage")
        assert ViewStore(path).load() == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.json.damaged.0",
                                                          "view.json.damaged.1"]


def test_save_after_damage_works(tmp_path: Path) -> None:
    path = tmp_path / "view.json"
    path.write_bytes(b"garbage")
    store = ViewStore(path)
    assert store.load() == {}
    store.save({"P002": 1})
    assert store.load() == {"P002": 1}


def test_unreadable_view_is_an_operational_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(OperationalError, match="cannot be read") as info:
        ViewStore(blocker / "view.json").load()
    assert info.value.exit_code == 1 and info.value.fix


def test_unwritable_view_is_an_operational_error(tmp_path: Path) -> None:
    with pytest.raises(OperationalError, match="cannot be written") as info:
        ViewStore(tmp_path / "missing-dir" / "view.json").save({"P001": 1})
    assert info.value.fix


def test_damaged_file_that_cannot_be_moved_is_an_operational_error(tmp_path: Path) -> None:
    def read_only_fs(path: Path, reason: str) -> Path:
        raise OSError(errno.EROFS, "Read-only file system")

    path = tmp_path / "view.json"
    path.write_bytes(b"garbage")
    with pytest.raises(OperationalError, match="cannot be moved aside: Read-only") as info:
        ViewStore(path, move_aside=read_only_fs).load()
    assert info.value.fix
    assert path.read_bytes() == b"garbage"
