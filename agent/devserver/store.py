"""The reference backend's data: devices, pairing codes, basket and pending items, in SQLite.

One connection shared by the server's threads behind a lock: the reference
backend is for development and tests, not for load.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from agent.devserver.validate import ROUTE_BASKET, ROUTE_PENDING

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    paired INTEGER NOT NULL DEFAULT 0,
    agent_version TEXT,
    registered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    device_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    name TEXT,
    quantity INTEGER NOT NULL,
    confidence REAL NOT NULL,
    detected_at TEXT NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (route, idempotency_key)
);
"""

STORED = "stored"
DUPLICATE = "duplicate"


class BackendStore:
    def __init__(self, db_path: Path | None = None, *, rng: random.Random | None = None,
                 wall_clock=time.time) -> None:
        target = str(db_path) if db_path is not None else ":memory:"
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None,
                                   timeout=5.0)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._rng = rng or random.SystemRandom()
        self._wall_clock = wall_clock
        try:
            if db_path is not None:
                # A development database: losing the last moment at a power cut is fine,
                # a disk sync per request is not.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def register(self, agent_version: str | None) -> tuple[str, str]:
        """A new device: (deviceId, pairing code). Codes are unique among unpaired devices."""
        with self._lock:
            taken = {row[0] for row in self._db.execute(
                "SELECT code FROM devices WHERE paired = 0")}
            if len(taken) >= 10_000:
                raise RuntimeError("every pairing code is in use")
            while True:
                code = f"{self._rng.randrange(10_000):04d}"
                if code not in taken:
                    break
            device_id = uuid.UUID(int=self._rng.getrandbits(128), version=4).hex
            self._db.execute(
                "INSERT INTO devices (device_id, code, agent_version, registered_at)"
                " VALUES (?, ?, ?, ?)", (device_id, code, agent_version, self._wall_clock()))
        return device_id, code

    def pair(self, code: str) -> str | None:
        """Pair the unpaired device holding ``code``; its deviceId, or None when no device has it."""
        with self._lock:
            row = self._db.execute(
                "SELECT device_id FROM devices WHERE code = ? AND paired = 0", (code,)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE devices SET paired = 1 WHERE device_id = ?", (row[0],))
            return str(row[0])

    def device(self, device_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM devices WHERE device_id = ?",
                                   (device_id,)).fetchone()
        return None if row is None else _device_dict(row)

    def devices(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM devices ORDER BY registered_at").fetchall()
        return [_device_dict(row) for row in rows]

    def has_item(self, route: str, key: str) -> bool:
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM items WHERE route = ? AND idempotency_key = ?",
                (route, key)).fetchone() is not None

    def add_item(self, route: str, key: str, data: dict[str, Any]) -> str:
        """Store a validated item once per (route, key): STORED, or DUPLICATE for a repeat."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO items (route, idempotency_key, device_id, event_id,"
                " product_id, name, quantity, confidence, detected_at, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (route, key, data["deviceId"], data["eventId"], data["productId"],
                 data.get("name"), data["quantity"], float(data["confidence"]),
                 data["detectedAt"], self._wall_clock()))
            return STORED if cursor.rowcount == 1 else DUPLICATE

    def items(self, route: str, device_id: str | None = None) -> list[dict[str, Any]]:
        if route not in (ROUTE_BASKET, ROUTE_PENDING):
            raise ValueError(f"unknown route {route!r}")
        query = "SELECT * FROM items WHERE route = ?"
        params: list[Any] = [route]
        if device_id is not None:
            query += " AND device_id = ?"
            params.append(device_id)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [_item_dict(row) for row in rows]

    def forget(self) -> int:
        """Drop every device and item, as a backend restarted on an empty database. Devices dropped."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM devices").fetchone()[0]
            self._db.execute("DELETE FROM devices")
            self._db.execute("DELETE FROM items")
        return int(count)


def _device_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {"deviceId": row["device_id"], "code": row["code"], "paired": bool(row["paired"]),
            "agentVersion": row["agent_version"], "registeredAt": row["registered_at"]}


def _item_dict(row: sqlite3.Row) -> dict[str, Any]:
    item = {"productId": row["product_id"], "quantity": row["quantity"],
            "confidence": row["confidence"], "deviceId": row["device_id"],
            "eventId": row["event_id"], "detectedAt": row["detected_at"],
            "idempotencyKey": row["idempotency_key"], "receivedAt": row["received_at"]}
    if row["name"] is not None:
        item["name"] = row["name"]
    return item
