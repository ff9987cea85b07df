"""deploy/firstboot.sh: moving first-boot configuration from the boot partition.

The script runs for real against temporary boot and config directories, and
validates with the agent's own config loader (this interpreter).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.config import load_config

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "deploy" / "firstboot.sh"
EXAMPLE = REPO / "deploy" / "agent.toml.example"


class Device:
    def __init__(self, root: Path) -> None:
        self.boot = root / "boot"
        self.conf = root / "etc"
        self.boot.mkdir()
        self.conf.mkdir()
        (self.conf / "agent.toml.example").write_bytes(EXAMPLE.read_bytes())

    @property
    def config(self) -> Path:
        return self.conf / "agent.toml"

    def run(self, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, BASKETAGENT_BOOT_DIR=str(self.boot),
                   BASKETAGENT_CONF_DIR=str(self.conf),
                   BASKETAGENT_CONF_OWNER=f"{os.getuid()}:{os.getgid()}",
                   BASKETAGENT_PYTHON=python, PYTHONPATH=str(REPO))
        return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                              timeout=60, check=False)

    def backend_url(self) -> str:
        return load_config(str(self.config), env={}).backend.url

    def boot_files(self) -> list[str]:
        return sorted(p.name for p in self.boot.iterdir())

    def conf_files(self) -> list[str]:
        return sorted(p.name for p in self.conf.iterdir())


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path)


def test_nothing_on_the_boot_partition_changes_nothing(device: Device) -> None:
    result = device.run()
    assert result.returncode == 0, result.stderr
    assert device.conf_files() == ["agent.toml.example"]


def test_backend_url_file_becomes_the_config_and_leaves_the_boot_partition(device: Device) -> None:
    # Written on Windows: CRLF, a comment, surrounding blanks.
    (device.boot / "basketagent-backend.txt").write_bytes(
        b"\r\n# the shop's backend\r\n  https://basket.example:3000/ \r\n")
    result = device.run()
    assert result.returncode == 0, result.stderr
    assert device.boot_files() == []
    assert device.backend_url() == "https://basket.example:3000/"
    assert device.config.stat().st_mode & 0o777 == 0o640
    # Built from the example: every other key keeps its documentation.
    assert "# connect_timeout_s = 10.0" in device.config.read_text()
    assert device.conf_files() == ["agent.toml", "agent.toml.example"]


def test_backend_url_replaces_the_url_of_an_existing_config(device: Device) -> None:
    device.config.write_text('[camera]\nfps = 5.0\n\n[backend]\nurl = "http://old:1"\n'
                             'read_timeout_s = 4.0\n')
    (device.boot / "basketagent-backend.txt").write_text("http://new.example:8080\n")
    result = device.run()
    assert result.returncode == 0, result.stderr
    values = tomllib.loads(device.config.read_text())
    assert values["backend"] == {"url": "http://new.example:8080", "read_timeout_s": 4.0}
    assert values["camera"] == {"fps": 5.0}


def test_backend_url_is_added_to_a_config_without_a_backend_section(device: Device) -> None:
    device.config.write_text("[camera]\nfps = 5.0\n")
    (device.boot / "basketagent-backend.txt").write_text("http://new.example:8080")
    assert device.run().returncode == 0
    assert tomllib.loads(device.config.read_text()) == {
        "camera": {"fps": 5.0}, "backend": {"url": "http://new.example:8080"}}


def test_full_config_file_is_moved_and_the_url_file_wins(device: Device) -> None:
    (device.boot / "basketagent.toml").write_text('[backend]\nurl = "http://a.example:1"\n'
                                                  '[camera]\nsource = "synthetic"\n')
    (device.boot / "basketagent-backend.txt").write_text("http://b.example:2\n")
    result = device.run()
    assert result.returncode == 0, result.stderr
    assert device.boot_files() == []
    config = load_config(str(device.config), env={})
    assert (config.backend.url, config.camera.source) == ("http://b.example:2", "synthetic")


@pytest.mark.parametrize("text", ["ftp://x.example/", 'http://x.example/"q', "http://a b",
                                  "# only a comment\n", ""])
def test_bad_url_is_rejected_and_the_old_config_kept(device: Device, text: str) -> None:
    device.config.write_text('[backend]\nurl = "http://old.example:1"\n')
    before = device.config.read_bytes()
    (device.boot / "basketagent-backend.txt").write_text(text)
    result = device.run()
    assert result.returncode == 1
    assert "basketagent-firstboot:" in result.stderr
    assert device.config.read_bytes() == before
    assert device.boot_files() == ["basketagent-backend.txt.rejected"]
    assert device.conf_files() == ["agent.toml", "agent.toml.example"]


def test_invalid_config_file_is_rejected_with_the_loaders_reason(device: Device) -> None:
    (device.boot / "basketagent.toml").write_text("[camera]\nfps = 999.0\n")
    result = device.run()
    assert result.returncode == 1
    assert "camera.fps" in result.stderr and "out of range" in result.stderr
    assert not device.config.exists()
    assert device.boot_files() == ["basketagent.toml.rejected"]
    assert device.conf_files() == ["agent.toml.example"]


def test_not_toml_at_all_is_rejected(device: Device) -> None:
    (device.boot / "basketagent.toml").write_text("this is = = not toml\n")
    result = device.run()
    assert result.returncode == 1
    assert "not valid TOML" in result.stderr
    assert not device.config.exists()


def test_without_the_agent_installed_the_file_is_applied_unchecked(device: Device) -> None:
    (device.boot / "basketagent-backend.txt").write_text("http://x.example:1\n")
    result = device.run(python=str(device.boot / "no-such-python"))
    assert result.returncode == 0
    assert "not validated" in result.stderr
    assert device.backend_url() == "http://x.example:1"
