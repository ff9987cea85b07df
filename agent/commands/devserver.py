"""basketagent devserver (being written)."""

from __future__ import annotations

import argparse

from agent.config import Config
from agent.errors import OperationalError

HELP = "devserver"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    raise OperationalError("basketagent devserver is not built yet")
