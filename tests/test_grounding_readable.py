"""Table-driven tests of grounding.readable: groundings as short notes, partial answers cleaned."""

from __future__ import annotations

import pytest

from grounding import parse, readable

TWO = [(1000, 1000), (1000, 1000)]

CASES = [
    # --- groundings become notes ---
    pytest.param("qwen2-vl", "<|object_ref_start|>the man<|object_ref_end|><|box_start|>(123,235),(324,546)<|box_end|>",
                 "the man [Picture 2]", id="tokens"),  # default: the last of two pictures
    pytest.param("qwen2-vl", "In Picture 1 <|object_ref_start|>the man<|object_ref_end|><|box_start|>(1,2),(3,4)"
                 "<|box_end|> waves.", "In Picture 1 the man [Picture 1] waves.", id="tokens-in-prose"),
    pytest.param("qwen-vl", "<ref> Two apples</ref><box>(302,257),(582,671)</box><box>(603,252),(878,642)</box>",
                 "Two apples [2 boxes on Picture 2]", id="qwen-vl-two-boxes"),
    pytest.param("qwen-vl", "Look<box>(1,2),(3,4)</box>here", "Look [Picture 2] here", id="box-without-ref"),
    pytest.param("qwen2-vl", "<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
                 "<|object_ref_start|>b<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>",
                 "a [Picture 2] b [Picture 2]", id="adjacent-groups-spaced"),
    pytest.param("qwen2-vl", "the man(123,235),(324,546) waves", "the man [Picture 2] waves", id="bare"),
    pytest.param("qwen2.5-vl", '<points x1="10" y1="20" alt="pin">rolling pin</points>', "rolling pin [Picture 2]",
                 id="points-xml"),
    pytest.param("qwen3-vl", 'Picture 2:\n```json\n[\n {"bbox_2d": [1, 2, 3, 4], "label": "cat"},\n'
                 ' {"bbox_2d": [5, 6, 7, 8], "label": "cup"},\n'
                 ' {"bbox_2d": [9, 9, 20, 20], "label": "cup"}\n]\n```\nDone.',
                 "Picture 2:\n[3 boxes on Picture 2: cat, cup ×2]\nDone.", id="json-fenced"),
    pytest.param("qwen3-vl", 'Here: [{"point_2d": [1, 2], "label": "a"}, {"bbox_2d": [1, 2, 3, 4], "label": "b"}] ok',
                 "Here: [1 box and 1 point on Picture 2: a, b] ok", id="json-unfenced-mixed"),
    pytest.param("qwen3-vl", 'Picture 1: {"bbox_2d": [1, 2, 3, 4]} and Picture 2: {"bbox_2d": [1, 2, 3, 4]}',
                 "Picture 1: [1 box on Picture 1] and Picture 2: [1 box on Picture 2]", id="json-single-objects"),
    pytest.param("qwen3-vl", '[{"bbox_2d": [2000, 2000, 3000, 3000], "label": "off"}]', "[1 box: off]",
                 id="json-dropped-box-has-no-picture"),  # the box lies outside the image
    pytest.param("qwen2-vl", "<|object_ref_start|>ghost<|object_ref_end|>"
                 "<|box_start|>(2000,2000),(3000,3000)<|box_end|>",
                 "ghost", id="tokens-dropped-box-keeps-label"),
    # --- other markup goes ---
    pytest.param("qwen2-vl", "Done.<|im_end|><|endoftext|>", "Done.", id="end-markers"),
    pytest.param("qwen2-vl", "<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2)<|box_end|> b", "a b",
                 id="malformed-box-removed"),
    pytest.param("qwen2-vl", "<|object_ref_start|>just a ref<|object_ref_end|>", "just a ref", id="ref-without-box"),
    pytest.param("qwen2.5-vl", "A plain answer with (1,2),(3,4) and ```python\nprint(1)\n```",
                 "A plain answer with (1,2),(3,4) and ```python\nprint(1)\n```", id="plain-text-unchanged"),
    pytest.param("qwen3-vl", '```json\n{"name": "cat"}\n```', '```json\n{"name": "cat"}\n```', id="other-json-kept"),
    pytest.param("qwen3-vl", "<think>Picture 2 has <|box_start|>x</think>Answer",
                 "<think>Picture 2 has x</think>Answer",
                 id="reasoning-kept-less-markers"),
    # --- partial (streaming) answers lose what is half-written ---
    pytest.param("qwen2-vl", "<|object_ref_start|>the man<|object_ref_end|><|box_st", "the man", id="partial-marker"),
    pytest.param("qwen2-vl", "<|object_ref_start|>the man<|object_ref_end|><|box_start|>(123,235),(3",
                 "the man", id="partial-box"),
    pytest.param("qwen2-vl", "<|object_ref_start|>the ma", "the ma", id="partial-ref"),
    pytest.param("qwen2-vl", "The answer <", "The answer ", id="lone-angle-bracket"),
    pytest.param("qwen-vl", "<ref>cat</ref><box>(1,2),(3,4)</box><ref>dog</ref><box>(5,", "cat [Picture 2]dog",
                 id="partial-qwen-vl-box"),
    pytest.param("qwen2.5-vl", 'A pin <points x1="10" y1="2', "A pin ", id="partial-points-tag"),
    pytest.param("qwen2.5-vl", 'A pin <points x1="10" y1="20" alt="pin">rolling', "A pin ", id="partial-points-body"),
    pytest.param("qwen3-vl", 'Sure.\n```json\n[\n  {"bbox_2d": [1, 2', "Sure.\n", id="partial-json-no-entry"),
    pytest.param("qwen3-vl", "Sure.\n```js", "Sure.\n", id="partial-fence"),
    pytest.param("qwen3-vl", 'Sure.\n```json\n[{"bb', "Sure.\n", id="partial-json-key"),
    pytest.param("qwen3-vl", '```json\n[{"bbox_2d": [1,2,3,4], "label": "a"}, {"bbox_2d": [5,6',
                 "[1 box on Picture 2: a]", id="partial-json-list"),
    pytest.param("qwen3-vl", 'Found [{"bbox_2d": [1,2,3,4], "label": "a"}, {"bbox_2d": [5,6',
                 "Found [1 box on Picture 2: a]", id="partial-unfenced-list"),
    pytest.param("qwen3-vl", 'Found {"bbox_2d": [1,2,3', "Found ", id="partial-unfenced-object"),
]


@pytest.mark.parametrize(("family", "text", "expected"), CASES)
def test_readable(family, text, expected):
    sizes = [(1000, 1000), (1000, 1000)]
    detections = parse(text, family, sizes, sizes)
    assert readable(text, family, detections) == expected


# Given the number of pictures (2 here), a grounding naming one that does not exist says so.
MISSING_CASES = [
    pytest.param("qwen2-vl", "In Picture 5 <|object_ref_start|>the man<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>",
                 "In Picture 5 the man [box on Picture 5 — there is no Picture 5]", id="tokens-picture-5"),
    pytest.param("qwen-vl", "Picture 3: <ref>apples</ref><box>(1,2),(3,4)</box><box>(5,6),(7,8)</box>",
                 "Picture 3: apples [2 boxes on Picture 3 — there is no Picture 3]", id="two-boxes-picture-3"),
    pytest.param("qwen3-vl", 'Picture 4: [{"bbox_2d": [1, 2, 3, 4], "label": "cat"}, {"point_2d": [5, 6], "label": "cup"}]',
                 "Picture 4: [1 box and 1 point on Picture 4: cat, cup — there is no Picture 4]", id="json-list-picture-4"),
    pytest.param("qwen3-vl", '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2, 3, 4], '
                 '"label": "sign", "img_idx": 4}}</tool_call>',
                 "[1 box on Picture 5: sign — there is no Picture 5]", id="zoom-img-idx-4"),
    pytest.param("qwen3-vl", 'Image 0: <tool_call>{"name": "mobile_use", "arguments": {"action": "click", '
                 '"coordinate": [10, 20]}}</tool_call>',
                 "Image 0: [click on Picture 0 — there is no Picture 0]", id="agent-click-picture-0"),
    pytest.param("qwen2.5-vl", 'Image 3: <points x1="10" y1="20" alt="pin">pin</points>',
                 "Image 3: pin [point on Picture 3 — there is no Picture 3]", id="point-image-3"),
    pytest.param("qwen3-vl", 'Picture 1: {"bbox_2d": [1, 2, 3, 4]}. Picture 7: {"bbox_2d": [1, 2, 3, 4]}',
                 "Picture 1: [1 box on Picture 1]. Picture 7: [1 box on Picture 7 — there is no Picture 7]",
                 id="one-drawn-one-flagged"),
    pytest.param("qwen2-vl", "<|object_ref_start|>the man<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>",
                 "the man [Picture 2]", id="no-mention-last-picture"),  # nothing named: not flagged
    pytest.param("qwen3-vl", '[{"bbox_2d": [2000, 2000, 3000, 3000], "label": "off"}]', "[1 box: off]",
                 id="dropped-outside-not-flagged"),  # Picture 2 exists; the box is outside it
]


@pytest.mark.parametrize(("family", "text", "expected"), MISSING_CASES)
def test_a_box_on_a_missing_picture_is_flagged(family, text, expected):
    sizes = [(1000, 1000), (1000, 1000)]
    detections = parse(text, family, sizes, sizes)
    assert readable(text, family, detections, pictures=2) == expected


def test_flags_only_when_the_number_of_pictures_is_given():
    text = "In Picture 5 <|object_ref_start|>the man<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
    assert readable(text, "qwen2-vl", []) == "In Picture 5 the man"
    no_pictures = "<|object_ref_start|>the man<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
    assert readable(no_pictures, "qwen2-vl", [], pictures=0) == "the man"  # nothing named, nothing to flag


def test_without_detections_no_picture_numbers():
    text = "<|object_ref_start|>the man<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
    assert readable(text, "qwen2-vl") == "the man"
    assert readable('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]', "qwen3-vl") == "[1 box: a]"


def test_many_labels_are_shortened():
    entries = ", ".join(f'{{"bbox_2d": [1, 2, 3, 4], "label": "thing{i}"}}' for i in range(12))
    text = f"[{entries}]"
    shown = readable(text, "qwen3-vl", parse(text, "qwen3-vl", [(100, 100)]))
    assert shown.startswith("[12 boxes on Picture 1: thing0, thing1,")
    assert shown.endswith("thing7, …]")


def test_unknown_family_raises():
    with pytest.raises(ValueError):
        readable("x", "qwen9")
