"""basketagent register, in process against the reference backend and once as a real child."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.devserver import ReferenceBackend


def register(state: Path, url: str, *extra: str) -> int:
    return main(["register", "--state-dir", str(state), "--backend", url, *extra])


def stored(state: Path) -> dict[str, object]:
    return json.loads((state / "identity.json").read_text())


def test_register_prints_and_stores_the_new_identity(
        tmp_path: Path, backend: ReferenceBackend, capsys: pytest.CaptureFixture[str]) -> None:
    assert register(tmp_path, backend.url) == 0
    out = capsys.readouterr().out
    [device] = backend.devices()
    assert f"deviceId: {device['deviceId']}" in out
    assert f"pairing code: {device['code']}" in out
    identity = stored(tmp_path)
    assert identity["deviceId"] == device["deviceId"] and identity["code"] == device["code"]
    assert identity["backendUrl"] == backend.url and identity["paired"] is False
    assert stat.S_IMODE((tmp_path / "identity.json").stat().st_mode) == 0o600


def test_a_stored_identity_is_reused_without_calling_the_backend(
        tmp_path: Path, backend: ReferenceBackend, capsys: pytest.CaptureFixture[str]) -> None:
    assert register(tmp_path, backend.url) == 0
    first = stored(tmp_path)
    calls = len(backend.calls)
    capsys.readouterr()
    assert register(tmp_path, backend.url) == 0
    out = capsys.readouterr().out
    assert f"deviceId: {first['deviceId']}" in out and "use --force" in out
    assert len(backend.calls) == calls and len(backend.devices()) == 1


def test_force_registers_again(tmp_path: Path, backend: ReferenceBackend) -> None:
    assert register(tmp_path, backend.url) == 0
    first = stored(tmp_path)
    assert register(tmp_path, backend.url, "--force") == 0
    second = stored(tmp_path)
    assert second["deviceId"] != first["deviceId"]
    assert len(backend.devices()) == 2


def test_a_paired_identity_says_so(tmp_path: Path, backend: ReferenceBackend,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert register(tmp_path, backend.url) == 0
    identity = stored(tmp_path)
    identity["paired"] = True
    (tmp_path / "identity.json").write_text(json.dumps(identity))
    capsys.readouterr()
    assert register(tmp_path, backend.url) == 0
    assert "(already paired)" in capsys.readouterr().out


def test_an_identity_from_another_backend_is_replaced(tmp_path: Path,
                                                      backend: ReferenceBackend) -> None:
    (tmp_path / "identity.json").write_text(json.dumps({
        "deviceId": "old", "code": "1111", "backendUrl": "http://elsewhere:3000",
        "registeredAt": "2026-01-01T00:00:00.000Z"}))
    assert register(tmp_path, backend.url) == 0
    assert stored(tmp_path)["deviceId"] == backend.devices()[0]["deviceId"]


def test_a_damaged_identity_is_moved_aside_and_replaced(tmp_path: Path,
                                                        backend: ReferenceBackend) -> None:
    (tmp_path / "identity.json").write_text("{half")
    assert register(tmp_path, backend.url) == 0
    assert (tmp_path / "identity.json.damaged.0").read_text() == "{half"
    assert stored(tmp_path)["deviceId"] == backend.devices()[0]["deviceId"]


def test_backend_down_is_exit_1_with_one_line(tmp_path: Path, backend: ReferenceBackend,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    url = backend.url
    backend.stop()
    capsys.readouterr()
    assert register(tmp_path, url) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"basketagent: error: backend at {url} not reachable: connection refused; "
                    "check backend.url and that the backend is up")]
    assert not (tmp_path / "identity.json").exists()


def test_a_broken_register_answer_is_exit_1(tmp_path: Path, backend: ReferenceBackend,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    backend.inject("/api/devices/register", 201, body='{"deviceId": "x"}')
    assert register(tmp_path, backend.url) == 1
    assert "lacks a deviceId and a 4-digit code" in capsys.readouterr().err


def test_a_refused_registration_names_the_path(tmp_path: Path, backend: ReferenceBackend,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    backend.inject("/api/devices/register", 404, body="Not Found")
    capsys.readouterr()
    assert register(tmp_path, backend.url) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "refuses POST /api/devices/register: HTTP 404 'Not Found'" in err[0]
    assert "check backend.url and backend.register_path" in err[0]


def test_credentials_in_the_url_are_not_printed(tmp_path: Path, backend: ReferenceBackend,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    url = backend.url.replace("http://", "http://agent:hunter2@")
    backend.stop()
    assert register(tmp_path, url) == 1
    captured = capsys.readouterr()
    assert "hunter2" not in captured.err + captured.out
    assert f"backend at {backend.url} not reachable" in captured.err


def test_unwritable_state_dir_is_exit_1(tmp_path: Path, backend: ReferenceBackend,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory")
    capsys.readouterr()
    assert register(state, backend.url) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"basketagent: error: cannot read {state}")


def test_as_a_real_command_backend_down_is_exit_1_without_traceback(
        tmp_path: Path, backend: ReferenceBackend) -> None:
    url = backend.url
    backend.stop()
    env = {key: value for key, value in os.environ.items() if not key.startswith("BASKETAGENT_")}
    result = subprocess.run([sys.executable, "-m", "agent", "register", "--state-dir",
                             str(tmp_path), "--backend", url], capture_output=True, text=True,
                            timeout=60, env=env, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        (f"basketagent: error: backend at {url} not reachable: connection refused; "
         "check backend.url and that the backend is up")]
    assert result.stdout == ""
