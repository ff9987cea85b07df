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


def test_model_flag_names_the_one_model() -> None:
    from agent.commands.common import flag_layer
    from agent.config import load_config

    args = argparse.Namespace(model="/m/x_edgetpu.tflite", device="auto", camera=None)
    layer = flag_layer(args)
    assert layer == {"model": {"path": "/m/x_edgetpu.tflite", "edgetpu_path": "/m/x_edgetpu.tflite",
                               "device": "auto"}}
    model = load_config(None, layer, env={}).model
    assert model.path == model.edgetpu_path == "/m/x_edgetpu.tflite"
    assert load_config(None, flag_layer(argparse.Namespace(model=None)), env={}).model.path == ""
