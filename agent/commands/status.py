"""basketagent status: identity, journal, dead letters and the backend as this agent sees them.

Works while the service runs: the journal is opened read-only (no lock) and
the running sender's breaker and last error come from its status file. For a
stopped agent the backend's /health is probed once with a short timeout; its
breaker is "closed" (a starting agent starts with it closed), and whether the
backend answered is in ``backendUp`` and the last error. Nothing is changed on disk: a damaged
identity file is reported, not moved aside (the agent does that when it starts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, TextIO

from agent.config import Config
from agent.errors import EXIT_OK
from agent.service import DETECTOR_STATUS_FILE

HELP = "show deviceId, pairing code, journal depth, dead letters and the backend's state"

PROBE_TIMEOUT_S = 2.0
BODY_SHOWN = 80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout")


def _probe(config: Config) -> bool:
    from agent.delivery.client import BackendClient

    backend = dataclasses.replace(config.backend, connect_timeout_s=PROBE_TIMEOUT_S,
                                  read_timeout_s=PROBE_TIMEOUT_S)
    with BackendClient(backend, config.delivery) as client:
        return client.health()


def collect(config: Config, *, probe=_probe) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Everything `status` shows, as one JSON-ready dict."""
    from agent.delivery.identity import IdentityDamaged, IdentityStore, redact_url
    from agent.delivery.journal import Journal
    from agent.delivery.live_status import live_status_path, read_live_status

    identity_problem = ""
    try:
        identity = IdentityStore(config.state_dir, backend_url=config.backend.url).load(
            repair=False)
    except IdentityDamaged as exc:
        identity, identity_problem = None, str(exc)
    journal = Journal.open(config.state_dir, config.journal, read_only=True)
    try:
        stats = journal.stats()
        letters = journal.dead_letters()
    finally:
        journal.close()
    detector = read_live_status(config.state_dir / DETECTOR_STATUS_FILE)
    live = read_live_status(live_status_path(config.state_dir))
    # A user:password in backend.url is never shown.
    url = redact_url(config.backend.url)
    if live is not None:
        service = "running"
        breaker = str(live.get("breaker", "unknown"))
        backend_up: bool | None = None
        last_error = str(live.get("lastError") or "")
        blocked = str(live.get("blocked") or "")
    else:
        service = "stopped"
        backend_up = probe(config)
        breaker = "closed"  # no breaker runs; a starting agent starts closed
        last_error = "" if backend_up else f"backend at {url} not answering"
        blocked = ""
    return {
        "deviceId": identity.device_id if identity else None,
        "pairingCode": identity.code if identity else None,
        "paired": bool(identity.paired) if identity else False,
        "identityProblem": identity_problem,
        "accelerator": None if detector is None else {
            "device": detector.get("device"), "model": detector.get("model"),
            "fallbackReason": detector.get("fallbackReason") or ""},
        "backendUrl": url,
        "service": service,
        "breaker": breaker,
        "backendUp": backend_up,
        "blocked": blocked,
        "lastError": last_error,
        "journal": {
            "pending": stats.pending,
            "pendingByRoute": dict(stats.pending_by_route),
            "oldestAgeS": None if stats.oldest_age_s is None else round(stats.oldest_age_s, 1),
            "deadLetters": stats.dead_letters,
            "lostRecords": stats.lost_records,
            "overflowed": stats.overflowed,
            "expired": stats.expired,
        },
        "deadLetters": [
            {"eventId": letter.event_id, "status": letter.status, "reason": letter.reason,
             "bodyStart": letter.body[:BODY_SHOWN]}
            for letter in letters
        ],
    }


def _accelerator_lines(accelerator: dict[str, Any] | None) -> list[str]:
    """Where the running agent's model runs; a fallback from the Edge TPU is never silent."""
    if accelerator is None:
        return []
    line = f"model:        {accelerator['model']} on {accelerator['device']}"
    if accelerator["fallbackReason"]:
        line += f" (NOT on the Edge TPU: {accelerator['fallbackReason']})"
    return [line]


def render(data: dict[str, Any]) -> str:
    journal = data["journal"]
    if data["identityProblem"]:
        device = data["identityProblem"]
    elif data["deviceId"] is None:
        device = "not registered yet"
    else:
        device = (f"{data['deviceId']} "
                  + ("(paired)" if data["paired"] else f"(not paired: code {data['pairingCode']})"))
    by_route = ", ".join(f"{route} {count}" for route, count in
                         sorted(journal["pendingByRoute"].items()) if count)
    oldest = "" if journal["oldestAgeS"] is None else f", oldest {journal['oldestAgeS']:g} s"
    backend = data["backendUrl"]
    if data["backendUp"] is not None:
        backend += " up" if data["backendUp"] else " not answering"
    lines = [
        f"device:       {device}",
        f"service:      {data['service']}",
        *_accelerator_lines(data["accelerator"]),
        f"backend:      {backend}; breaker {data['breaker']}",
        f"journal:      {journal['pending']} pending" + (f" ({by_route})" if by_route else "")
        + oldest,
        f"dead letters: {journal['deadLetters']}",
    ]
    for letter in data["deadLetters"]:
        lines.append(f"  {letter['eventId']} HTTP {letter['status']} {letter['reason']}: "
                     f"{letter['bodyStart']}")
    losses = [f"{journal[key]} {label}" for key, label in
              (("lostRecords", "lost to damage"), ("overflowed", "overflowed"),
               ("expired", "expired")) if journal[key]]
    if losses:
        lines.append("journal losses: " + ", ".join(losses))
    if data["blocked"]:
        lines.append(f"waiting:      {data['blocked']}")
    if data["lastError"]:
        lines.append(f"last error:   {data['lastError']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, config: Config, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    data = collect(config)
    if args.json:
        print(json.dumps(data, sort_keys=True), file=out)
    else:
        print(render(data), file=out)
    return EXIT_OK
