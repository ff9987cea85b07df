"""From per-frame detections to "product added" events.

Each frame, detections at or above ``detection.min_score`` whose label is in
the catalog are counted per product; labels not in the catalog (a hand) are
ignored. The counts go through the CountStabilizer (see there for the confirm
and release rules and how confidence is aggregated). Each confirmed rise is
one event: quantity = the increase, a fresh UUIDv7 event id, the wall-clock
time of confirmation, routed to the basket when its confidence (rounded to
four places, the value sent) is at least ``routing.basket_threshold``, else to
pending approval.

The confirmed view is kept in a ViewStore so a restart does not re-add what is
still in view. A view with a new rise is saved only by ``persist()``, which
the loop calls once that rise's event is journaled: a crash in between re-adds
(a duplicate a person can see) instead of losing the event. A view that only
fell is saved straight away, since nothing has to be journaled first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog

from agent.basket.catalog import Catalog, Product
from agent.basket.event import ROUTE_BASKET, ROUTE_PENDING, ProductEvent
from agent.basket.stabilizer import Change, CountStabilizer
from agent.basket.view_store import ViewStore
from agent.clock import clock_synced as default_clock_synced
from agent.clock import utc_iso, uuid7
from agent.config import BasketConfig, DetectionConfig, RoutingConfig
from agent.detect.types import Detection
from agent.errors import OperationalError

log = structlog.get_logger(__name__)

CONFIDENCE_PLACES = 4


class BasketTracker:
    def __init__(
        self,
        catalog: Catalog,
        basket: BasketConfig,
        detection: DetectionConfig,
        routing: RoutingConfig,
        view_store: ViewStore,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock_synced: Callable[[], bool] = default_clock_synced,
        new_event_id: Callable[[], str] = uuid7,
    ) -> None:
        self._catalog = catalog
        self._min_score = detection.min_score
        self._threshold = routing.basket_threshold
        self._store = view_store
        self._wall_clock = wall_clock
        self._clock_synced = clock_synced
        self._new_event_id = new_event_id
        view = view_store.load()
        self._stabilizer = CountStabilizer(basket.confirm_frames, basket.release_frames, view)
        self._saved = self._stabilizer.confirmed
        self._unsaved_rise = False
        self._save_failing = False
        self._products: dict[str, Product] = {}
        self._unknown_labels: set[str] = set()
        if self._saved:
            log.info("basket view restored", view=self._saved)

    @property
    def confirmed(self) -> dict[str, int]:
        return self._stabilizer.confirmed

    def observe(self, detections: Sequence[Detection]) -> list[ProductEvent]:
        scores: dict[str, list[float]] = {}
        for detection in detections:
            # "not >=" also drops a NaN score.
            if not detection.score >= self._min_score:
                continue
            product = self._catalog.lookup(detection.label)
            if product is None:
                if detection.label not in self._unknown_labels:
                    self._unknown_labels.add(detection.label)
                    log.debug("label not in the catalog; ignored", label=detection.label)
                continue
            self._products[product.product_id] = product
            scores.setdefault(product.product_id, []).append(float(detection.score))
        changes = self._stabilizer.update(scores)
        events = []
        for change in changes:
            if change.rise:
                events.append(self._event(change))
                self._unsaved_rise = True
            else:
                log.info("product left the basket view", product_id=change.key,
                         count=change.new, was=change.old)
        if changes and not self._unsaved_rise:
            self._save()
        return events

    def persist(self) -> None:
        """Save the confirmed view; call once the events observe() returned are journaled."""
        if self._save():
            self._unsaved_rise = False

    def _event(self, change: Change) -> ProductEvent:
        product = self._products[change.key]
        confidence = round(change.confidence, CONFIDENCE_PLACES)
        route = ROUTE_BASKET if confidence >= self._threshold else ROUTE_PENDING
        event = ProductEvent(
            event_id=self._new_event_id(),
            route=route,
            product_id=product.product_id,
            name=product.name,
            quantity=change.new - change.old,
            confidence=confidence,
            detected_at=utc_iso(self._wall_clock()),
            clock_synced=bool(self._clock_synced()),
        )
        log.debug("count confirmed", product_id=product.product_id, count=change.new,
                  was=change.old, confidence=confidence, route=route)
        return event

    def _save(self) -> bool:
        view = self._stabilizer.confirmed
        if view == self._saved:
            return True
        try:
            self._store.save(view)
        except OperationalError as exc:
            # Not fatal: the view stays in memory and the next persist tries again.
            # Until then a restart may add products in view a second time.
            if not self._save_failing:
                log.error("basket view not saved; will retry", error=str(exc))
                self._save_failing = True
            return False
        if self._save_failing:
            log.info("basket view saved again")
            self._save_failing = False
        self._saved = view
        return True
