"""basketagent doctor: one line per part of the agent, each with a fix when it is broken."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from agent.config import Config, config_path
from agent.errors import EXIT_BAD_INPUT, EXIT_HARDWARE, EXIT_OK, EXIT_OPERATIONAL, AgentError

HELP = "check config, state dir, model and accelerator, camera, backend and clock; one line each"

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    exit_code: int = EXIT_OK  # what this check would make the whole run exit with

    def line(self) -> str:
        return f"{self.status:<4} {self.name}: {self.detail}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", metavar="SRC", help="frame source to check (default camera.source)")
    parser.add_argument("--model", metavar="PATH", help="model to check (default model.path)")
    parser.add_argument("--device", choices=("auto", "cpu", "edgetpu"), help="device to check")


def _failed(name: str, exc: AgentError) -> Check:
    return Check(name, FAIL, str(exc), exc.exit_code)


def check_config(args: argparse.Namespace, env: Mapping[str, str]) -> Check:
    """The config was already loaded and validated (a bad one exits 2 before this runs)."""
    path, named = config_path(args.config, env)
    if named or path.exists():
        return Check("config", OK, f"{path} is valid")
    return Check("config", OK, f"no {path}; built-in defaults apply")


def check_state_dir(config: Config) -> Check:
    from agent.service import ensure_state_dir

    try:
        path = ensure_state_dir(config.state_dir)
    except AgentError as exc:
        return _failed("state dir", exc)
    return Check("state dir", OK, f"{path} is writable")


def check_journal(config: Config) -> Check:
    from agent.delivery.journal import Journal

    try:
        journal = Journal.open(config.state_dir, config.journal, read_only=True)
    except AgentError as exc:
        return _failed("journal", exc)
    try:
        stats = journal.stats()
    finally:
        journal.close()
    detail = f"{stats.pending} events waiting, {stats.dead_letters} dead letters"
    if stats.lost_records:
        return Check("journal", WARN, detail + f"; {stats.lost_records} damaged records were set "
                     "aside at open (see the log)")
    if stats.dead_letters:
        return Check("journal", WARN, detail + " (see 'basketagent status', then "
                     "'basketagent requeue --all' once the cause is fixed)")
    return Check("journal", OK, detail)


def check_model(config: Config) -> Check:
    from agent.detect.detector import open_detector

    try:
        detector = open_detector(config.model)
    except AgentError as exc:
        return _failed("model", exc)
    try:
        info = detector.info
    finally:
        detector.close()
    width, height = info.input_size
    detail = f"{info.model_path} on {info.device} ({info.layout}, {width}x{height})"
    if info.fallback_reason:
        return Check("model", WARN, f"{detail}; not on the Edge TPU: {info.fallback_reason}")
    return Check("model", OK, detail)


def check_accelerator(config: Config) -> Check:
    from agent.detect.detector import probe_accelerator

    if config.model.device == "cpu":
        return Check("edge tpu", OK, "not used (model.device = cpu)")
    usable, detail = probe_accelerator(config.model)
    if usable:
        return Check("edge tpu", OK, detail)
    if config.model.device == "edgetpu":
        return Check("edge tpu", FAIL, detail, EXIT_HARDWARE)
    return Check("edge tpu", WARN, detail + " (auto falls back to the CPU model)")


def check_camera(config: Config) -> Check:
    from agent.camera.sources import probe_camera

    usable, detail = probe_camera(config.camera.source)
    if usable:
        return Check("camera", OK, detail)
    return Check("camera", FAIL, detail, EXIT_HARDWARE)


def check_backend(config: Config) -> Check:
    from agent.delivery.client import BackendClient
    from agent.delivery.identity import redact_url

    client = BackendClient(config.backend, config.delivery)
    try:
        up = client.health()
    finally:
        client.close()
    url = redact_url(config.backend.url.rstrip("/") + config.backend.health_path)
    if up:
        return Check("backend", OK, f"{url} answers")
    return Check("backend", FAIL, f"{url} does not answer (check backend.url and the network; "
                 "events are journaled meanwhile)", EXIT_OPERATIONAL)


def check_identity(config: Config) -> Check:
    from agent.delivery.identity import IdentityDamaged, IdentityStore

    try:
        identity = IdentityStore(config.state_dir, backend_url=config.backend.url).load(
            repair=False)
    except IdentityDamaged as exc:
        # Not broken for long: the agent moves it aside and registers again when it starts.
        return Check("pairing", WARN, f"{exc}; the agent replaces it with a new registration "
                     "when it starts (a new pairing code)")
    if identity is None:
        return Check("pairing", WARN, "not registered yet (the agent registers when the backend "
                     "answers; or run 'basketagent register')")
    if not identity.paired:
        return Check("pairing", WARN, f"device {identity.device_id} not paired yet: type code "
                     f"{identity.code} into the web app")
    return Check("pairing", OK, f"device {identity.device_id} is paired")


def check_clock() -> Check:
    from agent.clock import clock_synced

    if clock_synced():
        return Check("clock", OK, "synchronised")
    return Check("clock", WARN, "not synchronised yet: event times are marked unsynced "
                 "(check network time: timedatectl timesync-status)")


def run_checks(args: argparse.Namespace, config: Config) -> Iterator[Check]:
    """Each check in turn; one that raises is reported as broken, and the rest still run."""
    probes: list[tuple[str, Callable[[], Check]]] = [
        ("config", lambda: check_config(args, os.environ)),
        ("state dir", lambda: check_state_dir(config)),
        ("journal", lambda: check_journal(config)),
        ("model", lambda: check_model(config)),
        ("edge tpu", lambda: check_accelerator(config)),
        ("camera", lambda: check_camera(config)),
        ("backend", lambda: check_backend(config)),
        ("pairing", lambda: check_identity(config)),
        ("clock", check_clock),
    ]
    for name, probe in probes:
        try:
            yield probe()
        except AgentError as exc:
            yield _failed(name, exc)


def worst_exit_code(checks: list[Check]) -> int:
    """Bad input (2) outranks missing hardware (3), which outranks an operational failure (1)."""
    codes = {check.exit_code for check in checks if check.status == FAIL}
    for code in (EXIT_BAD_INPUT, EXIT_HARDWARE, EXIT_OPERATIONAL):
        if code in codes:
            return code
    return EXIT_OK


def run(args: argparse.Namespace, config: Config) -> int:
    checks = []
    for check in run_checks(args, config):
        print(check.line(), flush=True)
        checks.append(check)
    code = worst_exit_code(checks)
    broken = sum(check.status == FAIL for check in checks)
    print(f"{broken} broken, {sum(c.status == WARN for c in checks)} warnings" if broken
          else "everything needed is working")
    return code


