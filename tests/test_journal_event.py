"""The event tail template: byte for byte what the JSON encoder writes, or the encoder itself."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from journal_support import event

from agent.basket.event import ProductEvent
from agent.delivery import journal_event as je

_events = st.builds(
    ProductEvent,
    event_id=st.text(), route=st.text(), product_id=st.text(), name=st.text(),
    quantity=st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    confidence=st.floats(allow_nan=True, allow_infinity=True),
    detected_at=st.text(), clock_synced=st.booleans())


def test_the_template_covers_the_events_fields() -> None:
    assert je.TEMPLATE_ACTIVE  # a new ProductEvent field needs the template updated


@given(_events)
def test_template_matches_the_encoder(ev: ProductEvent) -> None:
    tail = je.event_tail(ev)
    assert tail == je.encoded_tail(ev)
    assert tail.isascii()


@pytest.mark.parametrize("text", ['quote " backslash \\ slash /', "tab\t nl\n nul\x00 del\x7f",
                                  "\u00e9\u20ac\U0001f34e", "\ud800 lone surrogate", ""])
def test_awkward_strings_are_escaped_as_the_encoder_does(text: str) -> None:
    ev = replace(event(1), name=text, product_id=text, detected_at=text)
    assert je.event_tail(ev) == je.encoded_tail(ev)


@pytest.mark.parametrize("confidence", [0.1, 1e-7, 1e22, -0.0, 5e-324, 0.9999999999999999])
def test_floats_are_written_as_the_encoder_does(confidence: float) -> None:
    ev = replace(event(1), confidence=confidence)
    assert je.event_tail(ev) == je.encoded_tail(ev)
    assert json.loads(je.event_tail(ev))["e"]["confidence"] == confidence


class _Label(str):
    pass


@pytest.mark.parametrize("change", [
    {"confidence": math.nan}, {"confidence": math.inf}, {"confidence": 1},
    {"quantity": True}, {"quantity": 2.0}, {"clock_synced": 1}, {"name": _Label("x")},
])
def test_values_outside_the_template_go_through_the_encoder(change: dict) -> None:
    ev = replace(event(1), **change)
    assert je.event_tail(ev) == je.encoded_tail(ev)
    assert json.loads(je.event_tail(ev))["e"] == pytest.approx(je.event_dict(ev), nan_ok=True)


def test_an_unencodable_value_fails_as_the_encoder_does() -> None:
    with pytest.raises(TypeError):
        je.event_tail(replace(event(1), quantity=object()))
