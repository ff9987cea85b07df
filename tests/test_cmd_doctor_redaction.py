"""basketagent doctor's backend line names the URL without a user:password in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sender_support import free_port

from agent.cli import main
from agent.devserver import ReferenceBackend


def backend_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.split(":", 1)[0].endswith(" backend"))


def test_doctor_backend_line_hides_the_password(tmp_path: Path, backend: ReferenceBackend,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    down = f"127.0.0.1:{free_port()}"
    up = backend.url.removeprefix("http://")
    for host, verdict in ((up, "ok   backend: "), (down, "FAIL backend: ")):
        main(["doctor", "--camera", "synthetic", "--device", "cpu",
              "--state-dir", str(tmp_path / "s"), "--backend", f"http://ann:s3cret@{host}"])
        captured = capsys.readouterr()
        line = backend_line(captured.out)
        assert line.startswith(verdict + f"http://{host}/health "), line
        assert "s3cret" not in captured.out + captured.err
