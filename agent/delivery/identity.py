"""Who this device is to the backend: deviceId and pairing code, kept in state_dir/identity.json.

The file is small and replaced atomically (temp file, fsync, rename), mode 0600.
A damaged or empty file is moved aside and treated as absent, so the agent
registers again instead of refusing to start. Readers that must not change
anything (status, doctor) load with ``repair=False``: a damaged file is then
reported as IdentityDamaged and left where it is. An identity issued by another
backend URL is not reused: that backend would not know the deviceId.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

from agent.errors import OperationalError
from agent.fsutil import atomic_write_bytes, move_aside

log = structlog.get_logger(__name__)

IDENTITY_FILE = "identity.json"
_CODE = re.compile(r"^[0-9]{4}$")


@dataclass(frozen=True)
class Identity:
    device_id: str
    code: str
    backend_url: str
    # Wall-clock UTC ISO-8601 time of the registration (for people, not for timing).
    registered_at: str
    paired: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "deviceId": self.device_id,
            "code": self.code,
            "backendUrl": self.backend_url,
            "registeredAt": self.registered_at,
            "paired": self.paired,
        }

    @classmethod
    def from_json(cls, data: Any) -> Identity:
        """Parse the stored form; raise ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")  # noqa: TRY004 - "damaged", like bad JSON
        for key in ("deviceId", "code", "backendUrl", "registeredAt"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ValueError(f"{key} missing or not a non-empty string")
        if not _CODE.match(data["code"]):
            raise ValueError("code is not 4 digits")
        paired = data.get("paired", False)
        if not isinstance(paired, bool):
            raise ValueError("paired is not true/false")  # noqa: TRY004
        return cls(
            device_id=data["deviceId"],
            code=data["code"],
            backend_url=data["backendUrl"],
            registered_at=data["registeredAt"],
            paired=paired,
        )

    def with_paired(self, paired: bool = True) -> Identity:
        return dataclasses.replace(self, paired=paired)


class IdentityDamaged(OperationalError):
    """The identity file is damaged; raised only by a read-only load, which leaves it in place."""


def redact_url(url: str) -> str:
    """The URL without any user:password part, fit for logs and messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def same_backend(a: str, b: str) -> bool:
    """URLs that differ only by a trailing slash name the same backend."""
    return a.rstrip("/") == b.rstrip("/")


class IdentityStore:
    """Loads and saves the identity. ``backend_url`` set: identities of other backends are ignored."""

    def __init__(self, state_dir: Path, *, backend_url: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / IDENTITY_FILE
        self.backend_url = backend_url

    def load(self, *, repair: bool = True) -> Identity | None:
        """The stored identity, or None when there is none usable (absent, damaged, other backend).

        ``repair=False`` changes nothing on disk: a damaged file raises IdentityDamaged
        instead of being moved aside (for status and doctor while the service may run).
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OperationalError(
                f"cannot read {self.path}: {exc.strerror or exc}",
                fix="check that state.dir belongs to the user running basketagent",
            ) from exc
        try:
            identity = Identity.from_json(json.loads(raw.decode("utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            # JSONDecodeError is a ValueError; an empty file lands here too.
            why = str(exc) if raw.strip() else "empty file"
            if not repair:
                raise IdentityDamaged(
                    f"{self.path} is damaged ({why})",
                    fix="left as it is; the agent moves it aside when it starts and registers "
                        "again, and the device then needs pairing again",
                ) from exc
            self._move_aside(why)
            return None
        if self.backend_url is not None and not same_backend(identity.backend_url, self.backend_url):
            log.warning("stored identity is for another backend; registering again",
                        stored_backend=redact_url(identity.backend_url),
                        backend=redact_url(self.backend_url),
                        device_id=identity.device_id)
            return None
        return identity

    def save(self, identity: Identity) -> None:
        data = json.dumps(identity.to_json(), indent=2, sort_keys=True).encode("utf-8") + b"\n"
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, data, mode=0o600)
        except OSError as exc:
            raise OperationalError(
                f"cannot write {self.path}: {exc.strerror or exc}",
                fix="check free space and that state.dir belongs to the user running basketagent",
            ) from exc
        log.info("identity saved", device_id=identity.device_id, paired=identity.paired)

    def _move_aside(self, why: str) -> None:
        try:
            moved = move_aside(self.path, "damaged")
        except OSError as exc:
            raise OperationalError(
                f"{self.path} is damaged ({why}) and cannot be moved aside: {exc.strerror or exc}",
                fix="remove the file by hand; the agent will register again",
            ) from exc
        log.error("identity file damaged; moved aside, registering again",
                  path=str(self.path), reason=why, moved_to=str(moved))
