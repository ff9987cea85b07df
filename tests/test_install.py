"""install.sh: --destdir installs, idempotence, --dry-run, --uninstall, arguments and
the checks that refuse unsupported systems.

install.sh runs for real. Nothing here touches the live system: file installs go
under a temporary --destdir, and the system-mode runs either stop at a check or
are --dry-run.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "install.sh"

# path under the root -> mode of what --destdir installs.
FILES = {
    "etc/systemd/system/basketagent.service": 0o644,
    "etc/systemd/system/basketagent-firstboot.service": 0o644,
    "usr/local/libexec/basketagent-firstboot": 0o755,
    "etc/udev/rules.d/99-basketagent-coral.rules": 0o644,
    "etc/sysusers.d/basketagent.conf": 0o644,
    "etc/tmpfiles.d/basketagent.conf": 0o644,
    "etc/basketagent/agent.toml.example": 0o644,
    "etc/basketagent/agent.toml": 0o640,
}
SOURCES = {
    "etc/systemd/system/basketagent.service": "basketagent.service",
    "etc/systemd/system/basketagent-firstboot.service": "deploy/basketagent-firstboot.service",
    "usr/local/libexec/basketagent-firstboot": "deploy/firstboot.sh",
    "etc/udev/rules.d/99-basketagent-coral.rules": "deploy/udev/99-basketagent-coral.rules",
    "etc/sysusers.d/basketagent.conf": "deploy/sysusers.d/basketagent.conf",
    "etc/tmpfiles.d/basketagent.conf": "deploy/tmpfiles.d/basketagent.conf",
    "etc/basketagent/agent.toml.example": "deploy/agent.toml.example",
    "etc/basketagent/agent.toml": "deploy/agent.toml.example",
}


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DESTDIR"}
    environ.update(env or {})
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True,
                          env=environ, timeout=120, check=False)


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under root: type, mode, size, mtime, content hash or link target."""
    tree: dict[str, tuple[object, ...]] = {}
    if not root.exists():
        return tree
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            detail: object = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            detail = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            detail = None
        tree[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                                             info.st_size, info.st_mtime_ns, detail)
    return tree


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


# --- --destdir -------------------------------------------------------------------------

def test_destdir_installs_the_files_with_their_modes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok(install("--destdir", str(root)))
    for relative, mode in FILES.items():
        path = root / relative
        assert stat.S_IMODE(path.stat().st_mode) == mode, relative
        assert path.read_bytes() == (REPO / SOURCES[relative]).read_bytes(), relative
    link = root / "usr/local/bin/basketagent"
    assert os.readlink(link) == "/opt/basketagent/bin/basketagent"
    # Only the files: no venv, no state (systemd creates it), nothing else.
    assert not (root / "opt").exists() and not (root / "var").exists()
    installed = {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}
    assert installed == set(FILES) | {"usr/local/bin/basketagent"}


def test_second_destdir_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok(install("--destdir", str(root)))
    first = snapshot(root)
    second_run = ok(install("--destdir", str(root)))
    assert snapshot(root) == first
    for verb in ("installing /", "creating /", "linking /"):
        assert verb not in second_run.stdout


def test_destdir_from_the_environment(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    ok(install(env={"DESTDIR": str(root)}))
    assert (root / "etc/systemd/system/basketagent.service").is_file()


def test_relative_destdir_is_under_the_working_directory(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(INSTALL), "--destdir=rel"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    ok(result)
    assert (tmp_path / "rel/etc/basketagent/agent.toml").is_file()


def test_unwritable_destdir_fails_with_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    result = install("--destdir", str(blocker / "root"))
    assert result.returncode == 1
    assert "install.sh: error: a command failed" in result.stderr
    assert blocker.read_text() == "not a directory\n"


def test_existing_config_is_never_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = root / "etc/basketagent/agent.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[backend]\nurl = "http://mine.example:1"\n')
    config.chmod(0o600)
    ok(install("--destdir", str(root)))
    assert config.read_text() == '[backend]\nurl = "http://mine.example:1"\n'
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # The example next to it is refreshed, for comparing after an update.
    assert (root / "etc/basketagent/agent.toml.example").read_bytes() == (
        REPO / "deploy/agent.toml.example").read_bytes()


def test_a_world_readable_config_is_kept_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok(install("--destdir", str(root)))
    config = root / "etc/basketagent/agent.toml"
    config.chmod(0o644)
    result = ok(install("--destdir", str(root)))
    assert "readable by every user" in result.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o644


def test_a_changed_or_damaged_file_is_put_back(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok(install("--destdir", str(root)))
    unit = root / "etc/systemd/system/basketagent.service"
    unit.write_text("damaged\n")
    rules = root / "etc/udev/rules.d/99-basketagent-coral.rules"
    rules.chmod(0o666)
    result = ok(install("--destdir", str(root)))
    assert unit.read_bytes() == (REPO / "basketagent.service").read_bytes()
    assert stat.S_IMODE(rules.stat().st_mode) == 0o644
    assert str(unit) in result.stdout


# --- --dry-run ---------------------------------------------------------------------------

def test_dry_run_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = ok(install("--dry-run", "--destdir", str(root)))
    assert not root.exists()
    assert f"would run: install -D -m 644 -- {REPO}/basketagent.service" in result.stdout
    assert "etc/sysusers.d/basketagent.conf" in result.stdout
    assert_each_file_installed_once(result.stdout)


def assert_each_file_installed_once(out: str) -> None:
    installed = re.findall(r"(?m)^install\.sh: installing (\S+)$", out)
    assert len(installed) == len(set(installed)), installed


def test_dry_run_over_an_install_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok(install("--destdir", str(root)))
    (root / "etc/systemd/system/basketagent.service").write_text("old\n")
    (root / "etc/basketagent/agent.toml").unlink()
    before = snapshot(root)
    result = ok(install("-n", "--destdir", str(root)))
    assert snapshot(root) == before
    assert "basketagent.service" in result.stdout and "agent.toml" in result.stdout


def test_dry_run_uninstall_removes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok(install("--destdir", str(root)))
    before = snapshot(root)
    result = ok(install("--dry-run", "--uninstall", "--purge", "--destdir", str(root)))
    assert snapshot(root) == before
    assert "would run: rm -rf" in result.stdout


# --- --uninstall ----------------------------------------------------------------------------

def installed_with_state(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    ok(install("--destdir", str(root)))
    journal = root / "var/lib/basketagent/journal"
    journal.mkdir(parents=True)
    (journal / "000001.log").write_bytes(b"event")
    return root


def test_uninstall_keeps_config_and_state(tmp_path: Path) -> None:
    root = installed_with_state(tmp_path)
    result = ok(install("--uninstall", "--destdir", str(root)))
    remaining = {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}
    assert remaining == {"etc/basketagent/agent.toml", "var/lib/basketagent/journal/000001.log"}
    assert "--purge" in result.stdout


def test_uninstall_purge_removes_config_and_state(tmp_path: Path) -> None:
    root = installed_with_state(tmp_path)
    ok(install("--uninstall", "--purge", "--destdir", str(root)))
    assert [p for p in root.rglob("*") if not p.is_dir()] == []


def test_uninstall_twice_is_fine(tmp_path: Path) -> None:
    root = installed_with_state(tmp_path)
    ok(install("--uninstall", "--destdir", str(root)))
    before = snapshot(root)
    ok(install("--uninstall", "--destdir", str(root)))
    assert snapshot(root) == before


def test_reinstall_after_uninstall_keeps_the_config(tmp_path: Path) -> None:
    root = installed_with_state(tmp_path)
    config = root / "etc/basketagent/agent.toml"
    config.write_text('[backend]\nurl = "http://kept.example:1"\n')
    ok(install("--uninstall", "--destdir", str(root)))
    ok(install("--destdir", str(root)))
    assert config.read_text() == '[backend]\nurl = "http://kept.example:1"\n'


# --- arguments -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["extra"],
    ["--destdir"],
    ["--destdir="],
    ["--purge"],
    ["--venv"],
    ["--dev", "--system"],
    ["--dev", "--uninstall"],
    ["--dev", "--destdir", "x"],
    ["--destdir", "/"],
    ["--destdir", "//"],
    ["--destdir", "--dry-run"],
    ["--", "extra"],
], ids=" ".join)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run(["bash", str(INSTALL), *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("install.sh: error: ") and "--help" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_exits_0() -> None:
    result = ok(install("--help"))
    for option in ("--dry-run", "--destdir", "--no-coral", "--uninstall", "--purge", "--dev"):
        assert option in result.stdout


# --- unsupported systems -----------------------------------------------------------------------

def test_not_root_fails_before_changing_anything() -> None:
    if os.geteuid() != 0:
        result = install("--system", "--no-coral")
    else:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv is not installed: cannot drop root")
        # The checkout may sit where nobody cannot read (/root): run a copy in a
        # directory everyone can enter.
        with tempfile.TemporaryDirectory() as scratch:
            tree = Path(scratch)
            tree.chmod(0o755)
            shutil.copy2(INSTALL, tree / "install.sh")
            shutil.copy2(REPO / "pyproject.toml", tree / "pyproject.toml")
            shutil.copytree(REPO / "deploy", tree / "deploy")
            result = subprocess.run(
                [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                 "bash", str(tree / "install.sh"), "--system", "--no-coral"],
                capture_output=True, text=True, timeout=60, cwd=tree, check=False)
            assert sorted(p.name for p in tree.iterdir()) == ["deploy", "install.sh",
                                                              "pyproject.toml"]
    assert result.returncode == 1, result.stderr
    assert "run as root" in result.stderr


def test_not_debian_fails(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the distribution check comes after the root check")
    os_release = tmp_path / "os-release"
    os_release.write_text('ID=fedora\nID_LIKE="rhel centos"\n')
    result = install("--system", "--dry-run", env={"BASKETAGENT_OS_RELEASE": str(os_release)})
    assert result.returncode == 1
    assert "not Debian-based" in result.stderr


@pytest.mark.parametrize("version", ["3.9", "2.7", "nonsense"])
def test_old_python_fails(tmp_path: Path, version: str) -> None:
    python = tmp_path / "python3"
    python.write_text(f"#!/bin/sh\necho {version}\n")
    python.chmod(0o755)
    result = install("--dev", "--dry-run", env={"BASKETAGENT_PYTHON": str(python)})
    assert result.returncode == 1
    assert "python3 >= 3.11 is needed" in result.stderr


def test_missing_python_fails(tmp_path: Path) -> None:
    result = install("--dev", "--dry-run", env={"BASKETAGENT_PYTHON": str(tmp_path / "none")})
    assert result.returncode == 1
    assert "no python3 at" in result.stderr


# --- system and development modes, dry-run only -------------------------------------------------

def test_system_dry_run_prints_the_plan_and_changes_nothing() -> None:
    if os.geteuid() != 0:
        pytest.skip("a system install, even a dry run, needs root")
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian-based system")
    watched = [Path("/etc/systemd/system/basketagent.service"), Path("/opt/basketagent"),
               Path("/etc/basketagent"), Path("/etc/apt/sources.list.d/coral-edgetpu.list")]
    before = [p.exists() for p in watched]
    result = ok(install("--system", "--dry-run"))
    assert [p.exists() for p in watched] == before
    out = result.stdout
    assert "dry run: nothing is changed" in out
    coral_list = Path("/etc/apt/sources.list.d/coral-edgetpu.list")
    assert "coral-edgetpu-stable main" in out or coral_list.exists()
    assert "--system-site-packages /opt/basketagent" in out or before[1]
    assert "--constraint /opt/basketagent/constraints.txt" in out
    assert "systemctl enable basketagent.service" in out
    assert "journalctl -u basketagent | grep -i pairing" in out
    assert_each_file_installed_once(out)


def test_system_dry_run_without_coral_skips_its_repository() -> None:
    if os.geteuid() != 0 or shutil.which("dpkg-query") is None:
        pytest.skip("needs root on a Debian-based system")
    result = ok(install("--system", "--dry-run", "--no-coral"))
    assert "coral" not in result.stdout.lower().replace("99-basketagent-coral.rules", "")


def test_dev_dry_run_sets_up_the_readme_venv() -> None:
    before = snapshot(REPO / ".venv" / "bin")
    result = ok(install("--dev", "--dry-run"))
    assert snapshot(REPO / ".venv" / "bin") == before
    assert f"pip install -q -e {REPO}\\[test\\]" in result.stdout
    assert ".venv/bin/python -m pytest -q" in result.stdout


def test_not_a_pi_defaults_to_the_dev_venv_with_a_message() -> None:
    if platform.machine() in ("aarch64",) or platform.machine().startswith("arm"):
        pytest.skip("this machine counts as a Pi")
    if Path("/proc/device-tree/model").exists() and b"Raspberry Pi" in Path(
            "/proc/device-tree/model").read_bytes():
        pytest.skip("this machine is a Pi")
    result = ok(install("--dry-run"))
    assert "not a Raspberry Pi" in result.stdout
    assert "--system" in result.stdout
    assert "pip install -q -e" in result.stdout
