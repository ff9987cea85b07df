"""Catch what the native TFLite runtime prints straight to fd 2, and log it properly.

LiteRT writes lines such as "INFO: Created TensorFlow Lite XNNPACK delegate for
CPU." with fprintf, bypassing Python logging. Under systemd that is an
unprefixed line in the journal at the wrong priority. While the interpreter is
built, fd 2 points at a temporary file; afterwards each captured line is logged:
"ERROR:" lines at ERROR, "WARNING:" at WARNING, the rest at DEBUG.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger(__name__)

_LEVELS = (("ERROR:", "error"), ("WARNING:", "warning"))


def _log_line(line: str) -> None:
    for prefix, level in _LEVELS:
        if line.startswith(prefix):
            getattr(log, level)("tflite runtime", message=line[len(prefix):].strip())
            return
    log.debug("tflite runtime", message=line.removeprefix("INFO:").strip())


@contextmanager
def native_stderr_logged() -> Iterator[None]:
    """Redirect fd 2 for the duration of the block; log what native code printed there."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield  # no usable fd 2 (closed, or replaced by an object without one)
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip():
                    _log_line(line.strip())
