"""`basketagent run` as systemd runs it: real child processes, real parts, a real backend on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.devserver import ReferenceBackend

RUN_TIMEOUT = 120


def agent_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BASKETAGENT_", "NOTIFY_", "WATCHDOG_", "JOURNAL_STREAM"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_agent_cli(*args: str, env: dict[str, str] | None = None,
                  stdout: int | object = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT, check=False,
                          env=env or agent_env())


class NotifyListener:
    """A NOTIFY_SOCKET read as systemd does: promptly, by its own thread.

    Linux queues only a few datagrams on a unix socket (net.unix.max_dgram_qlen),
    so reading after the child exits would drop messages the agent did send.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self._lines += data.decode().splitlines()

    def lines(self) -> list[str]:
        """Every assignment received so far, one per line ("READY=1", "MAINPID=..", ...)."""
        with self._lock:
            return list(self._lines)

    def wait_for(self, line: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.lines():
                return True
            time.sleep(0.05)
        return False

    def close(self) -> list[str]:
        """Stop reading, then take what the kernel still holds for us (once)."""
        if self._stop.is_set():
            return self.lines()
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            self._lines += data.decode().splitlines()
        self.sock.close()
        return self.lines()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    yield listener
    listener.close()


def start_endless_run(state: Path, backend: ReferenceBackend, notify: NotifyListener,
                      fps: int, device: str = "cpu") -> subprocess.Popen[str]:
    """`basketagent run` on an endless synthetic camera, as systemd starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--camera", "synthetic:4", "--device", device,
         "--state-dir", str(state), "--backend", backend.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=agent_env(NOTIFY_SOCKET=notify.path, BASKETAGENT_CAMERA_FPS=str(fps)))


def delivered(backend: ReferenceBackend) -> list[dict]:
    return list(backend.basket_items()) + list(backend.pending_items())


def test_bounded_run_delivers_its_events(tmp_path: Path, backend: ReferenceBackend) -> None:
    state = tmp_path / "state"
    result = run_agent_cli("run", "--camera", "synthetic:1", "--device", "cpu", "--max-frames",
                           "400", "--state-dir", str(state), "--backend", backend.url)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    items = delivered(backend)
    assert items, "a basket being filled for 400 frames must produce events"
    assert {item["deviceId"] for item in items} == {
        json.loads((state / "identity.json").read_text())["deviceId"]}
    # Basket items are confident ones; each eventId stored once.
    ids = [item["eventId"] for item in items]
    assert len(ids) == len(set(ids))
    assert all(item["confidence"] >= 0.70 for item in backend.basket_items())


def test_backend_down_keeps_events_then_flush_delivers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = run_agent_cli("run", "--camera", "synthetic:1", "--device", "cpu", "--max-frames",
                           "400", "--state-dir", str(state), "--backend", dead_url)
    assert result.returncode == 0, result.stderr
    status = run_agent_cli("status", "--json", "--state-dir", str(state), "--backend", dead_url)
    held = json.loads(status.stdout)["journal"]["pending"]
    assert held > 0
    with ReferenceBackend(db_path=tmp_path / "late.sqlite3") as server:
        flushed = run_agent_cli("flush", "--timeout", "30", "--state-dir", str(state),
                                "--backend", server.url)
        assert flushed.returncode == 0, flushed.stderr + flushed.stdout
        # Seed 1 fills the basket with confident products only: all go to the basket, none
        # wait for pairing (pending ones would, and flush would then exit 1).
        assert len(server.basket_items()) == held
        assert server.pending_items() == []


def test_notify_ready_watchdog_stopping_in_order(
        tmp_path: Path, backend: ReferenceBackend,
        notify: NotifyListener) -> None:
    path = notify.path
    env = agent_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    started = time.monotonic()
    result = run_agent_cli("run", "--camera", "synthetic:2", "--device", "cpu", "--max-frames",
                           "200", "--state-dir", str(tmp_path / "s"), "--backend", backend.url,
                           env=env)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    messages = notify.close()
    kinds = [m.split("=", 1)[0] for m in messages]
    assert kinds.index("READY") < kinds.index("WATCHDOG") < kinds.index("STOPPING")
    assert kinds[-1] == "STOPPING"
    # Pinged at most every WATCHDOG_USEC / 2 (0.1 s), not once per frame (200 frames).
    assert 1 <= kinds.count("WATCHDOG") <= took / 0.1 + 1
    assert any(m.startswith("STATUS=") and "fps" in m for m in messages)


def test_not_paired_status_shows_the_pairing_code(
        tmp_path: Path, backend: ReferenceBackend,
        notify: NotifyListener) -> None:
    path = notify.path
    result = run_agent_cli("run", "--camera", "synthetic:2", "--device", "cpu", "--max-frames",
                           "300", "--state-dir", str(tmp_path / "s"), "--backend", backend.url,
                           # Paced (3 s), so registration lands while frames still flow.
                           env=agent_env(NOTIFY_SOCKET=path, BASKETAGENT_CAMERA_FPS="100"))
    assert result.returncode == 0, result.stderr
    code = json.loads((tmp_path / "s" / "identity.json").read_text())["code"]
    assert code in result.stderr  # logged at WARNING until paired
    assert any("STATUS=" in m and code in m for m in notify.close())


def test_sigterm_stops_cleanly_and_keeps_the_view(
        tmp_path: Path, backend: ReferenceBackend,
        notify: NotifyListener) -> None:
    state = tmp_path / "s"
    proc = start_endless_run(state, backend, notify, fps=60)
    try:
        assert notify.wait_for("READY=1", 60)
        time.sleep(1.0)  # a real process: let it run some frames
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        took = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert took < 8.0
    assert "Traceback" not in err
    assert (state / "view.json").exists()
    assert "STOPPING=1" in notify.close()


def test_journald_lines_when_journal_stream_is_stdout(
        tmp_path: Path, backend: ReferenceBackend) -> None:
    out_path = tmp_path / "stdout.log"
    with out_path.open("w") as out:
        st = os.fstat(out.fileno())
        env = agent_env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        proc = subprocess.run(
            [sys.executable, "-m", "agent", "run", "--camera", "synthetic:1", "--device", "cpu",
             "--max-frames", "100", "--state-dir", str(tmp_path / "s"), "--backend",
             backend.url], stdout=out, stderr=out, env=env, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == 0
    lines = [line for line in out_path.read_text().splitlines() if line.strip()]
    assert lines
    assert all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines), lines[:5]


def test_second_agent_on_the_same_state_dir_is_refused(
        tmp_path: Path, backend: ReferenceBackend,
        notify: NotifyListener) -> None:
    state = tmp_path / "s"
    first = start_endless_run(state, backend, notify, fps=30)
    try:
        assert notify.wait_for("READY=1", 60)
        second = run_agent_cli("run", "--camera", "synthetic:4", "--device", "cpu",
                               "--max-frames", "10", "--state-dir", str(state),
                               "--backend", backend.url)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=15)
    assert second.returncode == 1
    lines = [line for line in second.stderr.splitlines() if line.startswith("basketagent: error")]
    assert len(lines) == 1 and "journal" in lines[0]
    assert "Traceback" not in second.stderr


def test_missing_camera_is_exit_3_one_line(tmp_path: Path) -> None:
    result = run_agent_cli("run", "--camera", "v4l2:/dev/video99", "--device", "cpu",
                           "--max-frames", "5", "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("basketagent: error:")


def test_bad_model_file_is_exit_2_and_journal_untouched(tmp_path: Path) -> None:
    from agent.basket.event import ProductEvent
    from agent.config import JournalConfig
    from agent.delivery.journal import Journal

    state = tmp_path / "s"
    journal = Journal.open(state, JournalConfig())
    journal.append(ProductEvent("0193a4c2-0000-7000-8000-000000000001", "basket", "P001",
                                "Organic Apples", 1, 0.9, "2026-12-04T10:00:00.000Z"))
    journal.close()
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a model at all")
    result = run_agent_cli("run", "--camera", "synthetic", "--model", str(bad),
                           "--device", "cpu", "--max-frames", "5", "--state-dir", str(state))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(bad) in result.stderr
    journal = Journal.open(state, JournalConfig(), read_only=True)
    try:
        assert [entry.event.event_id for entry in journal.pending()] == [
            "0193a4c2-0000-7000-8000-000000000001"]
    finally:
        journal.close()


def steady_scene_dir(tmp_path: Path, frames: int = 40) -> tuple[Path, set[str]]:
    """PNG frames of a synthetic basket whose contents do not change across them."""
    from PIL import Image

    from agent.camera.synthetic import SyntheticSource

    source = SyntheticSource(seed=1, size=(320, 240))
    folder = tmp_path / "frames"
    folder.mkdir()
    kept: list[tuple[object, set[str]]] = []
    for _ in range(2000):
        frame = source.read()
        labels = {label for label, _ in source.truth}
        if len(labels) < 2 or (kept and labels != kept[-1][1]):
            kept = []
        if len(labels) >= 2:
            kept.append((frame.image, labels))
        if len(kept) == frames:
            break
    assert len(kept) == frames, "the synthetic script should hold a steady basket for a while"
    for n, (image, _) in enumerate(kept):
        Image.fromarray(image).save(folder / f"{n:04d}.png")
    return folder, kept[-1][1]


def test_restart_does_not_add_again_what_is_still_in_view(
        tmp_path: Path, backend: ReferenceBackend) -> None:
    folder, _ = steady_scene_dir(tmp_path)
    state = tmp_path / "s"
    args = ("run", "--camera", f"dir:{folder}", "--device", "cpu", "--state-dir", str(state),
            "--backend", backend.url)
    first = run_agent_cli(*args)
    assert first.returncode == 0, first.stderr
    after_first = delivered(backend)
    assert after_first, "the steady basket's products are added on the first run"
    second = run_agent_cli(*args)
    assert second.returncode == 0, second.stderr
    assert delivered(backend) == after_first


def test_synthetic_runs_are_deterministic_ids_and_times_aside(tmp_path: Path) -> None:
    from agent.config import build_config
    from agent.service import run_agent

    def events_of(run: str) -> list[tuple[str, str, int, float]]:
        seen: list[tuple[str, str, int, float]] = []
        config = build_config(flags={
            "state": {"dir": str(tmp_path / run)}, "camera": {"source": "synthetic:3"},
            "model": {"device": "cpu"}, "backend": {"url": "http://127.0.0.1:9"},
            "delivery": {"shutdown_grace_s": 0.0}})
        run_agent(config, stop=threading.Event(), max_frames=400, env={},
                  on_event=lambda e: seen.append((e.route, e.product_id, e.quantity,
                                                  e.confidence)))
        return seen

    first = events_of("a")
    assert first, "400 frames of a basket being filled hold events"
    assert events_of("b") == first


def test_status_of_a_running_agent_says_it_fell_back_to_the_cpu(
        tmp_path: Path, backend: ReferenceBackend, notify: NotifyListener) -> None:
    state = tmp_path / "s"
    proc = start_endless_run(state, backend, notify, fps=30, device="auto")
    try:
        assert notify.wait_for("READY=1", 60)
        status = run_agent_cli("status", "--json", "--state-dir", str(state), "--backend",
                               backend.url)
        text = run_agent_cli("status", "--state-dir", str(state), "--backend", backend.url)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    data = json.loads(status.stdout)
    assert data["service"] == "running"
    assert data["accelerator"]["device"] == "cpu"
    assert "libedgetpu" in data["accelerator"]["fallbackReason"]
    assert "NOT on the Edge TPU: libedgetpu" in text.stdout
    after = json.loads(run_agent_cli("status", "--json", "--state-dir", str(state), "--backend",
                                     backend.url).stdout)
    assert after["service"] == "stopped" and after["accelerator"] is None


@pytest.mark.parametrize(("flags", "message"), [
    ({"camera": {"source": "webcam0"}}, "unknown camera source 'webcam0'"),
    ({"model": {"device": "cpu", "edgetpu_device": "usb0"}},
     "model.edgetpu_device = 'usb0' is not a device selector"),
])
def test_malformed_specs_stop_the_agent_before_it_starts(tmp_path: Path, flags: dict,
                                                        message: str) -> None:
    from agent.config import build_config
    from agent.errors import BadInputError
    from agent.service import run_agent

    config = build_config(flags={"state": {"dir": str(tmp_path / "s")}, **flags})
    with pytest.raises(BadInputError, match=message):
        run_agent(config, stop=threading.Event(), max_frames=1, env={})
    assert not (tmp_path / "s").exists()  # nothing was started, not even the state dir
