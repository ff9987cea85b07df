"""basketagent flush: deliver what the journal holds now, then exit.

Exit 0 when the journal is empty, 1 with a count and the reason when not.
Runs only while the service is stopped: the service holds the journal lock
and delivers on its own.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from agent.commands.common import positive_float
from agent.config import Config
from agent.errors import EXIT_OK, JournalBusyError, OperationalError
from agent.fsutil import refuse_foreign_state

HELP = "deliver the journaled events now; exit 0 when the journal is empty, 1 when not"

SERVICE_HOLDS_JOURNAL = ("the running service holds the journal and delivers it itself: let it "
                         "deliver, or stop it first (systemctl stop basketagent)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=positive_float, default=30.0, metavar="S",
                        help="give up after S seconds (default 30)")


def open_journal_for_writing(config: Config):  # type: ignore[no-untyped-def]
    """The journal with its lock, or one line saying the service has it."""
    from agent.delivery.journal import Journal

    try:
        return Journal.open(config.state_dir, config.journal)
    except JournalBusyError as exc:
        raise JournalBusyError(SERVICE_HOLDS_JOURNAL) from exc


def run(args: argparse.Namespace, config: Config, out: TextIO | None = None) -> int:
    from agent.delivery.client import BackendClient
    from agent.delivery.identity import IdentityStore
    from agent.delivery.sender import Sender

    out = out or sys.stdout
    refuse_foreign_state(config.state_dir, "flush")
    journal = open_journal_for_writing(config)
    try:
        stats = journal.stats()
        before = stats.pending
        if before == 0:
            print("journal empty: nothing to deliver", file=out)
            return EXIT_OK
        with BackendClient(config.backend, config.delivery) as client:
            sender = Sender(journal, client,
                            IdentityStore(config.state_dir, backend_url=config.backend.url), config)
            emptied = sender.drain(args.timeout)
            after = journal.stats()
            left = after.pending
            if emptied:
                # Counted as they happen: events may also leave by expiry during the flush.
                delivered, refused = sender.delivered, sender.refused
                text = f"delivered {delivered} event{'s' if delivered != 1 else ''}; journal empty"
                if refused > 0:
                    text += f"; {refused} refused by the backend (see basketagent status)"
                expired = after.expired - stats.expired
                if expired > 0:
                    text += f"; {expired} expired (older than journal.max_age_s)"
                print(text, file=out)
                return EXIT_OK
            reason = sender.status().blocked or "timeout"
            if reason == "config fault":
                reason = f"config fault: {sender.status().last_error}"
    finally:
        journal.close()
    raise OperationalError(f"{left} event{'s' if left != 1 else ''} still journaled: {reason}",
                           fix="see `basketagent status`; the service delivers them when it runs")
