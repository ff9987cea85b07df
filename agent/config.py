"""Frozen configuration, built and validated in one place.

Sources, later ones winning: the TOML file, ``BASKETAGENT_<SECTION>_<KEY>``
environment variables, then command-line flags. This module is the only
reader of the environment; config objects do no I/O.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/basketagent/agent.toml")
DEFAULT_STATE_DIR = Path("/var/lib/basketagent")
ENV_PREFIX = "BASKETAGENT_"


@dataclass(frozen=True)
class BackendConfig:
    url: str = "http://localhost:3000"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    health_path: str = "/health"
    register_path: str = "/api/devices/register"
    basket_path: str = "/api/basket"
    pending_path: str = "/api/pending-items"


@dataclass(frozen=True)
class DeliveryConfig:
    # Backoff after a transient failure: initial * 2**n, capped, with full jitter.
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    # Registration retries in the background with the same shape, its own cap.
    register_backoff_max_s: float = 300.0
    # How often a pending item refused with 400 (device not paired) is tried again.
    not_paired_retry_s: float = 15.0
    breaker_fail_max: int = 5
    breaker_reset_s: float = 30.0
    # How long `run --max-frames` waits for the sender before exiting.
    shutdown_grace_s: float = 3.0
    # Beside the frame loop, the share of time the sender may spend sending a backlog
    # (the rest it waits, so detection keeps its frame rate). `flush` is not limited.
    send_share_while_detecting: float = 0.25


@dataclass(frozen=True)
class JournalConfig:
    # Bounds on events not yet delivered. When hit, `full_policy` decides:
    # "drop_oldest" moves the oldest event to the dead letters (reason "overflow"),
    # "reject_new" refuses the new event. Either way it is logged and counted.
    max_events: int = 100_000
    max_age_s: float = 30 * 24 * 3600.0
    full_policy: str = "drop_oldest"
    max_dead_letters: int = 10_000


@dataclass(frozen=True)
class ModelConfig:
    # auto: Edge TPU when its delegate loads, else the CPU model (said at WARNING).
    device: str = "auto"
    # Edge TPU selector: "" (first found), "usb", "usb:N", "pci", "pci:N".
    edgetpu_device: str = ""
    # Empty paths mean the bundled demo model, labels and catalog.
    path: str = ""
    edgetpu_path: str = ""
    labels: str = ""
    catalog: str = ""
    # Interpreter threads for the CPU model; 0 means one per core.
    threads: int = 0


@dataclass(frozen=True)
class CameraConfig:
    # picamera2[:N], v4l2:/dev/videoN, video:PATH, dir:PATH, synthetic[:SEED]
    source: str = "picamera2"
    # 0: a live camera runs at its own default rate, files and synthetic run unpaced.
    fps: float = 0.0
    width: int = 640
    height: int = 480
    # A camera that fails mid-run is reopened with backoff up to this cap.
    reopen_backoff_max_s: float = 30.0
    # A blocking frame read gives up after this long (the watchdog then stops pinging).
    read_timeout_s: float = 5.0


@dataclass(frozen=True)
class DetectionConfig:
    # Detections below this score are ignored altogether.
    min_score: float = 0.40


@dataclass(frozen=True)
class BasketConfig:
    # A higher count must hold this many frames before it is confirmed (an "added" event).
    confirm_frames: int = 5
    # A lower count must hold this many frames before it is confirmed (no event).
    release_frames: int = 30


@dataclass(frozen=True)
class RoutingConfig:
    # Confidence at or above goes to the basket; below, to pending approval.
    basket_threshold: float = 0.70


@dataclass(frozen=True)
class StateConfig:
    dir: str = str(DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    # auto: journald lines under systemd, console lines on a terminal, else plain lines.
    format: str = "auto"


@dataclass(frozen=True)
class Config:
    backend: BackendConfig = field(default_factory=BackendConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    basket: BasketConfig = field(default_factory=BasketConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    state: StateConfig = field(default_factory=StateConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def state_dir(self) -> Path:
        return Path(self.state.dir)


# What each key may hold beyond its type: (low, high) inclusive ranges and choices.
_RANGES: dict[str, tuple[float, float]] = {
    "backend.connect_timeout_s": (0.1, 300.0),
    "backend.read_timeout_s": (0.1, 300.0),
    "delivery.backoff_initial_s": (0.01, 3600.0),
    "delivery.backoff_max_s": (0.01, 86400.0),
    "delivery.register_backoff_max_s": (0.01, 86400.0),
    "delivery.not_paired_retry_s": (0.01, 3600.0),
    "delivery.breaker_fail_max": (1, 1000),
    "delivery.breaker_reset_s": (0.01, 3600.0),
    "delivery.shutdown_grace_s": (0.0, 300.0),
    "delivery.send_share_while_detecting": (0.01, 1.0),
    "journal.max_events": (1, 10_000_000),
    "journal.max_age_s": (1.0, 10 * 365 * 86400.0),
    "journal.max_dead_letters": (1, 10_000_000),
    "model.threads": (0, 64),
    "camera.fps": (0.0, 240.0),
    "camera.width": (16, 8192),
    "camera.height": (16, 8192),
    "camera.reopen_backoff_max_s": (0.01, 3600.0),
    "camera.read_timeout_s": (0.1, 600.0),
    "detection.min_score": (0.0, 1.0),
    "basket.confirm_frames": (1, 10_000),
    "basket.release_frames": (1, 100_000),
    "routing.basket_threshold": (0.0, 1.0),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "journal.full_policy": ("drop_oldest", "reject_new"),
    "model.device": ("auto", "cpu", "edgetpu"),
    "log.level": ("debug", "info", "warning", "error"),
    "log.format": ("auto", "console", "journal", "plain", "json"),
}

_SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name] for f in fields(Config)}


_TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _key_types(section_cls: type) -> dict[str, type]:
    return dict(typing.get_type_hints(section_cls))


def _coerce(key: str, value: Any, want: type, origin: str) -> Any:
    """Check one value's type, converting env strings; raise ConfigError naming the key."""
    if isinstance(value, str) and origin == "env":
        text = value.strip()
        try:
            if want is bool:
                lowered = text.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if want is int:
                return int(text)
            if want is float:
                return float(text)
        except ValueError:
            raise ConfigError(
                f"{origin_label(key, origin)}: {value!r} is not "
                f"{_TYPE_NAMES.get(want, want.__name__)}",
                fix=f"set it to {_TYPE_NAMES.get(want, want.__name__)}",
            ) from None
        return value
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is bool and isinstance(value, bool):
        return value
    if isinstance(value, want) and not (want is int and isinstance(value, bool)):
        return value
    raise ConfigError(
        f"{origin_label(key, origin)}: expected {want.__name__}, got {type(value).__name__} {value!r}",
        fix=f"set it to {_TYPE_NAMES.get(want, want.__name__)}",
    )


def origin_label(key: str, origin: str) -> str:
    if origin == "env":
        section, name = key.split(".", 1)
        return f"{ENV_PREFIX}{section.upper()}_{name.upper()}"
    if origin == "flag":
        return f"flag for {key}"
    return f"config key {key}"


def _validate_value(key: str, value: Any, origin: str) -> None:
    if key in _RANGES and not isinstance(value, str):
        low, high = _RANGES[key]
        if not (low <= value <= high):
            raise ConfigError(
                f"{origin_label(key, origin)} = {value!r} is out of range",
                fix=f"use a value from {low:g} to {high:g}",
            )
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(
            f"{origin_label(key, origin)} = {value!r} is not allowed",
            fix="use one of " + ", ".join(_CHOICES[key]),
        )


def _url_problem(url: str) -> str:
    """What is wrong with backend.url, or "" when it is http(s)://host[:port][/path]."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number or out of range
    except ValueError as exc:
        return str(exc).lower()
    if parts.scheme not in ("http", "https"):
        return "not an http(s) URL"
    if not parts.hostname or any(c.isspace() for c in url):
        return "no usable host name"
    if port == 0:
        return "port 0"
    if parts.query or parts.fragment:
        return "a query or fragment"
    return ""


def _check_url(url: str) -> None:
    problem = _url_problem(url)
    if problem:
        shown = re.sub(r"//[^/@]*@", "//***@", url)  # never echo credentials
        raise ConfigError(f"backend.url = {shown!r} is not a usable base URL ({problem})",
                          fix="use e.g. http://basket.example:3000")


def _validate_whole(config: Config) -> None:
    _check_url(config.backend.url)
    for name in ("health_path", "register_path", "basket_path", "pending_path"):
        path = getattr(config.backend, name)
        if not path.startswith("/"):
            raise ConfigError(f"backend.{name} = {path!r} must start with '/'")
    if config.basket.release_frames < config.basket.confirm_frames:
        raise ConfigError(
            "basket.release_frames must be at least basket.confirm_frames",
            fix="a product leaves the confirmed view more slowly than it enters it",
        )
    if config.delivery.backoff_max_s < config.delivery.backoff_initial_s:
        raise ConfigError("delivery.backoff_max_s must be at least delivery.backoff_initial_s")
    if not config.camera.source.strip():
        raise ConfigError("camera.source is empty", fix="use e.g. picamera2 or synthetic")
    if not config.state.dir.strip():
        raise ConfigError("state.dir is empty", fix="use e.g. /var/lib/basketagent")


def _apply(
    values: dict[str, dict[str, Any]], layer: Mapping[str, Any], origin: str
) -> None:
    """Merge one layer of {section: {key: value}} into values, checking names and types."""
    for section, table in layer.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"unknown config section [{section}]",
                fix="known sections: " + ", ".join(_SECTIONS),
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"config section [{section}] must be a table")
        types = _key_types(_SECTIONS[section])
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if key not in types:
                what = (f"unknown environment variable {origin_label(dotted, origin)}"
                        if origin == "env" else f"unknown config key {dotted}")
                raise ConfigError(what, fix=f"known keys in [{section}]: " + ", ".join(types))
            coerced = _coerce(dotted, value, types[key], origin)
            _validate_value(dotted, coerced, origin)
            values.setdefault(section, {})[key] = coerced


def env_layer(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """BASKETAGENT_<SECTION>_<KEY> variables as a layer; unknown ones are errors."""
    layer: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        rest = name[len(ENV_PREFIX):].lower()
        for section in _SECTIONS:
            if rest.startswith(section + "_"):
                layer.setdefault(section, {})[rest[len(section) + 1:]] = value
                break
        else:
            raise ConfigError(
                f"unknown environment variable {name}",
                fix="use BASKETAGENT_<SECTION>_<KEY>, e.g. BASKETAGENT_BACKEND_URL",
            )
    return layer


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config file {path} is a directory", fix="name a .toml file") from exc
    except PermissionError as exc:
        raise ConfigError(
            f"config file {path} cannot be read: permission denied",
            fix="run as the basketagent user or fix the file's mode",
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text") from exc
    except OSError as exc:  # a name too long, a path through a file, an I/O error
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}",
                          fix="give the path of a readable TOML file") from exc


def config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Which config file to read, and whether the person named it (then it must exist)."""
    if explicit:
        return Path(explicit), True
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"]), True
    return DEFAULT_CONFIG_PATH, False


def build_config(
    file_values: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build a validated Config from layers, without touching the file system."""
    values: dict[str, dict[str, Any]] = {}
    _apply(values, file_values or {}, "file")
    _apply(values, env_layer(env or {}), "env")
    _apply(values, flags or {}, "flag")
    sections = {
        name: dataclasses.replace(cls(), **values.get(name, {})) for name, cls in _SECTIONS.items()
    }
    config = Config(**sections)
    _validate_whole(config)
    return config


def load_config(
    explicit_path: str | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """The one place that reads the config file and the environment."""
    environ = os.environ if env is None else env
    path, named = config_path(explicit_path, environ)
    file_values: dict[str, Any] = {}
    if _exists(path):
        file_values = read_toml(path)
    elif named:
        raise ConfigError(
            f"config file {path} does not exist",
            fix="give the path of an existing TOML file, or leave --config out for the defaults",
        )
    return build_config(file_values, environ, flags)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError as exc:  # e.g. ENAMETOOLONG
        shown = str(path) if len(str(path)) <= 80 else str(path)[:77] + "..."
        raise ConfigError(f"config path {shown} is not usable: {exc.strerror or exc}",
                          fix="give the path of a readable TOML file") from exc


def as_dict(config: Config) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(config)
