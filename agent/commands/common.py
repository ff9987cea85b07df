"""What every command shares: config from flags."""

from __future__ import annotations

import argparse
import math
from typing import Any

from agent.config import Config, load_config

# argparse dest -> the (section, key)s a flag overrides. `--model PATH` names the one model to
# run, so it is both the CPU and the Edge TPU model; the detector reads which one it is.
FLAG_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "state_dir": (("state", "dir"),),
    "backend": (("backend", "url"),),
    "camera": (("camera", "source"),),
    "model": (("model", "path"), ("model", "edgetpu_path")),
    "device": (("model", "device"),),
}


def flag_layer(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    layer: dict[str, dict[str, Any]] = {}
    for dest, targets in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            for section, key in targets:
                layer.setdefault(section, {})[key] = value
    return layer


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None), flag_layer(args))


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (bad values exit 2 with one line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return abs(value)  # -0.0 reads as 0
