"""Label tags on crowded pictures: never over one another, beside their box, in distinct colours."""

from __future__ import annotations

import importlib
import itertools

import pytest
from PIL import Image

from grounding import PALETTE, Detection, draw, label_color, label_colors
from grounding.tag_layout import GAP, place_tags

drawing = importlib.import_module("grounding.draw")  # the module: `grounding.draw` is also the function
W, H = 520, 200


def box(x1, y1, x2, y2, label: str) -> Detection:
    return Detection(label=label, image=1, bbox=(x1, y1, x2, y2))


def point(x, y, label: str) -> Detection:
    return Detection(label=label, image=1, point=(x, y))


CROWDS = [
    # thirty boxes on the same spot (a model repeating itself)
    pytest.param([box(100, 80, 200, 150, f"dup {i}") for i in range(30)], id="thirty-on-one-spot"),
    # an OCR page: a 6×8 grid of small adjacent word boxes, each label longer than its box
    pytest.param([box(20 + 80 * c, 10 + 22 * r, 95 + 80 * c, 30 + 22 * r, f"word {r}-{c}") for r in range(8) for c in range(6)],
                 id="ocr-grid"),
    # boxes along the top edge: no room above any of them
    pytest.param([box(10 + 60 * i, 0, 60 + 60 * i, 60, f"top {i}") for i in range(8)], id="top-edge-row"),
    # nested boxes sharing a top-left corner
    pytest.param([box(50, 50, 50 + 40 * i, 50 + 15 * i, f"nested {i}") for i in range(1, 9)], id="nested-same-corner"),
    # a cluster of clicks, an agent tapping around one button
    pytest.param([point(300 + 4 * i, 100 + 3 * i, f"click {i}") for i in range(10)], id="clustered-points"),
    # long labels on small boxes at the right edge (tags pushed inside the picture)
    pytest.param([box(480, 20 + 30 * i, 519, 45 + 30 * i, f"a very long label number {i} here") for i in range(6)],
                 id="long-labels-right-edge"),
]


def overlap(a, b) -> bool:
    return a[0] < b[2] + GAP and b[0] < a[2] + GAP and a[1] < b[3] + GAP and b[1] < a[3] + GAP


@pytest.mark.parametrize("detections", CROWDS)
def test_tags_drawn_on_a_crowded_picture_never_cover_each_other(detections, monkeypatch):
    placed: list = []

    def spy(*args):
        placed.extend(rects := place_tags(*args))
        return rects

    monkeypatch.setattr(drawing, "place_tags", spy)
    out = draw(Image.new("RGB", (W, H), (128, 128, 128)), detections, fit=(W, H))
    shown = [r for r in placed if r is not None]
    assert len(placed) == len(detections) and len(shown) >= min(len(detections), 6)  # most find room
    for a, b in itertools.combinations(shown, 2):
        assert not overlap(a, b), (a, b)
    colors = label_colors(d.label for d in detections)
    for d, rect in zip(detections, placed, strict=True):
        if rect is not None:
            x1, y1, x2, y2 = rect
            assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
            assert out.getpixel((x1, y1)) == colors[d.label]  # the tag's own corner, in its label's colour


WISHES = [
    # (sizes, wishes, expected): each row one decision of place_tags on a 100×100 picture
    pytest.param([(30, 10)], [[(10, 40), (10, 50)]], [(10, 40, 40, 50)], id="first-wish-when-free"),
    pytest.param([(30, 10), (30, 10)], [[(10, 40)], [(10, 40), (10, 60)]], [(10, 40, 40, 50), (10, 60, 40, 70)],
                 id="taken-wish-gives-the-next"),
    pytest.param([(30, 10), (30, 10)], [[(10, 40)], [(10, 40)]], [(10, 40, 40, 50), (10, 29, 40, 39)],
                 id="no-free-wish-shifted-to-the-nearest-free-place"),  # just over the first, GAP apart (up first)
    pytest.param([(30, 10)], [[(10, -5), (10, 20)]], [(10, 20, 40, 30)], id="a-wish-inside-beats-one-moved-inside"),
    pytest.param([(30, 10)], [[(90, -5)]], [(70, 0, 100, 10)], id="moved-inside-when-no-wish-fits"),
    pytest.param([(130, 10)], [[(0, 0)]], [None], id="wider-than-the-picture-left-out"),
    pytest.param([(30, 10)] * 12, [[(10, 40)]] * 12, [(10, y, 40, y + 10) for y in (40, 29, 51, 18, 62, 7, 73, 84)]
                 + [None] * 4, id="no-room-within-four-heights-left-out"),  # up to the top, down to 4 heights
]


@pytest.mark.parametrize(("sizes", "wishes", "expected"), WISHES)
def test_place_tags(sizes, wishes, expected):
    assert place_tags(sizes, wishes, (100, 100)) == expected


def test_a_box_keeps_its_tag_above_it_when_there_is_room(monkeypatch):
    placed: list = []
    monkeypatch.setattr(drawing, "place_tags", lambda *args: placed.extend(place_tags(*args)) or placed)
    draw(Image.new("RGB", (200, 100)), [box(50, 60, 150, 95, "cat")])
    ((x1, y1, x2, y2),) = placed
    assert (x1, y2) == (50, 60)  # its bottom on the box's top edge, on its left edge


COLOURS = [
    # (labels, why): distinct labels of one drawing get distinct colours while the palette lasts
    pytest.param(["the cup", "the spoon"], id="crc-collision"),  # both yellow by label_color alone
    pytest.param([f"thing {i}" for i in range(len(PALETTE))], id="a-whole-palette"),
    pytest.param(["cat", "cat", "dog", "cat"], id="repeats-keep-one-colour"),
]


@pytest.mark.parametrize("labels", COLOURS)
def test_distinct_labels_get_distinct_colours(labels):
    colors = label_colors(labels)
    assert list(colors) == list(dict.fromkeys(labels))
    assert len(set(colors.values())) == len(colors)
    assert colors[labels[0]] == label_color(labels[0])  # the first keeps its own colour everywhere


def test_the_cup_and_the_spoon_collide_without_it():
    assert label_color("the cup") == label_color("the spoon")  # why label_colors exists
