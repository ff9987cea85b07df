"""Frame -> input tensor: resize, letterbox, quantization; boxes back to the frame."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detect.preprocess import (
    LETTERBOX_FILL,
    InputSpec,
    Placement,
    as_rgb,
    fit,
    input_table,
    quantized_range,
    to_input,
)


def test_same_size_is_untouched():
    image = np.arange(32 * 16 * 3, dtype=np.uint8).reshape(16, 32, 3)
    out, placement = fit(image, 32, 16, "letterbox")
    assert out is image and placement == Placement()


def test_stretch_fills_whole_input():
    image = np.full((240, 320, 3), 200, np.uint8)
    out, placement = fit(image, 64, 64, "stretch")
    assert out.shape == (64, 64, 3) and int(out.min()) == 200
    assert placement == Placement()


def test_letterbox_pads_and_maps_boxes_back():
    image = np.full((240, 320, 3), 200, np.uint8)
    out, placement = fit(image, 64, 64, "letterbox")
    assert out.shape == (64, 64, 3)
    # 320x240 -> 64x48 centred: 8 rows of padding above and below.
    assert (out[:8] == LETTERBOX_FILL).all() and (out[-8:] == LETTERBOX_FILL).all()
    assert (out[8:56] == 200).all()
    assert placement == Placement(top=8 / 64, left=0.0, height=48 / 64, width=1.0)
    # A box covering the image area in the input covers the whole frame.
    back = placement.to_frame(np.array([[8 / 64, 0.0, 56 / 64, 1.0], [0.25, 0.5, 0.5, 0.75]]))
    np.testing.assert_allclose(back[0], [0, 0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(back[1], [(0.25 - 0.125) / 0.75, 0.5, (0.5 - 0.125) / 0.75, 0.75],
                               atol=1e-6)


def test_as_rgb_accepts_gray_and_rgba_rejects_others():
    assert as_rgb(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 3] = 255
    assert as_rgb(rgba).shape == (4, 5, 3) and int(as_rgb(rgba).max()) == 0
    with pytest.raises(ValueError, match="uint8"):
        as_rgb(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        as_rgb(np.zeros((4, 5, 2), np.uint8))


PIXELS = np.array([[[0, 128, 255]]], dtype=np.uint8)


def test_float_input_uses_the_decoder_range():
    spec = InputSpec(0, 1, 1, np.dtype(np.float32))
    np.testing.assert_allclose(to_input(PIXELS, spec, (0.0, 1.0))[0, 0, 0], [0, 128 / 255, 1])
    np.testing.assert_allclose(to_input(PIXELS, spec, (-1.0, 1.0))[0, 0, 0],
                               [-1, 128 / 127.5 - 1, 1], atol=1e-6)


def test_uint8_unit_range_is_identity():
    spec = InputSpec(0, 1, 1, np.dtype(np.uint8), scale=1 / 255, zero_point=0)
    assert quantized_range(spec) == (0.0, 1.0)
    assert to_input(PIXELS, spec, (-1.0, 1.0)).tolist() == [[[[0, 128, 255]]]]


def test_int8_symmetric_range():
    # MobileNet-style [-1, 1] input quantized to int8: scale 1/128, zero point 0.
    spec = InputSpec(0, 1, 1, np.dtype(np.int8), scale=1 / 128, zero_point=0)
    assert quantized_range(spec) == (-1.0, 1.0)
    out = to_input(PIXELS, spec, (0.0, 1.0))
    assert out.dtype == np.int8
    assert out.tolist() == [[[[-128, 1, 127]]]]  # 128 -> 0.0039 -> 0.50 -> 1


def test_int8_unit_range_from_calibration_is_snapped():
    # Calibrated on [0.004, 0.996]: close to [0, 1], so pixel 255 maps to 1.0 and clips.
    spec = InputSpec(0, 1, 1, np.dtype(np.int8), scale=0.992 / 255, zero_point=-129)
    assert quantized_range(spec) == (0.0, 1.0)
    out = to_input(PIXELS, spec, (-1.0, 1.0))
    expected = np.clip(np.floor(np.array([0, 128, 255]) / 255 / spec.scale - 129 + 0.5), -128, 127)
    assert out[0, 0, 0].tolist() == expected.astype(int).tolist()


def test_quantized_without_parameters():
    u8 = InputSpec(0, 1, 1, np.dtype(np.uint8))
    i8 = InputSpec(0, 1, 1, np.dtype(np.int8))
    assert to_input(PIXELS, u8, (0.0, 1.0)).tolist() == [[[[0, 128, 255]]]]
    assert to_input(PIXELS, i8, (0.0, 1.0)).tolist() == [[[[-128, 0, 127]]]]


@pytest.mark.parametrize("spec,float_range", [
    (InputSpec(0, 1, 1, np.dtype(np.uint8), scale=1 / 127.5, zero_point=127), (-1.0, 1.0)),
    (InputSpec(0, 1, 1, np.dtype(np.int8), scale=1 / 255, zero_point=-128), (0.0, 1.0)),
    (InputSpec(0, 1, 1, np.dtype(np.float32)), (-1.0, 1.0)),
])
def test_input_table_matches_to_input(spec, float_range):
    table = input_table(spec, float_range)
    assert table.shape == (256,) and table.dtype == spec.dtype
    image = np.random.default_rng(5).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.take(table, image)[None], to_input(image, spec, float_range))


def test_half_step_zero_point_keeps_pixels_apart():
    # The demo model's input: uint8, scale 1/127.5, zero point 127 ([-1, 1] calibrated).
    spec = InputSpec(0, 1, 1, np.dtype(np.uint8), scale=1 / 127.5, zero_point=127)
    table = input_table(spec, (-1.0, 1.0))
    assert table.tolist() == list(range(256))


@settings(max_examples=40, deadline=None)
@given(frame_w=st.integers(8, 400), frame_h=st.integers(8, 400),
       in_w=st.integers(8, 320), in_h=st.integers(8, 320),
       box=st.tuples(*[st.floats(0.0, 1.0, allow_nan=False)] * 4))
def test_letterbox_placement_inverts(frame_w, frame_h, in_w, in_h, box):
    image = np.zeros((frame_h, frame_w, 3), np.uint8)
    out, p = fit(image, in_w, in_h, "letterbox")
    assert out.shape == (in_h, in_w, 3)
    assert 0 <= p.top and p.top + p.height <= 1 + 1e-9
    assert 0 <= p.left and p.left + p.width <= 1 + 1e-9
    y0, y1 = sorted(box[:2])
    x0, x1 = sorted(box[2:])
    in_input = np.array([[p.top + y0 * p.height, p.left + x0 * p.width,
                          p.top + y1 * p.height, p.left + x1 * p.width]])
    np.testing.assert_allclose(p.to_frame(in_input)[0], [y0, x0, y1, x1], atol=1e-6)
