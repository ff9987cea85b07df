"""basketagent run: the service's main loop."""

from __future__ import annotations

import argparse
import signal
import threading

import structlog

from agent.commands.common import positive_int
from agent.config import Config
from agent.errors import EXIT_OK

HELP = "run the agent: camera -> detector -> journal -> backend (what the service runs)"

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", metavar="SRC", help="frame source: picamera2[:N], "
                        "v4l2:/dev/videoN, video:PATH, dir:PATH, synthetic[:SEED]")
    parser.add_argument("--model", metavar="PATH", help="the one model to run (a CPU .tflite, "
                        "or an _edgetpu.tflite that needs a Coral)")
    parser.add_argument("--device", choices=("auto", "cpu", "edgetpu"),
                        help="where to run the model (default model.device, auto)")
    parser.add_argument("--max-frames", type=positive_int, metavar="N",
                        help="stop after N frames, give the sender a short grace, exit 0")


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set the stop flag; the loop and sender wind down from there."""

    def handler(signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run(args: argparse.Namespace, config: Config) -> int:
    from agent.service import run_agent

    stop = threading.Event()
    install_stop_signals(stop)
    summary = run_agent(config, stop=stop, max_frames=args.max_frames)
    log.info("agent stopped", frames=summary.frames, events=summary.events,
             journal_pending=summary.journal_pending)
    return EXIT_OK
