"""basketagent devserver: run the reference basket backend until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sqlite3
import threading
from pathlib import Path

from agent.config import Config
from agent.devserver import ReferenceBackend
from agent.errors import ConfigError, OperationalError

HELP = "run the reference basket backend (for development, demos and tests)"

EPILOG = """\
The data lives in memory unless --db names an SQLite file. Pair a device by
posting the code that `basketagent register` printed:

  curl -X POST -H 'Content-Type: application/json' -d '{"code": "1234"}' \\
       http://127.0.0.1:3000/api/devices/pair

See what arrived:

  curl 'http://127.0.0.1:3000/api/basket?deviceId=DEVICE_ID'
  curl 'http://127.0.0.1:3000/api/pending-items'

Forget every device (as a backend restarted on an empty database would):

  curl -X POST http://127.0.0.1:3000/api/admin/forget
"""

# How often the serving loop looks at its stop flag (signals also wake it).
STOP_POLL_S = 1.0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535; 0 picks one)")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=3000,
                        help="port to listen on (default 3000; 0 picks a free one)")
    parser.add_argument("--db", metavar="PATH", help="SQLite file to keep data in "
                        "(default: in memory, gone at exit)")


def open_backend(db: str | None, host: str, port: int) -> ReferenceBackend:
    """A started backend; ConfigError for a bad --db, OperationalError when it cannot listen."""
    try:
        backend = ReferenceBackend(Path(db) if db else None, host=host, port=port)
    except sqlite3.Error as exc:
        raise ConfigError(f"--db {db}: cannot use it as an SQLite database: {exc}",
                          fix="name a new file or an existing reference backend database") from exc
    try:
        backend.start()
    except OSError as exc:
        backend.close()
        raise OperationalError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                               fix="choose another --port or --host, or stop what uses it") from exc
    return backend


def serve(backend: ReferenceBackend, stop: threading.Event) -> None:
    """Serve until ``stop`` is set."""
    while not stop.wait(STOP_POLL_S):
        pass


def run(args: argparse.Namespace, config: Config) -> int:
    backend = open_backend(args.db, args.host, args.port)
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        print(f"reference backend listening on {backend.url} (Ctrl-C to stop)", flush=True)
        serve(backend, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        backend.close()
    return 0
