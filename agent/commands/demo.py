"""basketagent demo: the whole data path on this machine, no hardware, no network, no root.

The bundled model watches synthetic frames of a basket being filled; events go
through the real journal and sender to the reference backend, started in this
process on a free loopback port, with state in a temporary directory. Pairing
is done half-way through, as a person would in the web app, so the demo shows
pending items held until then.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO

from agent.basket.event import ProductEvent
from agent.commands.common import non_negative_float, positive_float, positive_int
from agent.config import Config, build_config
from agent.errors import EXIT_OK, OperationalError
from agent.service import RunSummary, run_agent

HELP = "show the agent end to end: bundled model, synthetic frames, in-process reference backend"

POLL_S = 0.2
DEMO_BASKET_THRESHOLD = 0.92


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=positive_int, default=600, metavar="N",
                        help="frames to process (default 600, 20 s at --fps)")
    parser.add_argument("--fps", type=positive_float, default=30.0, help="frame rate (default 30)")
    parser.add_argument("--seed", type=int, default=7, help="synthetic scene seed (default 7)")
    parser.add_argument("--pair-after", type=non_negative_float, default=3.0, metavar="S",
                        help="seconds a pending item is held before the demo pairs the device "
                             "(default 3)")
    parser.add_argument("--verbose", action="store_true", help="show the agent's info log lines")


def demo_config(base: Config, *, backend_url: str, state_dir: Path, seed: int, fps: float,
                verbose: bool) -> Config:
    """Embedded defaults with the demo's backend, state dir and source; quick retries."""
    return build_config(flags={
        "backend": {"url": backend_url},
        "state": {"dir": str(state_dir)},
        "camera": {"source": f"synthetic:{seed}", "fps": fps},
        "model": {"device": "cpu"},
        # The bundled model is sure of most products on its own synthetic scenes; a higher
        # bar than the 0.70 default sends some to pending approval, so both routes show.
        "routing": {"basket_threshold": DEMO_BASKET_THRESHOLD},
        "delivery": {"backoff_initial_s": 0.2, "backoff_max_s": 2.0,
                     "register_backoff_max_s": 2.0, "not_paired_retry_s": 0.5,
                     "shutdown_grace_s": 20.0},
        "log": {"level": "info" if verbose else "warning", "format": base.log.format},
    })


class Narrator:
    """Prints what happens, as it happens: events, registration, pairing, deliveries."""

    def __init__(self, backend: Any, out: TextIO, pair_after: float, stop: threading.Event,
                 names: dict[str, str], pair_by: float) -> None:
        self.backend = backend
        self.out = out
        self.pair_after = pair_after
        self.pair_by = pair_by  # pair at the latest this long after registration
        self.stop = stop
        self.names = names  # productId -> name, for items the backend lists without one
        self._seen: set[str] = set()
        self._pending_held = threading.Event()
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def on_event(self, event: ProductEvent) -> None:
        where = "basket" if event.route == "basket" else "pending approval"
        self.say(f"  detected  +{event.quantity} {event.name} ({event.confidence:.0%}) -> {where}")
        if event.route != "basket" and not self._pending_held.is_set():
            self._pending_held.set()
            self.say("  (below the basket threshold: held until the device is paired)")

    def on_ready(self, sender: Any) -> None:
        for target in (self._pair_when_registered, self._watch_deliveries):
            thread = threading.Thread(target=target, args=(sender,), daemon=True,
                                      name=f"demo-{target.__name__.strip('_')}")
            thread.start()
            self.threads.append(thread)

    def _pair_when_registered(self, sender: Any) -> None:
        while not self.stop.is_set():
            status = sender.status()
            if status.device_id and status.pairing_code:
                break
            self.stop.wait(POLL_S)
        else:
            return
        self.say(f"registered as device {status.device_id}; pairing code {status.pairing_code}")
        self.say("  (pending items wait until a person types the code into the web app; the demo "
                 f"does that {self.pair_after:g} s after the first one)")
        self._pending_held.wait(self.pair_by)
        if self.stop.wait(self.pair_after):
            return
        if self.backend.pair(status.pairing_code):
            self.say(f"paired: code {status.pairing_code} entered in the web app")

    def _watch_deliveries(self, sender: Any) -> None:
        while not self.stop.wait(POLL_S):
            self.show_new_deliveries()

    def show_new_deliveries(self) -> None:
        for kind, items in (("basket", self.backend.basket_items()),
                            ("pending approval", self.backend.pending_items())):
            for item in items:
                if item["eventId"] in self._seen:
                    continue
                self._seen.add(item["eventId"])
                name = item.get("name") or self.names.get(item["productId"], item["productId"])
                self.say(f"  delivered {item['quantity']} x {name} "
                         f"({item['confidence']:.0%}) to {kind}")

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=2.0)
        self.show_new_deliveries()


def check_outcome(summary: RunSummary) -> None:
    """The demo succeeded when products were seen and every event reached the backend."""
    if summary.events == 0:
        raise OperationalError("demo: the model detected no products",
                               fix="check models/ holds the trained demo model (models/README.md)")
    if not summary.delivered_all:
        raise OperationalError(f"demo: {summary.journal_pending} events were not delivered",
                               fix="see the log lines above for the backend's answers")


def run(args: argparse.Namespace, config: Config, out: TextIO = sys.stdout) -> int:
    from agent.basket.catalog import Catalog
    from agent.devserver import ReferenceBackend
    from agent.logs import configure_logging


    configure_logging("info" if args.verbose else "warning", config.log.format,
                      journal_stream=os.environ.get("JOURNAL_STREAM"))
    with tempfile.TemporaryDirectory(prefix="basketagent-demo-") as tmp:
        state_dir = Path(tmp) / "state"
        with ReferenceBackend(db_path=Path(tmp) / "backend.sqlite3") as backend:
            cfg = demo_config(config, backend_url=backend.url, state_dir=state_dir,
                              seed=args.seed, fps=args.fps, verbose=args.verbose)
            print(f"basketagent demo: bundled model on synthetic frames ({args.frames} frames at "
                  f"{args.fps:g} fps)\n  reference backend {backend.url}, state in {state_dir}\n"
                  f"  basket at confidence >= {DEMO_BASKET_THRESHOLD:.0%} (the service's default "
                  f"is 70%), pending approval below", file=out, flush=True)
            names = {product.product_id: product.name for product in Catalog.bundled()}
            narrator = Narrator(backend, out, args.pair_after, threading.Event(), names,
                                pair_by=0.75 * args.frames / args.fps)
            try:
                summary = run_agent(cfg, stop=threading.Event(), max_frames=args.frames,
                                    env={k: v for k, v in os.environ.items()
                                         if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")},
                                    on_event=narrator.on_event, on_ready=narrator.on_ready)
            finally:
                narrator.close()
            basket, pending = backend.basket_items(), backend.pending_items()
    journal = ("empty" if summary.delivered_all
               else f"still holds {summary.journal_pending}")
    print(f"summary: {summary.frames} frames at {summary.fps:.1f} fps on {summary.device}, "
          f"{summary.events} events; backend holds {len(basket)} basket and {len(pending)} "
          f"pending items; journal {journal}", file=out, flush=True)
    check_outcome(summary)
    return EXIT_OK
