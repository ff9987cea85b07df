"""The JSON tail of an event record, ``{"e": <the event>}``, built quickly.

Every append writes one, so it is built from a template rather than by
``json.JSONEncoder``: the same bytes, several times cheaper. The template
covers only what it provably renders as the encoder would (compact
separators, ``ensure_ascii``): exact ``str`` fields escaped by the encoder's
own string escaper, an exact ``int`` and ``bool``, and a finite exact
``float`` (the encoder writes ``float.__repr__``). Anything else, and any
change to :class:`ProductEvent`'s fields, goes through the encoder.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from agent.basket.event import ProductEvent
from agent.delivery.journal_records import _ENCODER

EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(ProductEvent))
# The fields the template spells out, in this order; any other field list disables it.
TEMPLATE_FIELDS = ("event_id", "route", "product_id", "name", "quantity", "confidence",
                   "detected_at", "clock_synced")
TEMPLATE_ACTIVE = EVENT_FIELDS == TEMPLATE_FIELDS

_escape = json.encoder.encode_basestring_ascii  # what the encoder itself uses for str
_int_repr = int.__repr__
_float_repr = float.__repr__
_INF = float("inf")


def event_dict(event: ProductEvent) -> dict[str, Any]:
    """``event.to_dict()`` without asdict's deep copy: every field is a plain value."""
    return {name: getattr(event, name) for name in EVENT_FIELDS}


def encoded_tail(event: ProductEvent) -> bytes:
    """The tail by the JSON encoder: the reference the template must match byte for byte."""
    return _ENCODER.encode({"e": event_dict(event)}).encode("ascii")


def event_tail(event: ProductEvent) -> bytes:
    """``encoded_tail(event)``, from the template when the field values allow it."""
    event_id = event.event_id
    route = event.route
    product_id = event.product_id
    name = event.name
    quantity = event.quantity
    confidence = event.confidence
    detected_at = event.detected_at
    synced = event.clock_synced
    if not (TEMPLATE_ACTIVE and type(event_id) is str and type(route) is str
            and type(product_id) is str and type(name) is str and type(quantity) is int
            and type(confidence) is float and -_INF < confidence < _INF
            and type(detected_at) is str and type(synced) is bool):
        return encoded_tail(event)
    return (f'{{"e":{{"event_id":{_escape(event_id)},"route":{_escape(route)},'
            f'"product_id":{_escape(product_id)},"name":{_escape(name)},'
            f'"quantity":{_int_repr(quantity)},"confidence":{_float_repr(confidence)},'
            f'"detected_at":{_escape(detected_at)},'
            f'"clock_synced":{"true" if synced else "false"}}}}}').encode("ascii")
