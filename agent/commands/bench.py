"""basketagent bench: measure this machine against raw baselines, printed as ratios."""

from __future__ import annotations

import argparse
import importlib
import sys

from agent.config import Config
from agent.errors import EXIT_OK, EXIT_OPERATIONAL

HELP = "run the vision, journal, delivery and agent benchmarks on this machine and print ratios"

# name -> module under agent.bench with run(quick: bool) -> list[BenchResult].
BENCHES: dict[str, str] = {
    "vision": "agent.bench.vision",
    "journal": "agent.bench.journal",
    "delivery": "agent.bench.delivery",
    "agent": "agent.bench.agent",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="smaller workloads (seconds, not minutes); numbers are rougher")
    parser.add_argument("--only", choices=tuple(BENCHES), action="append",
                        help="run only this benchmark (repeatable)")


def run(args: argparse.Namespace, config: Config) -> int:
    below = 0
    for name in args.only or BENCHES:
        module = importlib.import_module(BENCHES[name])
        print(f"[{name}]", flush=True)
        for result in module.run(quick=args.quick):
            print("  " + result.line(), flush=True)
            below += result.ok is False
    if below:
        print(f"{below} results below their goal on this machine", file=sys.stderr)
        return EXIT_OPERATIONAL
    return EXIT_OK
