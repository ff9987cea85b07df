"""The pi-gen stage: its layout, and its 00-run.sh run on the host side for real.

pi-gen itself (debootstrap, qemu, the image) is not available here, so the one
pi-gen function the script calls, on_chroot, is replaced by a shell function that
records what would run in the chroot and which source files it would see.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAGE = REPO / "deploy" / "pi-gen" / "stage-basketagent"
SUBSTAGE = STAGE / "00-install"

# Stands in for pi-gen's on_chroot: keep the chroot script and the tree it sees.
FAKE_ON_CHROOT = r"""
on_chroot() {
    cat > "${RECORD}/chroot-script"
    (cd "${ROOTFS_DIR}/tmp/basketagent-src" && find . -type f | sort) > "${RECORD}/files"
}
export -f on_chroot
"""


def test_stage_layout() -> None:
    assert os.access(STAGE / "prerun.sh", os.X_OK)
    assert "copy_previous" in (STAGE / "prerun.sh").read_text()
    assert 'IMG_SUFFIX="-basketagent"' in (STAGE / "EXPORT_IMAGE").read_text()
    assert os.access(SUBSTAGE / "00-run.sh", os.X_OK)
    packages = (SUBSTAGE / "00-packages-nr").read_text().split()
    assert {"python3-picamera2", "python3-venv"} <= set(packages)


def run_stage(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    rootfs = tmp_path / "rootfs"
    (rootfs / "tmp").mkdir(parents=True)
    (rootfs / "boot" / "firmware").mkdir(parents=True)
    record = tmp_path / "record"
    record.mkdir()
    script = FAKE_ON_CHROOT + "\nexec ./00-run.sh\n"
    environ = dict(os.environ, ROOTFS_DIR=str(rootfs), RECORD=str(record), **env)
    result = subprocess.run(["bash", "-c", script], cwd=SUBSTAGE, env=environ,
                            capture_output=True, text=True, timeout=60, check=False)
    return result, rootfs, record


def test_run_installs_this_checkout_in_the_chroot(tmp_path: Path) -> None:
    result, rootfs, record = run_stage(tmp_path)
    assert result.returncode == 0, result.stderr
    chroot_script = (record / "chroot-script").read_text()
    assert "/tmp/basketagent-src/install.sh --system --no-start" in chroot_script
    assert "--no-coral" not in chroot_script
    files = set((record / "files").read_text().split())
    assert {"./install.sh", "./basketagent.service", "./pyproject.toml", "./README.md",
            "./agent/config.py", "./deploy/firstboot.sh"} <= files
    assert not any("__pycache__" in f or f.startswith(("./.git/", "./.venv/")) for f in files)
    # The copy is gone from the image afterwards; the boot partition has the how-to.
    assert not (rootfs / "tmp" / "basketagent-src").exists()
    readme = rootfs / "boot" / "firmware" / "basketagent-README.txt"
    assert "basketagent-backend.txt" in readme.read_text()


def test_run_without_coral(tmp_path: Path) -> None:
    result, _, record = run_stage(tmp_path, BASKETAGENT_NO_CORAL="1")
    assert result.returncode == 0, result.stderr
    assert "install.sh --system --no-start --no-coral" in (record / "chroot-script").read_text()


def test_run_fails_clearly_without_a_source_tree(tmp_path: Path) -> None:
    result, _, record = run_stage(tmp_path, BASKETAGENT_SRC=str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "BASKETAGENT_SRC" in result.stderr
    assert not (record / "chroot-script").exists()


@pytest.mark.parametrize("key", ["RELEASE=bookworm", "STAGE_LIST=", "stage-basketagent"])
def test_config_example_builds_bookworm_with_the_stage(key: str) -> None:
    assert key in (REPO / "deploy" / "pi-gen" / "config.example").read_text()
