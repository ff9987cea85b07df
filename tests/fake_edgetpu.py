"""Builds the stand-in libedgetpu (tests/data/fake_edgetpu.c) with the system C compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent / "data" / "fake_edgetpu.c"


def build_fake_edgetpu(out_dir: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in Edge TPU library")
    target = out_dir / "libfake_edgetpu.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(target), str(SOURCE)],
                   check=True, timeout=60, capture_output=True)
    return target
