"""basketagent doctor: one line per check, each broken one with a fix, exit code by the worst."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.commands.doctor import FAIL, OK, WARN, Check, worst_exit_code
from agent.devserver import ReferenceBackend


def test_worst_exit_code_ranks_bad_input_then_hardware_then_operational() -> None:
    ok = Check("a", OK, "fine")
    warn = Check("b", WARN, "meh")
    assert worst_exit_code([ok, warn]) == 0
    assert worst_exit_code([ok, Check("c", FAIL, "x", 1)]) == 1
    assert worst_exit_code([Check("c", FAIL, "x", 1), Check("d", FAIL, "y", 3)]) == 3
    assert worst_exit_code([Check("d", FAIL, "y", 3), Check("e", FAIL, "z", 2)]) == 2


def test_doctor_all_good_on_synthetic_camera_and_live_backend(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ReferenceBackend(db_path=tmp_path / "b.sqlite3") as backend:
        code = main(["doctor", "--camera", "synthetic", "--device", "cpu",
                     "--state-dir", str(tmp_path / "s"), "--backend", backend.url])
    out = capsys.readouterr().out.splitlines()
    names = [line.split(":", 1)[0].split(None, 1)[1] for line in out[:-1]]
    assert names == ["config", "state dir", "journal", "model", "edge tpu", "camera", "backend",
                     "pairing", "clock"]
    assert code == 0, out
    assert not any(line.startswith(FAIL) for line in out)


def test_doctor_reports_backend_down_and_missing_camera(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--camera", "v4l2:/dev/video99", "--device", "cpu",
                 "--state-dir", str(tmp_path / "s"), "--backend", "http://127.0.0.1:9"])
    out = capsys.readouterr().out.splitlines()
    failed = [line for line in out if line.startswith(FAIL)]
    assert any(line.startswith("FAIL backend:") and "backend.url" in line for line in failed)
    assert any(line.startswith("FAIL camera:") for line in failed)
    assert code == 3  # a missing camera outranks the backend being down
    assert out[-1].startswith("2 broken")


def test_doctor_reports_unwritable_state_dir(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["doctor", "--camera", "synthetic", "--device", "cpu",
                 "--state-dir", str(blocker / "state"), "--backend", "http://127.0.0.1:9"])
    out = capsys.readouterr().out
    assert "FAIL state dir:" in out and "not writable" in out
    assert code == 1


def test_doctor_warns_of_a_damaged_identity_and_leaves_it_in_place(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "s"
    state.mkdir()
    (state / "identity.json").write_text("{not json")
    main(["doctor", "--camera", "synthetic", "--device", "cpu", "--state-dir", str(state),
          "--backend", "http://127.0.0.1:9"])
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith(("warn pairing:", "FAIL pairing:")))
    assert line.startswith("warn pairing:") and "new registration" in line
    assert (state / "identity.json").read_text() == "{not json"


def test_doctor_reports_pairing_state(tmp_path: Path, backend: ReferenceBackend,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "s"
    args = ["--state-dir", str(state), "--backend", backend.url]
    assert main(["register", *args]) == 0
    code = json.loads((state / "identity.json").read_text())["code"]
    main(["doctor", "--camera", "synthetic", "--device", "cpu", *args])
    assert f"type code {code} into the web app" in capsys.readouterr().out
