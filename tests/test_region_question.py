"""A question about a region: how each generation is told the region, and how a person writes it.

Tables: the model's text per family (`grounding.region_prompt`), read back to the same pixels by
`grounding.parse` within 1 px, Qwen2.5-VL's pixels on pictures the model saw at another size
included; the readable form a person types and sees (`demo.record.region`); the region in the
model's messages (`to_model_messages`).
"""

from __future__ import annotations

import pytest
from PIL import Image

from demo.record.conversation import Attachment, Conversation, Turn, VisionCost, to_model_messages
from demo.record.region import Region, check_region, model_text, readable, split_region, with_question
from grounding import parse
from grounding.generations import FAMILIES
from grounding.region_prompt import clean_label, model_box, region_question, region_text

CAT = (81, 24, 361, 294)  # the cat's face on chelsea.png (451×300), in its pixels

REGION_TEXT = [
    # Qwen-VL: <ref>/<box> in 0-1000 of the picture (81/451*1000 = 179.6 -> 180, 294/300*1000 = 980).
    ("qwen-vl", (451, 300), None, CAT, "the cat's face", "<ref>the cat's face</ref><box>(180,80),(800,980)</box>"),
    # Qwen-VL without a label: the bare <box>, as in its own region-question data (Qwen-VL#159).
    ("qwen-vl", (451, 300), None, CAT, "", "<box>(180,80),(800,980)</box>"),
    # Qwen2-VL: its special tokens, the same 0-1000 numbers.
    (
        "qwen2-vl", (451, 300), None, CAT, "the cat's face",
        "<|object_ref_start|>the cat's face<|object_ref_end|><|box_start|>(180,80),(800,980)<|box_end|>",
    ),
    # Qwen2-VL without a label: the box tokens alone.
    ("qwen2-vl", (451, 300), None, CAT, "", "<|box_start|>(180,80),(800,980)<|box_end|>"),
    # Qwen2.5-VL: JSON in pixels of the 448×308 picture the model saw (81*448/451 = 80.5 -> 80, 24*308/300 = 24.6 -> 25).
    ("qwen2.5-vl", (451, 300), (448, 308), CAT, "the cat's face", '{"bbox_2d": [80, 25, 359, 302], "label": "the cat\'s face"}'),
    # Qwen2.5-VL on a photo it saw at half size: its numbers are half the picture's pixels.
    ("qwen2.5-vl", (1280, 852), (644, 420), (100, 200, 700, 800), "", '{"bbox_2d": [50, 99, 352, 394]}'),
    # Qwen3-VL: the same JSON, 0-1000 of the picture whatever size the model saw it at.
    ("qwen3-vl", (451, 300), (448, 320), CAT, "", '{"bbox_2d": [180, 80, 800, 980]}'),
    # Qwen3.5: as Qwen3-VL, a CJK label kept as written.
    ("qwen3.5", (451, 300), (448, 320), CAT, "猫的脸", '{"bbox_2d": [180, 80, 800, 980], "label": "猫的脸"}'),
    # Qwen4-Exp: Qwen3.5's 0-1000.
    ("qwen4-exp", (1000, 500), None, (0, 0, 1000, 500), "", '{"bbox_2d": [0, 0, 1000, 1000]}'),
    # A label cannot write a marker, a quote or a line: those characters become spaces.
    ("qwen2-vl", (1000, 1000), None, (10, 10, 20, 20), 'a "b"\n<|box_end|>', "<|object_ref_start|>a b box_end<|object_ref_end|><|box_start|>(10,10),(20,20)<|box_end|>"),
    # A box past the picture's edge is clipped to the space.
    ("qwen3-vl", (200, 100), None, (-10, 50, 260, 100), "", '{"bbox_2d": [0, 500, 1000, 1000]}'),
    # A box thinner than a unit keeps a side of one unit (never an empty box).
    ("qwen2-vl", (4000, 4000), None, (100, 100, 101, 101), "", "<|box_start|>(25,25),(26,26)<|box_end|>"),
]


@pytest.mark.parametrize("family, image_wh, input_wh, box, label, expected", REGION_TEXT)
def test_each_generation_is_told_the_region_in_its_own_format(family, image_wh, input_wh, box, label, expected):
    assert region_text(family, model_box(box, image_wh, input_wh, family), label) == expected


def test_the_question_names_its_picture_before_the_region():
    text = region_question("qwen2-vl", 2, CAT, (451, 300), None, "What is this?")
    assert text == "About this region of Picture 2: <|box_start|>(180,80),(800,980)<|box_end|>\nWhat is this?"


def test_qwen25_needs_the_size_the_model_saw():
    with pytest.raises(ValueError, match="input_wh"):
        model_box(CAT, (451, 300), None, "qwen2.5-vl")


# Pictures the model sees at another size than they were sent (the processors' smart_resize), and
# boxes from corner to corner: the model's numbers read back by grounding.parse land within 1 px.
PICTURES = [((451, 300), (448, 308)), ((1280, 853), (1288, 854)), ((640, 480), (336, 252)), ((1999, 1000), (1792, 896))]
BOXES = [CAT, (0, 0, 5, 5), (10, 20, 440, 290), (1, 1, 450, 299)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("picture, seen", PICTURES)
def test_the_models_numbers_map_back_to_the_same_pixels(family, picture, seen):
    other = ((300, 200), (308, 196))  # Picture 1: the region is on Picture 2, which the question names
    for box in BOXES:
        text = region_question(family, 2, box, picture, seen, "What is this?", "thing")
        found = parse(text, family, [other[0], picture], [other[1], seen])
        assert len(found) == 1 and found[0].image == 2, text
        # Half a unit of the space, in pixels: 1 px or less for every picture here.
        unit = max(picture[0] / seen[0], picture[1] / seen[1]) / 2 if family == "qwen2.5-vl" else max(picture) / 2000
        assert unit <= 1
        assert all(abs(a - b) <= max(unit, 0.5) + 1e-9 for a, b in zip(found[0].bbox, box, strict=True)), (text, found[0].bbox)


READABLE = [
    # What "Ask about this box" writes: read back into the region and the question.
    ("About Picture 1 (120, 40)–(300, 220): what is this?", Region(1, (120, 40, 300, 220)), "what is this?"),
    # A label, quoted, before the picture.
    ('About "the cat" in Picture 2 (1, 2)–(3, 4): and this?', Region(2, (1, 2, 3, 4), "the cat"), "and this?"),
    # Typed by hand: lower case, a hyphen, no spaces, "px", corners in the other order.
    ("about picture 3 (300,220)-(120,40) px: why?", Region(3, (120, 40, 300, 220)), "why?"),
    # Nothing after the colon: the question is empty (the handlers refuse it with a sentence).
    ("About Picture 1 (1, 1)–(2, 2):", Region(1, (1, 1, 2, 2)), ""),
    # Not at the start: words, not a region.
    ("What about Picture 1 (1, 1)–(2, 2): this?", None, "What about Picture 1 (1, 1)–(2, 2): this?"),
    # No colon: words.
    ("About Picture 1 (1, 1)–(2, 2) is a cat", None, "About Picture 1 (1, 1)–(2, 2) is a cat"),
    # Only one corner: words.
    ("About Picture 1 (1, 1): hm", None, "About Picture 1 (1, 1): hm"),
]


@pytest.mark.parametrize("text, region, rest", READABLE)
def test_a_person_writes_and_reads_the_region_readably(text, region, rest):
    assert split_region(text) == (region, rest)


def test_the_readable_form_reads_back_as_written():
    for region in (Region(1, (120, 40, 300, 220)), Region(12, (0, 0, 9999, 1), "a dog, running")):
        assert split_region(with_question(region, "why?")) == (region, "why?")
    assert readable(Region(1, (120, 40, 300, 220))) == "About Picture 1 (120, 40)–(300, 220)"
    assert clean_label(' "x" <y> ') == "x y"


def test_a_region_must_lie_inside_a_picture_of_the_conversation():
    sizes = [(451, 300), (640, 480)]
    check_region(Region(2, (0, 0, 640, 480)), sizes)  # the whole picture
    with pytest.raises(ValueError, match="no such picture"):
        check_region(Region(3, (0, 0, 1, 1)), sizes)
    with pytest.raises(ValueError, match="not a box inside Picture 1, which is 451×300 px"):
        check_region(Region(1, (0, 0, 452, 10)), sizes)


def picture(name: str, size: tuple[int, int], seen: tuple[int, int] | None = None) -> Attachment:
    attachment = Attachment(path=f"/up/{name}", image=Image.new("RGB", size), name=name)
    attachment.cost = VisionCost(seen, 1) if seen else None
    return attachment


def test_the_model_messages_hold_the_region_in_the_familys_format():
    conversation = Conversation(
        [
            Turn("look", [picture("a.png", (451, 300), (448, 308))], answer="A cat.", status="done"),
            Turn("what is this?", [picture("b.png", (640, 480), (336, 252))], region=Region(1, CAT, "cat"), status="waiting"),
        ]
    )

    def question(family: str, input_sizes=None) -> str:
        messages = to_model_messages(conversation, "", family, input_sizes)
        return messages[-1]["content"][-1]["text"]

    assert question("qwen2-vl") == (
        "About this region of Picture 1: <|object_ref_start|>cat<|object_ref_end|><|box_start|>(180,80),(800,980)<|box_end|>\nwhat is this?"
    )
    # Qwen2.5-VL: the pixels of the picture as the model sees it in this prompt (given), else as it saw it last.
    assert question("qwen2.5-vl", [(224, 154), (336, 252)]).startswith('About this region of Picture 1: {"bbox_2d": [40, 12, 179, 151]')
    assert question("qwen2.5-vl").startswith('About this region of Picture 1: {"bbox_2d": [80, 25, 359, 302]')
    assert question("qwen3-vl").startswith('About this region of Picture 1: {"bbox_2d": [180, 80, 800, 980], "label": "cat"}')
    # Without a family (a caller that does not say): the readable form, never a guess at a format.
    assert question("") == 'About "cat" in Picture 1 (81, 24)–(361, 294): what is this?'
    assert model_text(None, "plain", "qwen2-vl", (1, 1), None) == "plain"
