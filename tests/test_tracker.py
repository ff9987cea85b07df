"""Detections to events, with scripted detection sequences, a real catalog and view file."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.basket.catalog import Catalog
from agent.basket.event import ProductEvent
from agent.basket.tracker import BasketTracker
from agent.basket.view_store import ViewStore
from agent.camera.render import visible_truth
from agent.camera.synthetic import BasketScript
from agent.config import BasketConfig, DetectionConfig, RoutingConfig
from agent.detect.types import Detection

CONFIRM, RELEASE = 3, 8
CATALOG = {"products": [
    {"label": "apple", "productId": "P001", "name": "Organic Apples"},
    {"label": "milk", "productId": "P003", "name": "Whole Milk 1 L"},
]}
SIZE = (320, 240)
T0 = 1_796_378_400.25  # 2026-12-04T10:00:00.250Z


class WallClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def det(label: str, score: float = 0.9, n: int = 0) -> Detection:
    x = 0.1 * n
    return Detection(0, label, score, (0.1, x, 0.2, x + 0.1))


def items(*labels: str, score: float = 0.9) -> list[Detection]:
    return [det(label, score, n) for n, label in enumerate(labels)]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(CATALOG))
    return Catalog.load(path)


class Harness:
    def __init__(self, catalog: Catalog, state: Path, *, min_score: float = 0.4,
                 threshold: float = 0.70, synced: bool = True, store: ViewStore | None = None):
        self.clock = WallClock()
        self.ids = (f"id-{n}" for n in itertools.count())
        self.store = store or ViewStore(state / "view.json")
        self.tracker = BasketTracker(
            catalog, BasketConfig(confirm_frames=CONFIRM, release_frames=RELEASE),
            DetectionConfig(min_score=min_score), RoutingConfig(basket_threshold=threshold),
            self.store, wall_clock=self.clock, clock_synced=lambda: synced,
            new_event_id=lambda: next(self.ids))

    def run(self, frames: Sequence[Sequence[Detection]], persist: bool = True
            ) -> list[ProductEvent]:
        events = []
        for frame in frames:
            self.clock.now += 0.125  # exact in binary: timestamps without rounding noise
            new = self.tracker.observe(frame)
            events += new
            if new and persist:
                self.tracker.persist()
        return events


def test_a_product_put_in_is_one_event(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    events = h.run([[]] * 4 + [items("apple")] * 20)
    assert events == [ProductEvent(
        event_id="id-0", route="basket", product_id="P001", name="Organic Apples", quantity=1,
        confidence=0.9, detected_at="2026-12-04T10:00:01.125Z", clock_synced=True)]
    assert h.tracker.confirmed == {"P001": 1}


def test_flicker_is_no_event(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    # Seen two frames of every three: never CONFIRM (3) frames in a row.
    flicker = [items("apple"), items("apple"), []] * 15 + [items("apple"), [], items("apple")] * 5
    assert h.run(flicker) == []
    assert h.tracker.confirmed == {}


def test_hand_occlusion_is_no_remove_and_no_re_add(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    assert len(h.run([items("apple", "milk")] * 5)) == 2
    # A hand covers both (and is itself detected), then uncovers the apple, then moves away:
    # the milk is hidden for RELEASE - 1 frames in all.
    hand = [items("hand")] * (RELEASE - 4)
    half = [items("apple", "hand")] * 3
    assert h.run(hand + half + [items("apple", "milk")] * 20) == []
    assert h.tracker.confirmed == {"P001": 1, "P003": 1}


def test_two_items_at_once_are_one_event_with_quantity_two(
        catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    events = h.run([items("apple", "apple")] * 10)
    assert [(e.product_id, e.quantity) for e in events] == [("P001", 2)]


def test_a_second_item_later_is_another_event(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    events = h.run([items("apple")] * 10 + [items("apple", "apple")] * 10)
    assert [(e.product_id, e.quantity) for e in events] == [("P001", 1), ("P001", 1)]
    assert events[0].event_id != events[1].event_id


def test_removal_then_re_add_is_an_event_again(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    assert len(h.run([items("milk")] * CONFIRM)) == 1
    assert h.run([[]] * RELEASE) == []
    assert h.tracker.confirmed == {}
    assert h.run([items("milk")] * (CONFIRM - 1)) == []
    again = h.run([items("milk")])
    assert [(e.product_id, e.quantity) for e in again] == [("P003", 1)]


def test_detections_below_min_score_are_ignored(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path, min_score=0.5)
    assert h.run([items("apple", score=0.49)] * 20) == []
    # One counted apple beside a too-weak second one: quantity 1, not 2.
    frames = [[det("apple", 0.8, 0), det("apple", 0.3, 1)]] * 5
    assert [e.quantity for e in h.run(frames)] == [1]


def test_exactly_min_score_counts(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path, min_score=0.5)
    assert [e.quantity for e in h.run([items("apple", score=0.5)] * CONFIRM)] == [1]


def test_nan_scores_are_ignored(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    assert h.run([items("apple", score=float("nan"))] * 10) == []


def test_unknown_labels_are_ignored_and_logged_once(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    with structlog.testing.capture_logs() as logs:
        assert h.run([items("hand", "hand", "")] * 20) == []
    assert h.tracker.confirmed == {}
    unknown = [entry["label"] for entry in logs if entry["event"].startswith("label not in")]
    assert unknown == ["hand", ""]


@pytest.mark.parametrize("score, route", [
    (0.70, "basket"),
    (0.71, "basket"),
    (0.6999, "pending"),
    # A float32 score just under 0.70 as an int8 model's output: rounded to what is sent.
    (0.699999988079071, "basket"),
    (0.69, "pending"),
])
def test_routing_threshold_at_exactly_070(catalog: Catalog, tmp_path: Path, score: float,
                                          route: str) -> None:
    h = Harness(catalog, tmp_path, threshold=0.70)
    [event] = h.run([items("milk", score=score)] * CONFIRM)
    assert event.route == route
    assert event.name == "Whole Milk 1 L"
    assert (event.confidence >= 0.70) == (route == "basket")


def test_confidence_is_the_mean_over_the_confirm_window(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    [event] = h.run([items("apple", score=s) for s in (0.9, 0.6, 0.6)])
    assert event.confidence == 0.7
    assert event.route == "basket"
    [event] = h.run([items("milk", score=s) for s in (0.9, 0.5, 0.55)])
    assert event.confidence == 0.65
    assert event.route == "pending"


def test_unsynced_clock_is_marked(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path, synced=False)
    [event] = h.run([items("apple")] * CONFIRM)
    assert event.clock_synced is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event.detected_at)


def test_real_event_ids_are_uuid7(catalog: Catalog, tmp_path: Path) -> None:
    tracker = BasketTracker(catalog, BasketConfig(2, 4), DetectionConfig(), RoutingConfig(),
                            ViewStore(tmp_path / "view.json"), clock_synced=lambda: True)
    events = [e for _ in range(2) for e in tracker.observe(items("apple", "milk"))]
    assert len(events) == 2
    assert all(uuid.UUID(e.event_id).version == 7 for e in events)
    assert events[0].event_id < events[1].event_id


def test_restart_from_the_persisted_view_does_not_add_again(
        catalog: Catalog, tmp_path: Path) -> None:
    first = Harness(catalog, tmp_path)
    assert len(first.run([items("apple", "apple", "milk")] * 10)) == 2
    first.tracker.persist()
    # A reboot: a new tracker over the same state dir, same products still in view.
    second = Harness(catalog, tmp_path)
    assert second.tracker.confirmed == {"P001": 2, "P003": 1}
    assert second.run([items("apple", "apple", "milk")] * 50) == []
    # A third apple is still news.
    assert [(e.product_id, e.quantity) for e in
            second.run([items("apple", "apple", "apple", "milk")] * 5)] == [("P001", 1)]


def test_restart_with_the_basket_emptied_meanwhile(catalog: Catalog, tmp_path: Path) -> None:
    first = Harness(catalog, tmp_path)
    first.run([items("apple")] * 5)
    second = Harness(catalog, tmp_path)
    assert second.run([[]] * RELEASE) == []
    assert second.tracker.confirmed == {}
    assert ViewStore(tmp_path / "view.json").load() == {}  # the fall was saved at once
    assert [e.quantity for e in second.run([items("apple")] * CONFIRM)] == [1]


def test_a_rise_is_saved_only_by_persist(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    h.run([items("apple")] * 5, persist=False)
    assert h.store.load() == {}          # event not journaled yet: the view must not claim it
    h.tracker.persist()
    assert h.store.load() == {"P001": 1}


def test_a_fall_waits_while_a_rise_is_unsaved(catalog: Catalog, tmp_path: Path) -> None:
    h = Harness(catalog, tmp_path)
    h.run([items("apple")] * 5)
    h.run([items("milk")] * RELEASE, persist=False)  # apple leaves, milk arrives unsaved
    assert h.tracker.confirmed == {"P003": 1}
    assert h.store.load() == {"P001": 1}
    h.tracker.persist()
    assert h.store.load() == {"P003": 1}


def test_a_damaged_view_file_is_moved_aside_and_the_tracker_starts_empty(
        catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "view.json").write_bytes(b'{"version": 1, "view": {"P001": ')
    h = Harness(catalog, tmp_path)
    assert h.tracker.confirmed == {}
    assert (tmp_path / "view.json.damaged.0").exists()
    assert [e.product_id for e in h.run([items("apple")] * CONFIRM)] == ["P001"]
    assert ViewStore(tmp_path / "view.json").load() == {"P001": 1}


def test_a_failing_save_is_logged_once_and_retried(catalog: Catalog, tmp_path: Path) -> None:
    state = tmp_path / "gone"  # the state directory vanished: every save fails
    h = Harness(catalog, state)
    with structlog.testing.capture_logs() as logs:
        events = h.run([items("apple")] * 5 + [items("apple", "milk")] * 5)
        h.tracker.persist()
    assert len(events) == 2  # detection goes on regardless
    assert [e["log_level"] for e in logs if "not saved" in e["event"]] == ["error"]
    state.mkdir()
    with structlog.testing.capture_logs() as logs:
        h.tracker.persist()
    assert [e["event"] for e in logs] == ["basket view saved again"]
    assert ViewStore(state / "view.json").load() == {"P001": 1, "P003": 1}


def test_events_come_in_product_order_and_are_deterministic(
        catalog: Catalog, tmp_path: Path) -> None:
    frames = [items("milk", "apple")] * 5 + [[]] * 10 + [items("apple", "milk", "milk")] * 5
    runs = []
    for n in range(2):
        state = tmp_path / str(n)
        state.mkdir()
        runs.append(Harness(catalog, state).run(frames))
    assert runs[0] == runs[1]
    assert [(e.product_id, e.quantity) for e in runs[0]] == [
        ("P001", 1), ("P003", 1), ("P001", 1), ("P003", 2)]


frame_strategy = st.lists(
    st.tuples(st.sampled_from(["apple", "milk", "hand"]), st.floats(0.0, 1.0)), max_size=4)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(frame_strategy, max_size=60))
def test_properties(catalog: Catalog, tmp_path_factory: pytest.TempPathFactory,
                    frames: list[list[tuple[str, float]]]) -> None:
    h = Harness(catalog, tmp_path_factory.mktemp("p"))
    ids = {"apple": "P001", "milk": "P003"}
    counts = [{pid: sum(1 for label, s in frame if ids.get(label) == pid and s >= 0.4)
               for pid in ids.values()} for frame in frames]
    added = {pid: 0 for pid in ids.values()}
    for t, frame in enumerate(frames):
        for event in h.tracker.observe([det(label, score, n)
                                        for n, (label, score) in enumerate(frame)]):
            added[event.product_id] += event.quantity
            # No event without the higher count held for confirm_frames frames.
            assert t + 1 >= CONFIRM
            window = [c[event.product_id] for c in counts[t + 1 - CONFIRM:t + 1]]
            assert min(window) >= h.tracker.confirmed[event.product_id] >= event.quantity
            assert 0.4 <= event.confidence <= 1.0
            assert event.route == ("basket" if event.confidence >= 0.7 else "pending")
        h.tracker.persist()
    for pid, count in h.tracker.confirmed.items():
        assert added[pid] >= count


@pytest.mark.parametrize("seed", [0, 3])
def test_a_scripted_basket_gives_one_event_per_product_put_in(tmp_path: Path, seed: int) -> None:
    """The synthetic camera's basket script, its visible truth as detections, default config.

    Hands hide products for a few frames (shorter than release_frames) and products are
    taken out and put back: every put must be added exactly once, nothing else.
    """
    script = BasketScript(np.random.default_rng(seed), SIZE)
    tracker = BasketTracker(Catalog.bundled(), BasketConfig(), DetectionConfig(), RoutingConfig(),
                            ViewStore(tmp_path / "view.json"), clock_synced=lambda: True)
    names = {product.name: product.label for product in Catalog.bundled()}
    in_basket: Counter[str] = Counter()
    put: Counter[str] = Counter()
    added: Counter[str] = Counter()
    hand_frames = 0
    for index in range(3_000):
        products, hand = script.step(index)
        hand_frames += hand is not None
        now = Counter(item.label for item in products)
        put.update({label: now[label] - in_basket[label] for label in now
                    if now[label] > in_basket[label]})
        in_basket = now
        seen = [Detection(0, label, 0.9, box) for label, box in visible_truth(products, SIZE, hand)]
        for event in tracker.observe(seen):
            added[names[event.name]] += event.quantity
    assert hand_frames > 0 and sum(put.values()) >= 10  # the script did exercise both
    assert added == put
    by_label = {Catalog.bundled().lookup(label).product_id: n for label, n in in_basket.items()}
    assert tracker.confirmed == by_label
