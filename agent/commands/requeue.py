"""basketagent requeue: put dead letters back in the journal to be sent again.

Same event ids, so a backend that already stored one sees a repeat, not a
second event. Runs only while the service is stopped (it holds the journal).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from agent.commands.flush import open_journal_for_writing
from agent.config import Config
from agent.errors import EXIT_OK, BadInputError
from agent.fsutil import refuse_foreign_state

HELP = "move dead letters (events the backend refused) back to the journal to be sent again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="requeue every dead letter")
    parser.add_argument("event_ids", nargs="*", metavar="EVENT_ID",
                        help="event ids from `basketagent status`")


def run(args: argparse.Namespace, config: Config, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.all == bool(args.event_ids):
        raise BadInputError("name the dead letters to requeue",
                            fix="give --all or one or more EVENT_IDs, not both")
    refuse_foreign_state(config.state_dir, "requeue")
    journal = open_journal_for_writing(config)
    try:
        if args.all:
            moved = journal.requeue(None)
        else:
            known = {letter.event_id for letter in journal.dead_letters()}
            unknown = [event_id for event_id in args.event_ids if event_id not in known]
            if unknown:
                raise BadInputError(
                    "not a dead letter: " + ", ".join(unknown),
                    fix="`basketagent status` lists the dead letters; nothing was requeued")
            moved = journal.requeue(list(dict.fromkeys(args.event_ids)))
    finally:
        journal.close()
    print(f"requeued {moved} dead letter{'s' if moved != 1 else ''}", file=out)
    return EXIT_OK
