"""The confirmed basket view on disk, so a restart does not re-add what is still in view.

One small JSON file, replaced atomically: ``{"version": 1, "view": {"P001": 2}}``.
A damaged file is moved aside (kept for a post-mortem) and the view starts
empty: at worst the products in view are added again, which the person can see
and undo, whereas refusing to start would lose every later event.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from agent.errors import OperationalError
from agent.fsutil import atomic_write_bytes, move_aside

log = structlog.get_logger(__name__)

VERSION = 1


class ViewStore:
    def __init__(self, path: Path, *,
                 move_aside: Callable[[Path, str], Path] = move_aside) -> None:
        self.path = Path(path)
        self._move_aside = move_aside

    def load(self) -> dict[str, int]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise OperationalError(
                f"basket view {self.path} cannot be read: {exc.strerror or exc}",
                fix="check that the state directory belongs to the service user") from exc
        try:
            return _parse(raw)
        except _Damaged as exc:
            try:
                moved = self._move_aside(self.path, "damaged")
            except OSError as move_exc:
                raise OperationalError(
                    f"basket view {self.path} is damaged ({exc}) and cannot be moved aside: "
                    f"{move_exc.strerror or move_exc}",
                    fix="delete the file; products in view will be added again") from move_exc
            log.warning("basket view was damaged; starting from an empty view",
                        path=str(self.path), moved_to=str(moved), reason=str(exc))
            return {}

    def save(self, view: Mapping[str, int]) -> None:
        clean = {product: int(count) for product, count in sorted(view.items()) if count > 0}
        data = json.dumps({"version": VERSION, "view": clean}, sort_keys=True).encode()
        try:
            atomic_write_bytes(self.path, data + b"\n")
        except OSError as exc:
            raise OperationalError(
                f"basket view {self.path} cannot be written: {exc.strerror or exc}",
                fix="free space or fix permissions in the state directory") from exc


class _Damaged(Exception):
    """The view file's content is not a valid view."""


def _parse(raw: bytes) -> dict[str, int]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Damaged(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise _Damaged("not a version 1 view")
    view = data.get("view")
    if not isinstance(view, dict):
        raise _Damaged("no view object")
    result = {}
    for product, count in view.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise _Damaged(f"count for {product!r} is not a whole number >= 0")
        if count:
            result[str(product)] = count
    return result
