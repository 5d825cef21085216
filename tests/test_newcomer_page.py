"""The newcomer's page without a browser: preset labels and placeholders, the page's CSS off and on Spaces."""

from __future__ import annotations

import re

import pytest

from demo.ui import page_css, preset_label
from grounding.generations import FAMILIES, PRESETS, generation, grounding_prompt

PLACEHOLDER = re.compile(r"«[^»]*»")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_preset_marks_at_most_one_placeholder(family):
    for name in PRESETS:
        prompt = grounding_prompt(name, family)
        marks = PLACEHOLDER.findall(prompt)
        assert len(marks) == (0 if name == "Caption with grounding" else 1), (family, name)
        assert prompt.count("«") == prompt.count("»") == len(marks)


@pytest.mark.parametrize("family", FAMILIES)
def test_point_to_is_named_for_what_it_asks(family):
    label = preset_label("Point to", family)
    assert label == ("Point to" if generation(family).has_points else "Box to point at")
    assert all(preset_label(name, family) == name for name in PRESETS if name != "Point to")


def test_share_buttons_are_hidden_off_spaces_only():
    assert 'aria-label="Share"' in page_css(on_spaces=False) and 'aria-label="Share"' not in page_css(on_spaces=True)
