"""Checks on the JSON bodies the reference backend accepts, as a strict real backend would."""

from __future__ import annotations

from datetime import datetime
from typing import Any

ROUTE_BASKET = "basket"
ROUTE_PENDING = "pending"
MAX_TEXT = 200


def _text(data: dict[str, Any], key: str, problems: list[str]) -> None:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{key} must be a non-empty string")
    elif len(value) > MAX_TEXT:
        problems.append(f"{key} is longer than {MAX_TEXT} characters")


def item_problems(route: str, data: Any) -> list[str]:
    """What is wrong with a basket or pending-item body; empty when it is fine."""
    if not isinstance(data, dict):
        return ["body must be a JSON object"]
    problems: list[str] = []
    for key in ("productId", "deviceId", "eventId", "detectedAt"):
        _text(data, key, problems)
    if route == ROUTE_PENDING:
        _text(data, "name", problems)
    quantity = data.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        problems.append("quantity must be a whole number of at least 1")
    confidence = data.get("confidence")
    if (isinstance(confidence, bool) or not isinstance(confidence, (int, float))
            or not 0.0 <= confidence <= 1.0):
        problems.append("confidence must be a number from 0 to 1")
    detected = data.get("detectedAt")
    if isinstance(detected, str) and detected.strip():
        try:
            parsed = datetime.fromisoformat(detected)
        except ValueError:
            problems.append("detectedAt must be an ISO-8601 time")
        else:
            if parsed.tzinfo is None:
                problems.append("detectedAt must carry a time zone (e.g. Z)")
    return problems
