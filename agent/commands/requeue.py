"""basketagent requeue (being written)."""

from __future__ import annotations

import argparse

from agent.config import Config
from agent.errors import OperationalError

HELP = "requeue"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: Config) -> int:
    raise OperationalError("basketagent requeue is not built yet")
