"""The deployment files: systemd units, sandbox score, sysusers/tmpfiles, udev rules,
the config example, and shellcheck on every shell script.

The systemd tools run for real (offline); a test skips only when the tool is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from agent.config import Config, as_dict, load_config

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "basketagent.service"
FIRSTBOOT_UNIT = REPO / "deploy" / "basketagent-firstboot.service"
MAX_EXPOSURE = 2.5
TIMEOUT = 60


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order; keys may repeat."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for s, k, v in unit_entries(path) if s == section and k == key]


def with_stub_exec(unit: Path, tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart= binary exists, so verify can run offline."""
    stub = tmp_path / "stub-exec"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = re.sub(r"(?m)^ExecStart=(\S+)", f"ExecStart={stub}", unit.read_text())
    copy = tmp_path / unit.name
    copy.write_text(text)
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    tool = need("systemd-analyze")
    return subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=unit.parent, check=False)


def assert_verifies(unit: Path) -> None:
    result = verify(unit)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output


def exposure(unit: Path) -> float:
    tool = need("systemd-analyze")
    result = subprocess.run([tool, "security", "--offline=yes", str(unit)], capture_output=True,
                            text=True, timeout=TIMEOUT, cwd=unit.parent, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


# --- basketagent.service -------------------------------------------------------------

def test_unit_verifies(tmp_path: Path) -> None:
    assert_verifies(with_stub_exec(UNIT, tmp_path))


def test_firstboot_unit_verifies(tmp_path: Path) -> None:
    assert_verifies(with_stub_exec(FIRSTBOOT_UNIT, tmp_path))


def test_verify_reports_a_misspelt_key(tmp_path: Path) -> None:
    unit = with_stub_exec(UNIT, tmp_path)
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restrat=on-failure"))
    with pytest.raises(AssertionError, match="Restrat"):
        assert_verifies(unit)


def test_unit_exposure_is_at_most_limit(tmp_path: Path) -> None:
    score = exposure(with_stub_exec(UNIT, tmp_path))
    assert 0.0 < score <= MAX_EXPOSURE


def test_exposure_of_the_unit_without_its_sandbox_is_over_limit(tmp_path: Path) -> None:
    sandbox = re.compile(r"^(Protect|Private|Restrict|SystemCall|Capability|NoNewPriv|Device"
                         r"|Lock|RemoveIPC|UMask|Keyring|User=|Group=)")
    unit = with_stub_exec(UNIT, tmp_path)
    kept = [line for line in unit.read_text().splitlines() if not sandbox.match(line)]
    unit.write_text("\n".join(kept) + "\n")
    assert exposure(unit) > MAX_EXPOSURE


def test_unit_service_settings() -> None:
    def one(key: str) -> str:
        found = values(UNIT, "Service", key)
        assert len(found) == 1, (key, found)
        return found[0]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("WatchdogSec") == "30"
    assert one("Restart") == "on-failure"
    assert int(one("TimeoutStartSec")) >= 90
    assert int(one("TimeoutStopSec")) > 0
    assert one("User") == "basketagent"
    assert set(one("SupplementaryGroups").split()) >= {"video", "plugdev"}
    assert one("StateDirectory") == "basketagent"
    assert one("ConfigurationDirectory") == "basketagent"
    assert one("SyslogIdentifier") == "basketagent"
    assert "PYTHONUNBUFFERED=1" in values(UNIT, "Service", "Environment")
    assert one("ExecStart") == "/opt/basketagent/bin/basketagent run"
    assert int(values(UNIT, "Unit", "StartLimitIntervalSec")[0]) > 0
    assert int(values(UNIT, "Unit", "StartLimitBurst")[0]) > 0


def test_unit_allows_camera_and_coral_by_device_class() -> None:
    assert values(UNIT, "Service", "DevicePolicy") == ["closed"]
    allowed = {entry.split()[0] for entry in values(UNIT, "Service", "DeviceAllow")}
    assert allowed >= {"char-video4linux", "char-media", "char-dma_heap", "char-usb_device",
                       "char-apex"}
    keys = {k for _, k, _ in unit_entries(UNIT)}
    # PrivateDevices= hides the camera and the Coral; MemoryDenyWriteExecute= breaks
    # the libffi closures behind ctypes callbacks.
    assert "PrivateDevices" not in keys
    assert "MemoryDenyWriteExecute" not in keys


def syscall_group(name: str, cache: dict[str, set[str]]) -> set[str]:
    """The system calls of a @group, nested groups expanded, as systemd lists them."""
    if name not in cache:
        tool = need("systemd-analyze")
        result = subprocess.run([tool, "syscall-filter", name], capture_output=True, text=True,
                                timeout=TIMEOUT, check=True)
        members = [line.strip() for line in result.stdout.splitlines()[1:]]
        cache[name] = set()
        for member in members:
            if not member or member.startswith("#"):
                continue
            cache[name] |= syscall_group(member, cache) if member.startswith("@") else {member}
    return cache[name]


def allowed_syscalls(unit: Path) -> set[str]:
    """The calls the unit's SystemCallFilter= lines allow, applied in order as systemd does.

    The first line is an allow list here; a later "~" line takes calls out of it and a
    later plain line puts calls back (for a call named in both, the last line wins).
    """
    cache: dict[str, set[str]] = {}
    lines = values(unit, "Service", "SystemCallFilter")
    assert lines and not lines[0].startswith("~"), lines
    allowed: set[str] = set()
    for line in lines:
        deny = line.startswith("~")
        calls: set[str] = set()
        for name in line.lstrip("~").split():
            name = name.partition(":")[0]
            calls |= syscall_group(name, cache) if name.startswith("@") else {name}
        allowed = allowed - calls if deny else allowed | calls
    return allowed


def test_unit_allows_setpriority_for_the_sender_thread() -> None:
    # The sender thread raises its own nice value (agent/delivery/sender.py); the
    # rest of @resources and all of @privileged stay denied.
    allowed = allowed_syscalls(UNIT)
    assert "setpriority" in allowed
    assert {"getpriority", "read", "write"} <= allowed
    assert not {"sched_setaffinity", "setrlimit", "sched_setscheduler", "reboot", "setuid",
                "mount"} & allowed


def test_unit_without_the_setpriority_line_denies_it(tmp_path: Path) -> None:
    unit = tmp_path / UNIT.name
    unit.write_text(re.sub(r"(?m)^SystemCallFilter=setpriority\n", "", UNIT.read_text()))
    assert unit.read_text() != UNIT.read_text()
    assert "setpriority" not in allowed_syscalls(unit)


def test_firstboot_unit_runs_before_the_agent_only_with_a_boot_file() -> None:
    assert "basketagent.service" in values(FIRSTBOOT_UNIT, "Unit", "Before")
    conditions = values(FIRSTBOOT_UNIT, "Unit", "ConditionPathExists")
    assert conditions == ["|/boot/firmware/basketagent.toml",
                          "|/boot/firmware/basketagent-backend.txt"]
    assert values(FIRSTBOOT_UNIT, "Service", "Type") == ["oneshot"]
    assert values(FIRSTBOOT_UNIT, "Service", "ExecStart") == [
        "/usr/local/libexec/basketagent-firstboot"]


# --- sysusers.d, tmpfiles.d --------------------------------------------------------------

@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    tool = need("systemd-sysusers")
    subprocess.run([tool, "--root", str(root), str(REPO / "deploy/sysusers.d/basketagent.conf")],
                   check=True, capture_output=True, timeout=TIMEOUT)
    return root


def passwd_entry(root: Path, name: str) -> list[str]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"{name} not in {root}/etc/passwd")


def group_members(root: Path, name: str) -> list[str]:
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields[3].split(",") if fields[3] else []
    raise AssertionError(f"group {name} not in {root}/etc/group")


def test_sysusers_creates_a_system_user_without_login(sysroot: Path) -> None:
    user = passwd_entry(sysroot, "basketagent")
    assert int(user[2]) < 1000
    assert user[5] == "/var/lib/basketagent"
    assert user[6].endswith("nologin")
    assert "basketagent" in group_members(sysroot, "video")
    assert "basketagent" in group_members(sysroot, "plugdev")


def test_sysusers_second_run_changes_nothing(sysroot: Path) -> None:
    before = (sysroot / "etc/passwd").read_text(), (sysroot / "etc/group").read_text()
    subprocess.run([need("systemd-sysusers"), "--root", str(sysroot),
                    str(REPO / "deploy/sysusers.d/basketagent.conf")],
                   check=True, capture_output=True, timeout=TIMEOUT)
    assert ((sysroot / "etc/passwd").read_text(), (sysroot / "etc/group").read_text()) == before


def test_tmpfiles_creates_state_and_config_dirs(sysroot: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles can hand a directory to another user only as root")
    tool = need("systemd-tmpfiles")
    subprocess.run([tool, "--root", str(sysroot), "--create",
                    str(REPO / "deploy/tmpfiles.d/basketagent.conf")],
                   check=True, capture_output=True, timeout=TIMEOUT)
    uid = int(passwd_entry(sysroot, "basketagent")[2])
    state = (sysroot / "var/lib/basketagent").stat()
    assert (state.st_mode & 0o7777, state.st_uid) == (0o750, uid)
    config = (sysroot / "etc/basketagent").stat()
    assert (config.st_mode & 0o7777, config.st_uid) == (0o755, 0)


# --- udev ----------------------------------------------------------------------------------

def udev_rules() -> list[dict[str, str]]:
    rules = []
    text = (REPO / "deploy/udev/99-basketagent-coral.rules").read_text()
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pairs = re.findall(r'([A-Z]+(?:\{[^}]+\})?)(==|=|\+=)"([^"]*)"', line)
            assert pairs, line
            rules.append({f"{key}{op}": value for key, op, value in pairs})
    return rules


def test_udev_rules_cover_both_usb_ids_and_pcie_with_group_access() -> None:
    rules = udev_rules()
    usb_ids = {(r.get("ATTR{idVendor}=="), r.get("ATTR{idProduct}==")) for r in rules
               if r.get("SUBSYSTEM==") == "usb"}
    assert usb_ids == {("1a6e", "089a"), ("18d1", "9302")}
    assert any(r.get("SUBSYSTEM==") == "apex" for r in rules)
    for rule in rules:
        assert rule["MODE="] == "0660" and rule["GROUP="] == "plugdev", rule


# --- the config example ----------------------------------------------------------------------

EXAMPLE = REPO / "deploy" / "agent.toml.example"


def test_config_example_loads_to_the_defaults() -> None:
    assert load_config(str(EXAMPLE), env={}) == Config()


def test_config_example_documents_every_key_at_its_default(tmp_path: Path) -> None:
    uncommented = re.sub(r"(?m)^# (\w+ = .*)$", r"\1", EXAMPLE.read_text())
    assert tomllib.loads(uncommented) == as_dict(Config())
    every_key = tmp_path / "agent.toml"
    every_key.write_text(uncommented)
    assert load_config(str(every_key), env={}) == Config()


def test_every_config_key_has_a_comment_above_it_or_its_group() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^# \w+ = ", line):
            above = lines[index - 1]
            assert above.startswith("#"), f"no comment above {line!r}"


# --- shellcheck ------------------------------------------------------------------------------

def shell_scripts() -> list[Path]:
    scripts = [REPO / "install.sh", REPO / ".ci" / "run"]
    scripts += sorted((REPO / "deploy").rglob("*.sh"))
    return scripts


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script: Path) -> None:
    tool = need("shellcheck")
    result = subprocess.run([tool, "--severity=style", str(script)], capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_are_executable() -> None:
    for script in shell_scripts():
        assert os.access(script, os.X_OK), script
