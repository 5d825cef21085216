"""demo/media/resize.py: the pure-Python resize rule equals transformers' own, and the token counts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as transformers_smart_resize

from demo.media.resize import smart_resize, visual_tokens
from grounding.generations import GENERATIONS

QWEN2_MAX = 1280 * 28 * 28  # the app's default cap: 1280 visual tokens

# (height, width, factor, min_pixels, max_pixels) -> (height, width)
ROWS = [
    ((28, 28, 28, 3136, QWEN2_MAX), (56, 56)),  # one patch block: raised to min_pixels (56x56)
    ((448, 448, 28, 3136, QWEN2_MAX), (448, 448)),  # already multiples of 28 and within bounds: unchanged
    ((300, 451, 28, 3136, QWEN2_MAX), (308, 448)),  # each side rounded to the nearest multiple of 28
    ((200, 300, 28, 3136, 50176), (168, 252)),  # rounding overshoots max_pixels: scaled down, floored
    ((1080, 1920, 28, 3136, QWEN2_MAX), (728, 1316)),  # full HD capped at 1280 tokens, aspect kept
    ((3000, 4000, 28, 3136, 28 * 28 * 256), (364, 504)),  # a tighter cap (256 tokens)
    ((10, 10, 28, 3136, QWEN2_MAX), (56, 56)),  # tiny image: scaled up to min_pixels
    ((10, 1000, 28, 3136, QWEN2_MAX), (28, 560)),  # a side rounds to 0: the min_pixels branch rescues it
    ((5, 1000, 28, 3136, QWEN2_MAX), (28, 812)),  # aspect ratio exactly 200 is still accepted
    ((100, 20000, 28, 3136, QWEN2_MAX), (56, 14140)),  # very wide, ratio 200: the long side is kept
    ((1080, 1920, 32, 3136, 1280 * 32 * 32), (832, 1504)),  # Qwen3-VL: factor 32, sides multiples of 32
]


@pytest.mark.parametrize(("args", "expected"), ROWS)
def test_table(args, expected):
    assert smart_resize(*args) == expected
    assert transformers_smart_resize(*args) == expected  # the table itself is transformers' behaviour


def test_aspect_ratio_above_200_is_refused_as_transformers_does():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2001, 28, 3136, QWEN2_MAX)
    with pytest.raises(ValueError, match="aspect ratio"):
        transformers_smart_resize(10, 2001, 28, 3136, QWEN2_MAX)


@settings(max_examples=800, deadline=None)
@given(
    height=st.one_of(st.integers(1, 60), st.integers(1, 6000)),  # small sides hit the ratio limit too
    width=st.integers(1, 6000),
    factor_=st.sampled_from([28, 32]),
    min_pixels=st.integers(1, 200_000),
    extra=st.integers(0, 3_000_000),
)
def test_equals_transformers(height, width, factor_, min_pixels, extra):
    max_pixels = min_pixels + extra
    args = (height, width, factor_, min_pixels, max_pixels)
    try:
        expected = transformers_smart_resize(*args)
    except ValueError:
        with pytest.raises(ValueError):
            smart_resize(*args)
        return
    assert smart_resize(*args) == expected


def test_family_geometry():
    assert {g.family: g.resize_factor for g in GENERATIONS} == {
        "qwen-vl": 28,
        "qwen2-vl": 28,
        "qwen2.5-vl": 28,
        "qwen3-vl": 32,  # patch 16, merge 2
        "qwen3.5": 32,  # patch 16, merge 2, like Qwen3-VL
        "qwen4-exp": 32,  # patch 16, merge 2, Qwen3.5's vision tower
    }


@pytest.mark.parametrize(
    ("input_wh", "patch", "merge", "tokens"),
    [
        ((448, 448), 14, 2, 256),  # 32x32 patches, merged 2x2
        ((252, 168), 14, 2, 54),  # 18x12 patches (the README's 451x300 example at the tiny model's bounds)
        ((56, 56), 14, 2, 4),  # the smallest image at the default min_pixels
        ((512, 512), 16, 2, 256),  # Qwen3-VL: 32x32 patches of 16 px
    ],
)
def test_visual_tokens(input_wh, patch, merge, tokens):
    assert visual_tokens(input_wh, patch, merge) == tokens
