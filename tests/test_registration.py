"""Registrar: background registration with backoff, stored identity reuse, pairing state, disk faults."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sender_support import SteppedClock, free_port, make_config
from structlog.testing import capture_logs

from agent.config import Config
from agent.delivery.backoff import Backoff
from agent.delivery.client import BackendClient
from agent.delivery.identity import Identity, IdentityStore
from agent.delivery.registration import Registrar
from agent.devserver import ReferenceBackend


def registrar(config: Config, store: IdentityStore) -> tuple[Registrar, BackendClient]:
    client = BackendClient(config.backend, config.delivery, clock=SteppedClock())
    return Registrar(client, store, config, rng=random.Random(2)), client


def test_registers_saves_and_logs_the_code(tmp_path: Path, backend: ReferenceBackend) -> None:
    config = make_config(tmp_path / "state", backend.url)
    store = IdentityStore(config.state_dir)
    reg, client = registrar(config, store)
    with client, capture_logs() as logs:
        assert not reg.registered
        assert reg.ensure(0.0) and reg.registrations == 1
    saved = store.load()
    assert saved == reg.identity and saved.backend_url == backend.url and not saved.paired
    assert any(entry["log_level"] == "warning" and entry.get("code") == saved.code
               for entry in logs)
    assert reg.next_due() == pytest.approx(300.0)  # the next reminder


def test_a_stored_identity_is_reused(tmp_path: Path, backend: ReferenceBackend) -> None:
    config = make_config(tmp_path / "state", backend.url)
    store = IdentityStore(config.state_dir)
    first, client = registrar(config, store)
    with client:
        first.ensure(0.0)
    second, client = registrar(config, store)
    with client:
        assert second.identity == first.identity and second.ensure(0.0)
        assert second.registrations == 0
    assert sum(call.path == "/api/devices/register" for call in backend.calls) == 1


def test_backend_down_backs_off_and_says_why(tmp_path: Path) -> None:
    config = make_config(tmp_path / "state", f"http://127.0.0.1:{free_port()}",
                         backoff_initial_s=2.0, register_backoff_max_s=10.0,
                         breaker_fail_max=1000)
    reg, client = registrar(config, IdentityStore(config.state_dir))
    shape = Backoff(2.0, 10.0)
    now = 0.0
    with client:
        for failures in range(1, 8):
            assert reg.ensure(now) is False
            due = reg.next_register_at
            assert now <= due <= now + shape.ceiling(failures)
            if due > now:
                assert reg.ensure(now) is False and reg.next_register_at == due  # not yet due
            now = due
    assert "connection refused" in reg.last_error
    assert reg.identity is None


def test_a_refused_registration_is_logged_at_error_with_the_path(
        tmp_path: Path, backend: ReferenceBackend) -> None:
    config = make_config(tmp_path / "state", backend.url,
                         backend={"register_path": "/api/devices/enrol"})
    reg, client = registrar(config, IdentityStore(config.state_dir))
    with client, capture_logs() as logs:
        assert reg.ensure(0.0) is False
    [entry] = [entry for entry in logs if entry["log_level"] == "error"]
    assert entry["path"] == "/api/devices/enrol" and entry["status"] == 404
    assert reg.next_register_at > 0.0


def test_an_unwritable_state_dir_does_not_stop_registration(
        tmp_path: Path, backend: ReferenceBackend) -> None:
    # /proc/self cannot take new files, not even for root (tests may run as root).
    unwritable = Path("/proc/self")
    config = make_config(tmp_path / "state", backend.url)
    reg, client = registrar(config, IdentityStore(unwritable))
    with client, capture_logs() as logs:
        assert reg.ensure(0.0) is True
        reg.set_paired(True)
    assert reg.paired
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert len(errors) == 2 and all("identity not saved" in entry["event"] for entry in errors)


def test_paired_state_is_persisted_both_ways(tmp_path: Path, backend: ReferenceBackend) -> None:
    config = make_config(tmp_path / "state", backend.url)
    store = IdentityStore(config.state_dir)
    reg, client = registrar(config, store)
    with client:
        reg.ensure(0.0)
    reg.set_paired(True)
    assert store.load().paired is True and reg.next_due() == float("inf")
    with capture_logs() as logs:
        reg.set_paired(False)
    assert store.load().paired is False
    assert any(entry["log_level"] == "warning" and entry.get("code") == reg.identity.code
               for entry in logs)


def test_forget_drops_the_identity_and_registers_at_once(
        tmp_path: Path, backend: ReferenceBackend) -> None:
    config = make_config(tmp_path / "state", backend.url)
    reg, client = registrar(config, IdentityStore(config.state_dir))
    with client:
        reg.ensure(0.0)
        old = reg.identity
        reg.forget(50.0)
        assert reg.identity is None and reg.next_due() == 50.0
        assert reg.ensure(50.0) and reg.identity.device_id != old.device_id
        assert reg.registrations == 2


def test_an_identity_of_another_backend_is_not_reused(tmp_path: Path,
                                                      backend: ReferenceBackend) -> None:
    state = tmp_path / "state"
    store = IdentityStore(state)  # as the service builds it: no backend filter of its own
    store.save(Identity("old-device", "1111", "http://basket.example:3000",
                        "2026-12-01T10:00:00.000Z"))
    config = make_config(state, backend.url)
    with capture_logs() as logs:
        reg, client = registrar(config, store)
    with client:
        assert reg.identity is None
        assert reg.ensure(0.0) and reg.identity.device_id != "old-device"
    assert store.load().backend_url == backend.url
    assert any("another backend" in entry["event"] for entry in logs)


def test_another_backend_is_logged_without_either_password(tmp_path: Path,
                                                           backend: ReferenceBackend) -> None:
    state = tmp_path / "state"
    store = IdentityStore(state)
    store.save(Identity("old-device", "1111", "http://ann:0ld-s3cret@basket.example:3000",
                        "2026-12-01T10:00:00.000Z"))
    secret_url = backend.url.replace("http://", "http://ann:s3cret@")
    config = make_config(state, secret_url)
    with capture_logs() as logs:
        reg, client = registrar(config, store)
    with client:
        assert reg.identity is None
    [entry] = [entry for entry in logs if "another backend" in entry["event"]]
    assert entry["log_level"] == "warning"
    assert entry["stored_backend"] == "http://basket.example:3000"
    assert entry["backend"] == backend.url
    assert "s3cret" not in repr(logs)
