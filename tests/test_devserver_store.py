"""The reference backend's SQLite store: devices, unique codes, items once per key, forget."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from agent.devserver.store import DUPLICATE, STORED, BackendStore


def item(device_id: str, event_id: str = "e1") -> dict[str, object]:
    return {"productId": "P001", "quantity": 3, "confidence": 0.8, "deviceId": device_id,
            "eventId": event_id, "detectedAt": "2026-12-04T10:00:00Z"}


def test_codes_are_unique_among_unpaired_devices() -> None:
    # A generator that repeats itself forces the collision path.
    store = BackendStore(rng=random.Random(7), wall_clock=lambda: 100.0)
    codes = [store.register("v")[1] for _ in range(300)]
    assert len(set(codes)) == 300
    store.close()


def test_all_codes_taken_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "full.sqlite"
    BackendStore(db).close()  # creates the schema
    with sqlite3.connect(db) as raw:
        raw.executemany("INSERT INTO devices (device_id, code, registered_at) VALUES (?, ?, 0)",
                        [(f"d{n}", f"{n:04d}") for n in range(10_000)])
    store = BackendStore(db)
    with pytest.raises(RuntimeError, match="every pairing code"):
        store.register(None)
    store.close()


def test_pairing_frees_the_code_for_reuse() -> None:
    store = BackendStore()
    device, code = store.register(None)
    assert store.pair(code) == device
    assert store.pair(code) is None
    assert store.device(device)["paired"] is True
    assert store.device("unknown") is None
    store.close()


def test_items_are_stored_once_per_route_and_key() -> None:
    store = BackendStore(wall_clock=lambda: 42.0)
    assert store.add_item("basket", "k", item("d")) == STORED
    assert store.add_item("basket", "k", item("d")) == DUPLICATE
    assert store.add_item("pending", "k", {**item("d"), "name": "Milk"}) == STORED
    assert store.has_item("basket", "k") and not store.has_item("basket", "other")
    [basket] = store.items("basket")
    assert basket["receivedAt"] == 42.0 and "name" not in basket
    assert store.items("pending", "d")[0]["name"] == "Milk"
    with pytest.raises(ValueError):
        store.items("elsewhere")
    store.close()


def test_forget_counts_devices_and_drops_everything(tmp_path: Path) -> None:
    store = BackendStore(tmp_path / "db.sqlite")
    device, _ = store.register(None)
    store.register(None)
    store.add_item("basket", "k", item(device))
    assert store.forget() == 2
    assert store.devices() == [] and store.items("basket") == []
    store.close()
