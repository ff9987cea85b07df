"""open_source: a camera spec string -> a FrameSource, through an explicit registry.

Specs: ``picamera2[:N]``, ``v4l2:/dev/videoN``, ``video:PATH``, ``dir:PATH``,
``synthetic[:SEED]``. Live cameras come wrapped so a failure mid-run reopens
them; a camera missing or busy at start is a CameraError (exit 3), a wrong
spec or path a CameraInputError (exit 2). Setting ``stop`` ends a live
camera's reopen backoff, so its ``read()`` returns None instead of waiting on.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.camera.frame import FrameSource
from agent.camera.opencv import Importer, import_cv2, open_v4l2, open_video
from agent.camera.reopen import ReopeningSource, Wait
from agent.config import CameraConfig
from agent.errors import AgentError, CameraInputError

log = structlog.get_logger(__name__)

SPEC_HELP = "use picamera2[:N], v4l2:/dev/videoN, video:PATH, dir:PATH or synthetic[:SEED]"


@dataclass(frozen=True)
class SourceContext:
    config: CameraConfig
    size: tuple[int, int]  # the model input (width, height)
    clock: Callable[[], float]
    backoff_wait: Wait
    stop: threading.Event | None
    importer: Importer
    heartbeat: Callable[[], None] | None = None


def _number(scheme: str, arg: str, what: str) -> int:
    if arg == "":
        return 0
    if not arg.isdigit():
        raise CameraInputError(f"camera source {scheme}:{arg}: {what} must be a number >= 0",
                               fix=SPEC_HELP)
    return int(arg)


def _path(scheme: str, arg: str) -> str:
    if not arg:
        raise CameraInputError(f"camera source {scheme}: needs a path", fix=SPEC_HELP)
    return arg


def _live(ctx: SourceContext, name: str, opener: Callable[[], FrameSource]) -> FrameSource:
    return ReopeningSource(opener, name, backoff_max_s=ctx.config.reopen_backoff_max_s,
                           read_timeout_s=ctx.config.read_timeout_s, clock=ctx.clock,
                           backoff_wait=ctx.backoff_wait, stop=ctx.stop, heartbeat=ctx.heartbeat)


def _picamera2(arg: str, ctx: SourceContext) -> FrameSource:
    from agent.camera.picam import Picamera2Source

    index = _number("picamera2", arg, "the camera number")
    main = (ctx.config.width, ctx.config.height)
    return _live(ctx, f"picamera2:{index}", lambda: Picamera2Source(
        index, ctx.size, main_size=main, importer=ctx.importer, clock=ctx.clock))


def _v4l2(arg: str, ctx: SourceContext) -> FrameSource:
    device = _path("v4l2", arg)
    if not device.startswith("/dev/"):
        raise CameraInputError(f"camera source v4l2:{device} is not a device path",
                               fix="use v4l2:/dev/videoN")
    import_cv2(ctx.importer)  # a missing extra is reported now, not at the first reopen
    return _live(ctx, f"v4l2:{device}", lambda: open_v4l2(
        device, ctx.config.width, ctx.config.height, importer=ctx.importer, clock=ctx.clock))


def _video(arg: str, ctx: SourceContext) -> FrameSource:
    return open_video(Path(_path("video", arg)), importer=ctx.importer, clock=ctx.clock)


def _dir(arg: str, ctx: SourceContext) -> FrameSource:
    from agent.camera.files import DirSource

    return DirSource(Path(_path("dir", arg)), clock=ctx.clock)


def _synthetic(arg: str, ctx: SourceContext) -> FrameSource:
    from agent.camera.synthetic import SyntheticSource

    return SyntheticSource(_number("synthetic", arg, "the seed"), size=ctx.size, clock=ctx.clock)


# The registry: every kind of frame source, by spec scheme.
SOURCES: dict[str, Callable[[str, SourceContext], FrameSource]] = {
    "picamera2": _picamera2,
    "v4l2": _v4l2,
    "video": _video,
    "dir": _dir,
    "synthetic": _synthetic,
}


def parse_spec(spec: str) -> tuple[str, str]:
    scheme, _, arg = spec.strip().partition(":")
    if scheme not in SOURCES:
        raise CameraInputError(f"unknown camera source {spec!r}", fix=SPEC_HELP)
    return scheme, arg


def open_source(spec: str, config: CameraConfig, *, size: tuple[int, int],
                clock: Callable[[], float] = time.monotonic,
                backoff_wait: Wait = threading.Event.wait,
                stop: threading.Event | None = None,
                importer: Importer = importlib.import_module,
                heartbeat: Callable[[], None] | None = None) -> FrameSource:
    """Open the source named by ``spec``; size is the model input (width, height).

    ``backoff_wait(stop, seconds)`` waits between reopen attempts of a live
    camera and returns True when ``stop`` is set. ``heartbeat()`` is called
    while a live camera is being reopened (the service's watchdog ping).
    """
    scheme, arg = parse_spec(spec)
    ctx = SourceContext(config=config, size=size, clock=clock, backoff_wait=backoff_wait,
                        stop=stop, importer=importer, heartbeat=heartbeat)
    return SOURCES[scheme](arg, ctx)


def probe_camera(spec: str, *, importer: Importer = importlib.import_module) -> tuple[bool, str]:
    """Whether the source can be opened now, and one line saying what was found."""
    try:
        scheme, arg = parse_spec(spec)
        if scheme == "picamera2":
            return _probe_picamera2(_number("picamera2", arg, "the camera number"), importer)
        source = open_source(spec, CameraConfig(source=spec), size=(320, 240),
                             importer=importer)
        try:
            frame = source.read() if scheme != "v4l2" else None
        finally:
            source.close()
    except AgentError as exc:
        return False, str(exc)
    if scheme == "v4l2":
        return True, f"webcam {arg} opens"
    if frame is None:
        return False, f"{spec} gives no frames"
    height, width = frame.image.shape[:2]
    return True, f"{spec} gives {width}x{height} frames"


def _probe_picamera2(index: int, importer: Importer) -> tuple[bool, str]:
    from agent.camera.picam import acquire, camera_list, describe_cameras, import_picamera2

    module = import_picamera2(importer)
    cameras = camera_list(module)
    camera = acquire(module, index)  # says "no camera" or "busy" plainly
    try:
        camera.close()
    except Exception as exc:  # noqa: BLE001 - a probe that got this far has its answer
        log.debug("camera close after probe failed", error=str(exc))
    return True, f"camera {index} is free; cameras: {describe_cameras(cameras)}"

