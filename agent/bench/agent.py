"""Whole-agent benchmarks: peak memory of `basketagent run`, and detection fps while a backlog drains.

Memory: a real `basketagent run` child on the bundled model and synthetic frames,
its RSS sampled from /proc; "flat" compares the last quarter of the run with
the second quarter (the first holds imports and model load).

Backlog: the same bounded run twice against a reference backend in another
process, once with an empty journal and once with a pre-filled one that the
sender drains while frames are processed; the ratio is fps(backlog) / fps(empty).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from agent.basket.event import ProductEvent
from agent.bench.procfs import memory_kb
from agent.bench.result import BenchResult
from agent.errors import OperationalError

RSS_GOAL_MB = 150.0
GROWTH_GOAL = 0.05  # last quarter's RSS within 5% of the second quarter's
FPS_GOAL = 0.95


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevServer:
    """The reference backend in its own process, as a real backend would be."""

    def __init__(self, db: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "devserver", "--port", str(self.port), "--db", str(db)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        exited = self.proc.poll()
        self.close()
        how = (f"exited with status {exited}" if exited is not None
               else "did not listen within 20 s")
        raise OperationalError(
            f"benchmark: the reference backend on port {self.port} (--db {db}) {how}",
            fix=f"run 'basketagent devserver --port {self.port} --db {db}' to see why")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def bench_memory(frames: int, tmp: Path, backend_url: str) -> list[BenchResult]:
    cmd = [sys.executable, "-m", "agent", "run", "--camera", "synthetic:3", "--device", "cpu",
           "--max-frames", str(frames), "--state-dir", str(tmp / "mem-state"),
           "--backend", backend_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    samples: list[int] = []
    peak = 0
    # Far more than any machine needs (a Pi 4 on the CPU runs ~10 fps): a hung run is ended.
    deadline = time.monotonic() + 60 + frames
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=10)
            break
        reading = memory_kb(Path(f"/proc/{proc.pid}/status"))
        if reading is not None:
            samples.append(reading[0])
            peak = max(peak, reading[1])
        time.sleep(0.05)
    if proc.returncode != 0 or len(samples) < 8:
        return [BenchResult("run peak RSS", float("nan"), "MB", goal=f"<= {RSS_GOAL_MB:g} MB",
                            ok=False, note=f"run exited {proc.returncode}, {len(samples)} samples")]
    quarter = len(samples) // 4
    early = statistics.median(samples[quarter:2 * quarter])
    late = statistics.median(samples[-quarter:])
    growth = (late - early) / early
    return [
        BenchResult("run peak RSS", peak / 1024, "MB", goal=f"<= {RSS_GOAL_MB:g} MB",
                    ok=peak / 1024 <= RSS_GOAL_MB, note=f"{frames} frames"),
        BenchResult("run RSS growth, last vs second quarter", growth * 100, "%",
                    goal=f"<= {GROWTH_GOAL * 100:g} %", ok=growth <= GROWTH_GOAL,
                    note=f"{early / 1024:.1f} -> {late / 1024:.1f} MB"),
    ]


def _fill_journal(state_dir: Path, count: int) -> None:
    from agent.clock import utc_iso, uuid7
    from agent.config import JournalConfig
    from agent.delivery.journal import Journal

    journal = Journal.open(state_dir, JournalConfig())
    try:
        for n in range(count):
            journal.append(ProductEvent(uuid7(), "basket", "P001", "Organic Apples", 1, 0.9,
                                        utc_iso(time.time())))
    finally:
        journal.close()


def _bounded_run_fps(state_dir: Path, backend_url: str, frames: int) -> tuple[float, int]:
    from agent.config import build_config
    from agent.service import run_agent

    config = build_config(flags={
        "backend": {"url": backend_url}, "state": {"dir": str(state_dir)},
        "camera": {"source": "synthetic:5"}, "model": {"device": "cpu"},
        "delivery": {"shutdown_grace_s": 0.0},
    })
    summary = run_agent(config, stop=threading.Event(), max_frames=frames, env={})
    return summary.fps, summary.journal_pending


def bench_backlog(frames: int, backlog: int, tmp: Path, backend_url: str,
                  rounds: int = 3) -> list[BenchResult]:
    """Best fps of each kind over alternating rounds, so a busy moment hits both alike."""
    empty_fps = backlog_fps = 0.0
    delivered = []
    for n in range(rounds):
        empty_fps = max(empty_fps, _bounded_run_fps(tmp / f"empty-{n}", backend_url, frames)[0])
        _fill_journal(tmp / f"backlog-{n}", backlog)
        fps, left = _bounded_run_fps(tmp / f"backlog-{n}", backend_url, frames)
        backlog_fps = max(backlog_fps, fps)
        delivered.append(backlog - left)
    return [BenchResult(
        f"detection fps while {backlog:,} events drain", backlog_fps, "fps", baseline=empty_fps,
        baseline_label="empty journal", goal=f">= {FPS_GOAL:.2f}",
        ok=backlog_fps / empty_fps >= FPS_GOAL if empty_fps else None,
        note=f"best of {rounds} alternating rounds; {min(delivered):,} to {max(delivered):,} "
             f"of {backlog:,} delivered during {frames} frames")]


def run(quick: bool = False) -> list[BenchResult]:
    frames = 1000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="basketagent-bench-") as name:
        tmp = Path(name)
        server = DevServer(tmp / "backend.sqlite3")
        try:
            results = bench_memory(frames, tmp, server.url)
            results += bench_backlog(300 if quick else 2000, 2000 if quick else 10_000, tmp,
                                     server.url, rounds=1 if quick else 3)
        finally:
            server.close()
    return results
