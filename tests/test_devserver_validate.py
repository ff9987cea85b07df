"""Item validation as a strict backend would do it."""

from __future__ import annotations

from typing import Any

import pytest

from agent.devserver.validate import item_problems

GOOD: dict[str, Any] = {"productId": "P001", "quantity": 1, "confidence": 0.7, "deviceId": "d",
                        "eventId": "e", "detectedAt": "2026-12-04T10:00:00.123Z"}


def test_a_good_basket_item_has_no_problems() -> None:
    assert item_problems("basket", GOOD) == []
    assert item_problems("pending", {**GOOD, "name": "Apples"}) == []
    assert item_problems("basket", {**GOOD, "confidence": 1}) == []


@pytest.mark.parametrize(("change", "problem"), [
    ({"productId": ""}, "productId must be a non-empty string"),
    ({"deviceId": None}, "deviceId must be a non-empty string"),
    ({"eventId": "x" * 201}, "eventId is longer than 200 characters"),
    ({"quantity": 0}, "quantity must be a whole number of at least 1"),
    ({"quantity": 1.5}, "quantity must be a whole number of at least 1"),
    ({"quantity": True}, "quantity must be a whole number of at least 1"),
    ({"confidence": -0.1}, "confidence must be a number from 0 to 1"),
    ({"confidence": "0.5"}, "confidence must be a number from 0 to 1"),
    ({"confidence": False}, "confidence must be a number from 0 to 1"),
    ({"detectedAt": "yesterday"}, "detectedAt must be an ISO-8601 time"),
    ({"detectedAt": "2026-12-04T10:00:00"}, "detectedAt must carry a time zone (e.g. Z)"),
])
def test_each_problem_is_named(change: dict[str, Any], problem: str) -> None:
    assert item_problems("basket", {**GOOD, **change}) == [problem]


def test_pending_items_need_a_name_and_bodies_must_be_objects() -> None:
    assert item_problems("pending", GOOD) == ["name must be a non-empty string"]
    assert item_problems("basket", [GOOD]) == ["body must be a JSON object"]
