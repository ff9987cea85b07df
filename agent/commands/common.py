"""What every command shares: config from flags."""

from __future__ import annotations

import argparse
from typing import Any

from agent.config import Config, load_config

# argparse dest -> (section, key) for flags that override config keys.
FLAG_KEYS: dict[str, tuple[str, str]] = {
    "state_dir": ("state", "dir"),
    "backend": ("backend", "url"),
    "camera": ("camera", "source"),
    "model": ("model", "path"),
    "device": ("model", "device"),
}


def flag_layer(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    layer: dict[str, dict[str, Any]] = {}
    for dest, (section, key) in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            layer.setdefault(section, {})[key] = value
    return layer


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None), flag_layer(args))
