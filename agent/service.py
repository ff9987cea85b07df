"""The agent as a service: build every part from config, run the frame loop, tear down.

This is the one place that builds real parts. Start order follows the data
path's needs: the journal first (it holds the lock, so a second agent fails
before touching the camera), then model, catalog, camera, basket view, and
last the sender, which may talk to the network. Teardown runs in reverse
inside one ``ExitStack``; every step of it is bounded.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.basket.catalog import Catalog
from agent.basket.event import ProductEvent
from agent.basket.tracker import BasketTracker
from agent.basket.view_store import ViewStore
from agent.camera.sources import open_source, parse_spec
from agent.clock import clock_synced
from agent.config import Config
from agent.delivery.client import BackendClient
from agent.delivery.identity import IdentityStore
from agent.delivery.journal import Journal
from agent.delivery.live_status import write_live_status
from agent.delivery.sender import Sender
from agent.detect.detector import open_detector
from agent.detect.runtime import delegate_options
from agent.detect.types import DetectorInfo
from agent.errors import OperationalError
from agent.fsutil import refuse_foreign_state
from agent.runner import FrameLoop
from agent.systemd import Notifier

log = structlog.get_logger(__name__)

VIEW_FILE = "view.json"
DETECTOR_STATUS_FILE = "detector-status.json"
# The sender's HTTP calls are bounded by their timeouts; stopping waits at most this long.
SENDER_STOP_S = 5.0


@dataclass(frozen=True)
class RunSummary:
    frames: int
    events: int
    fps: float
    device: str
    fallback_reason: str
    journal_pending: int

    @property
    def delivered_all(self) -> bool:
        return self.journal_pending == 0


def ensure_state_dir(path: Path) -> Path:
    """Create the state directory (0700) or say plainly why it cannot be used."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OperationalError(
            f"state dir {path} is not writable: {exc.strerror or exc}",
            fix="set state.dir / --state-dir to a writable directory, or run as the basketagent user",
        ) from exc
    return path


def _publish_detector(state_dir: Path, info: DetectorInfo, *, running: bool) -> None:
    """Tell `basketagent status` (another process) where the model runs, and why not on the TPU."""
    data = {"running": running, "pid": os.getpid(), "device": info.device,
            "model": info.model_path, "layout": info.layout,
            "fallbackReason": info.fallback_reason}
    try:
        write_live_status(state_dir / DETECTOR_STATUS_FILE, data)
    except OSError as exc:  # status is best effort; the agent runs on
        log.warning("detector status not written", error=str(exc))


def check_specs(config: Config) -> None:
    """Settings whose format the parts define, checked before anything starts (exit 2)."""
    parse_spec(config.camera.source)
    delegate_options(config.model.edgetpu_device)


def run_agent(
    config: Config,
    *,
    stop: threading.Event,
    max_frames: int | None = None,
    env: Mapping[str, str] | None = None,
    delegate_loader: Callable[..., object] | None = None,
    on_event: Callable[[ProductEvent], None] | None = None,
    on_ready: Callable[[object], None] | None = None,
) -> RunSummary:
    """Run until the source ends, ``max_frames`` is reached or ``stop`` is set.

    ``on_ready`` receives the started sender (the demo uses it to show pairing).
    """
    env = os.environ if env is None else env
    notifier = Notifier.from_env(env)
    check_specs(config)
    refuse_foreign_state(config.state_dir, "run")
    state_dir = ensure_state_dir(config.state_dir)
    with ExitStack() as stack:
        stack.callback(notifier.stopping)
        journal = Journal.open(state_dir, config.journal)
        stack.callback(journal.close)
        detector = open_detector(config.model, delegate_loader=delegate_loader)
        stack.callback(detector.close)
        info = detector.info  # the detector has logged what it loaded, and any fallback
        _publish_detector(state_dir, info, running=True)
        stack.callback(_publish_detector, state_dir, info, running=False)
        catalog = (Catalog.load(Path(config.model.catalog)) if config.model.catalog
                   else Catalog.bundled())
        source = open_source(config.camera.source, config.camera, size=info.input_size, stop=stop,
                             heartbeat=notifier.watchdog)
        stack.callback(source.close)
        log.info("camera open", source=source.name)
        tracker = BasketTracker(catalog, config.basket, config.detection, config.routing,
                                ViewStore(state_dir / VIEW_FILE), clock_synced=clock_synced)
        client = BackendClient(config.backend, config.delivery)
        stack.callback(client.close)
        identities = IdentityStore(state_dir, backend_url=config.backend.url)
        sender = Sender(journal, client, identities, config,
                        send_share=config.delivery.send_share_while_detecting)
        sender.start()
        # Registered last, so it runs first: the sender stops before the journal closes.
        stack.callback(sender.stop, SENDER_STOP_S)
        if on_ready is not None:
            on_ready(sender)
        loop = FrameLoop(source, detector, tracker, journal, sender, notifier,
                         fps=config.camera.fps, stop=stop, on_event=on_event)
        stats = loop.run(max_frames)
        log.info("frame loop ended", frames=stats.frames, events=stats.events,
                 fps=round(stats.fps, 1))
        if max_frames is not None and not stop.is_set():
            # A bounded run gives the sender a short grace; the rest stays journaled.
            sender.drain(config.delivery.shutdown_grace_s)
        pending_after = journal.stats().pending
    return RunSummary(
        frames=stats.frames, events=stats.events, fps=stats.fps, device=info.device,
        fallback_reason=info.fallback_reason, journal_pending=pending_after,
    )
