"""basketagent register: get a deviceId and pairing code from the backend (or show the stored ones)."""

from __future__ import annotations

import argparse
import time

from agent import __version__
from agent.clock import utc_iso
from agent.config import Config
from agent.delivery.client import REFUSED, BackendClient
from agent.delivery.identity import Identity, IdentityStore, redact_url
from agent.errors import BackendConfigFault, BackendError
from agent.fsutil import refuse_foreign_state

HELP = "register this device with the backend and print its deviceId and pairing code"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="register again even when an identity is stored (a new deviceId and "
                             "code; restart the service afterwards so it uses them)")


def run(args: argparse.Namespace, config: Config) -> int:
    refuse_foreign_state(config.state_dir, "register")
    store = IdentityStore(config.state_dir, backend_url=config.backend.url)
    identity = None if args.force else store.load()
    if identity is not None:
        _print(identity, stored=True)
        return 0
    identity = register(config)
    store.save(identity)
    _print(identity, stored=False)
    return 0


def register(config: Config) -> Identity:
    """One registration attempt; BackendError when the backend cannot be reached or refuses."""
    url = redact_url(config.backend.url)
    with BackendClient(config.backend, config.delivery) as client:
        result = client.register(__version__)
    outcome = result.outcome
    if result.ok:
        return result.identity(config.backend.url, utc_iso(time.time()))
    if outcome.kind is REFUSED:
        raise BackendConfigFault(
            f"backend at {url} refuses POST {config.backend.register_path}: HTTP {outcome.status} "
            f"{outcome.body_start[:80]!r}",
            fix="check backend.url and backend.register_path")
    raise BackendError(f"backend at {url} not reachable: {outcome.error or outcome.kind.value}; "
                       "check backend.url and that the backend is up")


def _print(identity: Identity, *, stored: bool) -> None:
    print(f"deviceId: {identity.device_id}")
    if identity.paired:
        print(f"pairing code: {identity.code} (already paired)")
    else:
        print(f"pairing code: {identity.code} (enter it in the basket web app to pair this device)")
    if stored:
        print(f"(stored identity from {identity.registered_at}; use --force to register again)")
