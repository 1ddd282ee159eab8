"""Frame geometry (tier 1): shorter-side resize, centre crop, any aspect, the swscale path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import preprocess
from transforms.preprocess import FrameSpec, centre_crop, resize_dims


def test_frame_spec_validates():
    assert FrameSpec(224).shorter == 224
    assert FrameSpec(224, resize_shorter=256).shorter == 256
    with pytest.raises(ValueError, match="size must be >= 1"):
        FrameSpec(0)
    with pytest.raises(ValueError, match="crop must fit"):
        FrameSpec(224, resize_shorter=200)


@pytest.mark.parametrize(
    "size, spec, expected",
    [
        ((340, 256), FrameSpec(224), (298, 224)),  # 297.5 rounds to even
        ((340, 256), FrameSpec(224, 256), (340, 256)),  # already there: no resize
        ((1920, 1080), FrameSpec(224, 256), (455, 256)),
        ((144, 256), FrameSpec(172), (172, 306)),  # portrait
        ((171, 97), FrameSpec(224), (395, 224)),  # odd sizes, upscaled
        ((640, 64), FrameSpec(224), (2240, 224)),  # 10:1
        ((1, 1), FrameSpec(224), (224, 224)),
        ((400, 400), FrameSpec(172), (172, 172)),
    ],
)
def test_resize_dims(size, spec, expected):
    assert resize_dims(*size, spec) == expected


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(min_value=1, max_value=4000),
    height=st.integers(min_value=1, max_value=4000),
    crop=st.integers(min_value=1, max_value=320),
    extra=st.integers(min_value=0, max_value=64),
)
def test_resize_dims_keep_the_aspect_and_always_fit_the_crop(width, height, crop, extra):
    spec = FrameSpec(crop, crop + extra)
    new_w, new_h = resize_dims(width, height, spec)
    assert min(new_w, new_h) == spec.shorter
    assert new_w >= crop and new_h >= crop
    # The longer side is the aspect-preserving length, rounded to the nearest pixel.
    if width <= height:
        assert abs(new_h - height * spec.shorter / width) <= 0.5 + 1e-9
    else:
        assert abs(new_w - width * spec.shorter / height) <= 0.5 + 1e-9


def test_centre_crop_takes_the_middle_as_a_fresh_array():
    image = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    out = centre_crop(image, 3)
    np.testing.assert_array_equal(out, image[1:4, 2:5])
    assert out.flags.c_contiguous and not np.shares_memory(out, image)
    with pytest.raises(ValueError, match="cannot crop 6x6 from 7x5"):
        centre_crop(image, 6)


@pytest.mark.parametrize("shape", [(64, 640), (640, 64), (1, 1), (97, 171), (256, 340), (1, 500)])
def test_any_aspect_gives_the_square(shape):
    spec = FrameSpec(32)
    height, width = shape
    image = np.zeros((height, width, 3), np.uint8)
    # A one-pixel cross through the middle must survive even an 8x shrink (averaged,
    # not skipped) and stay in the crop's centre.
    image[height // 2, :] = 255
    image[:, width // 2] = 255
    out = preprocess(image, spec)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # The cross is in the middle rows/columns of the crop, and nowhere near the corners.
    assert out[14:18, :].max() > 0 and out[:, 14:18].max() > 0
    if min(shape) > 1:  # (a one-pixel side is all cross)
        assert out[:8, :8].max() == 0 and out[-8:, -8:].max() == 0


def test_flat_frames_stay_flat_and_colour_order_is_kept():
    image = np.empty((48, 64, 3), np.uint8)
    image[:] = (200, 100, 30)  # RGB in, the same RGB out
    out = preprocess(image, FrameSpec(16, 20))
    assert out.shape == (16, 16, 3) and (out == (200, 100, 30)).all()
    one_pixel = np.full((1, 1, 3), 77, np.uint8)
    assert (preprocess(one_pixel, FrameSpec(8)) == 77).all()


def test_a_frame_without_pixels_is_refused():
    with pytest.raises(ValueError, match="frame has no pixels: 0x5"):
        resize_dims(0, 5, FrameSpec(4))
