"""The CLI's own contract: exit codes and one-line errors, in process and as a real child."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__
from agent.cli import COMMANDS, build_parser, main


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, check=False, timeout=60, env=env)


def test_every_registered_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([name, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "--config" in out and "--state-dir" in out and "--backend" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["bogus"], ["status", "--bogus"]])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("basketagent: error:")


def test_bad_config_is_one_line_exit_2_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[camera]\nfps = -3\n")
    result = run_cli("status", "--config", str(config), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["basketagent: error: config key camera.fps = -3.0 is out of range "
                     "(use a value from 0 to 240)"]


def test_bad_environment_is_exit_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "BASKETAGENT_ROUTING_BASKET_THRESHOLD": "high"}
    result = run_cli("status", "--state-dir", str(tmp_path), env=env)
    assert result.returncode == 2
    assert "BASKETAGENT_ROUTING_BASKET_THRESHOLD" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_backend_flag_is_exit_2(tmp_path: Path) -> None:
    result = run_cli("status", "--state-dir", str(tmp_path), "--backend", "localhost:3000")
    assert result.returncode == 2
    assert "is not a usable base URL (not an http(s) URL)" in result.stderr


def test_the_fatal_line_has_error_priority_under_journald(tmp_path: Path) -> None:
    out_path = tmp_path / "stderr.log"
    with out_path.open("w") as out:
        st = os.fstat(out.fileno())
        env = {"PATH": "/usr/bin:/bin", "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        result = subprocess.run([sys.executable, "-m", "agent", "status", "--state-dir",
                                 str(tmp_path), "--backend", "localhost:3000"],
                                stdout=out, stderr=out, env=env, timeout=60, check=False)
    assert result.returncode == 2
    lines = out_path.read_text().splitlines()
    assert lines[-1].startswith("<3>basketagent: error: backend.url = 'localhost:3000'")
