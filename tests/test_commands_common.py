"""The argparse number types shared by commands: bad values exit 2 with one line."""

from __future__ import annotations

import argparse

import pytest

from agent.commands.common import non_negative_float, positive_float, positive_int


@pytest.mark.parametrize(("parse", "text", "value"), [
    (positive_int, "3", 3), (positive_float, "0.5", 0.5), (non_negative_float, "0", 0.0),
    (non_negative_float, "0.00", 0.0), (non_negative_float, "-0", 0.0),
    (non_negative_float, "2.5", 2.5),
])
def test_good_values(parse, text: str, value: float) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(("parse", "text", "message"), [
    (positive_int, "0", "must be at least 1"), (positive_int, "x", "not a whole number"),
    (positive_float, "0", "must be a positive number"), (positive_float, "abc", "not a number"),
    (positive_float, "inf", "not a finite number"), (positive_float, "nan", "not a finite number"),
    (non_negative_float, "-1", "must not be negative"),
])
def test_bad_values(parse, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)
