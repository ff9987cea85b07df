"""The seam between the basket logic and delivery: one product event."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ROUTE_BASKET = "basket"
ROUTE_PENDING = "pending"
ROUTES = (ROUTE_BASKET, ROUTE_PENDING)


@dataclass(frozen=True)
class ProductEvent:
    """A product was added: what the journal stores and delivery sends.

    ``event_id`` is unique per event and never changes across retries and
    restarts (it is the Idempotency-Key). ``detected_at`` is UTC ISO-8601 with
    milliseconds and a ``Z``; ``clock_synced`` is False when the wall clock was
    not yet synchronised at detection time.
    """

    event_id: str
    route: str
    product_id: str
    name: str
    quantity: int
    confidence: float
    detected_at: str
    clock_synced: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProductEvent:
        return cls(
            event_id=str(data["event_id"]),
            route=str(data["route"]),
            product_id=str(data["product_id"]),
            name=str(data["name"]),
            quantity=int(data["quantity"]),
            confidence=float(data["confidence"]),
            detected_at=str(data["detected_at"]),
            clock_synced=bool(data.get("clock_synced", True)),
        )
