"""The command line: parse, build config, configure logging, run a command, map errors to exit codes.

This is the only place that turns an ``AgentError`` into an exit code and a
one-line message. Commands live in ``agent/commands/<name>.py``; the registry
below is the literal list of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from agent import __version__
from agent.errors import EXIT_BAD_INPUT, EXIT_OK, AgentError

# name -> module under agent.commands. Each module has HELP, add_arguments(parser)
# and run(args, config) -> int.
COMMANDS: dict[str, str] = {
    "run": "agent.commands.run",
    "demo": "agent.commands.demo",
    "doctor": "agent.commands.doctor",
    "bench": "agent.commands.bench",
    "register": "agent.commands.register",
    "flush": "agent.commands.flush",
    "status": "agent.commands.status",
    "requeue": "agent.commands.requeue",
    "devserver": "agent.commands.devserver",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line with exit code 2."""

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[name-defined]  # noqa: F821
        self.exit(EXIT_BAD_INPUT, f"basketagent: error: {message} (see '{self.prog} --help')\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="TOML config file "
                        "(default $BASKETAGENT_CONFIG or /etc/basketagent/agent.toml)")
    parser.add_argument("--state-dir", metavar="DIR", help="state directory "
                        "(default $BASKETAGENT_STATE_DIR or /var/lib/basketagent)")
    parser.add_argument("--backend", metavar="URL", help="backend base URL (overrides backend.url)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="basketagent", description="Product detection agent for a camera "
                     "watching a shopping basket.")
    parser.add_argument("--version", action="version", version=f"basketagent {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        _add_common(sub)
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from agent.commands.common import config_from_args
    from agent.logs import configure_logging

    chosen = configure_logging("info", "auto", journal_stream=os.environ.get("JOURNAL_STREAM"))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, bad arguments
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        config = config_from_args(args)
        chosen = configure_logging(config.log.level, config.log.format,
                                   journal_stream=os.environ.get("JOURNAL_STREAM"))
        return int(args._module.run(args, config))
    except AgentError as exc:
        # Under journald the last word gets error priority, so `journalctl -p err` shows it.
        priority = "<3>" if chosen == "journal" else ""
        print(f"{priority}basketagent: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_OK
