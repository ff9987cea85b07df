"""The identity file: atomic 0600 saves, damaged files moved aside, other backends not reused."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.delivery.identity import (
    IDENTITY_FILE,
    Identity,
    IdentityDamaged,
    IdentityStore,
    redact_url,
    same_backend,
)
from agent.errors import OperationalError

URL = "http://basket.example:3000"


def make_identity(**changes: object) -> Identity:
    values: dict[str, object] = {"device_id": "dev-1", "code": "0427", "backend_url": URL,
                                 "registered_at": "2026-12-04T10:00:00.123Z"}
    values.update(changes)
    return Identity(**values)  # type: ignore[arg-type]


def test_save_then_load_round_trips_with_contract_keys(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    store.save(make_identity(paired=True))
    data = json.loads((tmp_path / IDENTITY_FILE).read_text())
    assert data == {"deviceId": "dev-1", "code": "0427", "backendUrl": URL,
                    "registeredAt": "2026-12-04T10:00:00.123Z", "paired": True}
    assert store.load() == make_identity(paired=True)


def test_saved_file_is_private_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    store.save(make_identity())
    store.save(make_identity(code="9999"))
    path = tmp_path / IDENTITY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [IDENTITY_FILE]
    loaded = store.load()
    assert loaded is not None and loaded.code == "9999"


def test_save_creates_a_missing_state_dir(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "a" / "b")
    store.save(make_identity())
    assert store.load() == make_identity()


def test_absent_file_loads_as_none_without_logging(tmp_path: Path) -> None:
    with capture_logs() as logs:
        assert IdentityStore(tmp_path).load() is None
    assert logs == []


@pytest.mark.parametrize("content", [
    b"",
    b"   \n",
    b"{not json",
    b"[1, 2]",
    b'{"deviceId": "d", "code": "12", "backendUrl": "http://x:1", "registeredAt": "t"}',
    b'{"deviceId": "", "code": "1234", "backendUrl": "http://x:1", "registeredAt": "t"}',
    b'{"code": "1234", "backendUrl": "http://x:1", "registeredAt": "t"}',
    (b'{"deviceId": "d", "code": "1234", "backendUrl": "http://x:1", "registeredAt": "t",'
     b' "paired": "yes"}'),
    b"\xff\xfe\x00garbage",
])
def test_damaged_or_empty_file_is_moved_aside_and_logged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / IDENTITY_FILE
    path.write_bytes(content)
    with capture_logs() as logs:
        assert IdentityStore(tmp_path).load() is None
    assert not path.exists()
    moved = tmp_path / f"{IDENTITY_FILE}.damaged.0"
    assert moved.read_bytes() == content
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert len(errors) == 1 and errors[0]["moved_to"] == str(moved)


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]"])
def test_a_read_only_load_reports_a_damaged_file_and_leaves_it(tmp_path: Path,
                                                              content: bytes) -> None:
    path = tmp_path / IDENTITY_FILE
    path.write_bytes(content)
    with capture_logs() as logs, pytest.raises(IdentityDamaged) as info:
        IdentityStore(tmp_path).load(repair=False)
    assert str(info.value).startswith(f"{path} is damaged (")
    assert info.value.fix and "moves it aside when it starts" in info.value.fix
    assert isinstance(info.value, OperationalError)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [IDENTITY_FILE]
    assert logs == []


def test_a_read_only_load_of_a_good_or_absent_file_is_a_plain_load(tmp_path: Path) -> None:
    assert IdentityStore(tmp_path).load(repair=False) is None
    IdentityStore(tmp_path).save(make_identity())
    assert IdentityStore(tmp_path, backend_url=URL).load(repair=False) == make_identity()
    assert IdentityStore(tmp_path, backend_url="http://other:1").load(repair=False) is None
    assert (tmp_path / IDENTITY_FILE).exists()


def test_doctor_reports_a_damaged_identity_without_moving_it(tmp_path: Path) -> None:
    from agent.commands.doctor import check_identity
    from agent.config import build_config

    (tmp_path / IDENTITY_FILE).write_bytes(b"{damaged")
    config = build_config(flags={"state": {"dir": str(tmp_path)}})
    check = check_identity(config)
    assert check.status == "warn" and "is damaged" in check.detail
    assert (tmp_path / IDENTITY_FILE).read_bytes() == b"{damaged"
    assert not list(tmp_path.glob(f"{IDENTITY_FILE}.damaged*"))


def test_a_second_damaged_file_does_not_overwrite_the_first(tmp_path: Path) -> None:
    path = tmp_path / IDENTITY_FILE
    for content in (b"first", b"second"):
        path.write_bytes(content)
        assert IdentityStore(tmp_path).load() is None
    assert (tmp_path / f"{IDENTITY_FILE}.damaged.0").read_bytes() == b"first"
    assert (tmp_path / f"{IDENTITY_FILE}.damaged.1").read_bytes() == b"second"


def test_identity_of_another_backend_is_not_reused(tmp_path: Path) -> None:
    IdentityStore(tmp_path).save(make_identity())
    with capture_logs() as logs:
        assert IdentityStore(tmp_path, backend_url="http://other:3000").load() is None
    assert [entry["event"] for entry in logs] == ["stored identity is for another backend; registering again"]
    assert logs[0]["stored_backend"] == URL
    # The file stays: it is replaced when the new registration is saved.
    assert (tmp_path / IDENTITY_FILE).exists()


def test_trailing_slash_names_the_same_backend(tmp_path: Path) -> None:
    IdentityStore(tmp_path).save(make_identity())
    assert IdentityStore(tmp_path, backend_url=URL + "/").load() == make_identity()
    assert same_backend("http://a:1/", "http://a:1")
    assert not same_backend("http://a:1", "http://a:2")


def test_unreadable_identity_is_an_operational_error(tmp_path: Path) -> None:
    (tmp_path / IDENTITY_FILE).mkdir()
    with pytest.raises(OperationalError, match="cannot read"):
        IdentityStore(tmp_path).load()


def test_unwritable_state_dir_is_an_operational_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(OperationalError, match="cannot write") as info:
        IdentityStore(blocker).save(make_identity())
    assert info.value.fix and "state.dir" in info.value.fix


@contextmanager
def frozen_dir(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse renames: mode 0500, or the immutable flag when running as root."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)],
                                        capture_output=True, check=False).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def test_damaged_file_that_cannot_be_moved_is_an_operational_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / IDENTITY_FILE).write_bytes(b"{damaged")
    with frozen_dir(state), pytest.raises(OperationalError, match="cannot be moved aside") as info:
        IdentityStore(state).load()
    assert info.value.fix and "remove the file" in info.value.fix
    assert (state / IDENTITY_FILE).read_bytes() == b"{damaged"


def test_save_replaces_the_file_by_rename_not_in_place(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path)
    store.save(make_identity())
    before = (tmp_path / IDENTITY_FILE).stat().st_ino
    store.save(make_identity(paired=True))
    assert (tmp_path / IDENTITY_FILE).stat().st_ino != before


def test_a_failed_save_leaves_the_old_identity_whole(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = IdentityStore(state)
    store.save(make_identity())
    with frozen_dir(state), pytest.raises(OperationalError, match="cannot write"):
        store.save(make_identity(code="5555"))
    assert store.load() == make_identity()
    assert sorted(p.name for p in state.iterdir()) == [IDENTITY_FILE]


def test_with_paired_returns_a_changed_copy() -> None:
    identity = make_identity()
    assert identity.with_paired().paired is True
    assert identity.paired is False


def test_another_backend_is_logged_without_its_password(tmp_path: Path) -> None:
    IdentityStore(tmp_path).save(make_identity(backend_url="http://ann:0ld-s3cret@basket.example:3000"))
    with capture_logs() as logs:
        store = IdentityStore(tmp_path, backend_url="http://ann:s3cret@other.example:3000/api")
        assert store.load() is None
    [entry] = logs
    assert entry["log_level"] == "warning"
    assert entry["stored_backend"] == "http://basket.example:3000"
    assert entry["backend"] == "http://other.example:3000/api"
    assert "s3cret" not in repr(logs)


def test_redact_url_drops_user_and_password_only() -> None:
    assert redact_url("http://user:s3cret@host:3000/x?q=1") == "http://host:3000/x?q=1"
    assert redact_url("https://user@host/") == "https://host/"
    assert redact_url("https://host/") == "https://host/"
