"""Small-file writes that survive a power cut, damaged files set aside, and state-dir ownership."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import OperationalError
from agent.fsutil import atomic_write_bytes, move_aside, refuse_foreign_state

NOBODY = 65534


def test_atomic_write_replaces_the_file_with_its_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "identity.json"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["identity.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "view.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["view.json"]


def test_move_aside_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    target = tmp_path / "identity.json"
    for content in (b"first", b"second"):
        target.write_bytes(content)
        move_aside(target, "damaged")
    assert (tmp_path / "identity.json.damaged.0").read_bytes() == b"first"
    assert (tmp_path / "identity.json.damaged.1").read_bytes() == b"second"


def foreign_dir(tmp_path: Path) -> Path:
    """A state dir that belongs to another user than root."""
    state = tmp_path / "state"
    state.mkdir()
    if os.geteuid() == 0:
        os.chown(state, NOBODY, NOBODY)
    return state


def test_root_is_refused_in_another_users_state_dir(tmp_path: Path) -> None:
    state = foreign_dir(tmp_path)
    with pytest.raises(OperationalError) as info:
        refuse_foreign_state(state, "flush", euid=0)
    assert "files there that the service cannot read" in str(info.value)
    assert info.value.fix is not None and info.value.fix.startswith("sudo -u ")


def test_the_owner_itself_and_a_missing_dir_pass(tmp_path: Path) -> None:
    state = tmp_path / "state"
    refuse_foreign_state(state, "run", euid=0)  # not there yet: whoever runs creates it
    state.mkdir()
    refuse_foreign_state(state, "run", euid=state.stat().st_uid)
    refuse_foreign_state(state, "run", euid=12345)  # not root: the OS decides what it may do


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a dir to another user")
def test_sudo_flush_into_the_services_state_dir_is_one_line_exit_1(tmp_path: Path) -> None:
    state = foreign_dir(tmp_path)
    result = subprocess.run([sys.executable, "-m", "agent", "flush", "--state-dir", str(state),
                             "--backend", "http://127.0.0.1:9"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"basketagent: error: state dir {state} belongs to user nobody; 'flush' run as root "
        "would leave files there that the service cannot read (sudo -u nobody basketagent flush)")
    assert list(state.iterdir()) == []  # nothing written
