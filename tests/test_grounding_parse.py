"""Table-driven tests of grounding.parse: every format, image assignment, scaling, errors."""

from __future__ import annotations

import pytest

from grounding import Detection, family_from_model_type, find_groundings, parse

SQUARE = [(1000, 1000)]  # relative coordinates come out unchanged
WIDE = [(2000, 1000)]  # relative x doubles
TWO = [(1000, 1000), (2000, 1000)]  # Picture 1 square, Picture 2 wide


def summary(detections: list[Detection]) -> list[tuple]:
    """(label, image, coordinates rounded to 1e-6) for each detection."""
    out = []
    for d in detections:
        coords = d.bbox if d.bbox is not None else d.point
        out.append((d.label, d.image, tuple(round(v, 6) for v in coords)))
    return out


FORMAT_CASES = [
    # --- Qwen-VL <ref>/<box> tags ---
    pytest.param("qwen-vl", "<ref>击掌</ref><box>(536,509),(588,602)</box>", SQUARE,
                 [("击掌", 1, (536, 509, 588, 602))], id="qwen-vl-ref-box"),
    pytest.param("qwen-vl", "<ref> Two apples</ref><box>(302,257),(582,671)</box><box>(603,252),(878,642)</box>",
                 [(1000, 500)], [("Two apples", 1, (302, 128.5, 582, 335.5)), ("Two apples", 1, (603, 126, 878, 321))],
                 id="qwen-vl-two-boxes-one-ref"),  # each box its own Detection, same label, y halved
    pytest.param("qwen-vl", "<ref>sign</ref><quad>(100,100),(200,110),(210,200),(90,190)</quad>", SQUARE,
                 [("sign", 1, (90, 100, 210, 200))], id="qwen-vl-quad"),  # bbox = quad's bounding box
    pytest.param("qwen-vl", "It is here <box>(10,20),(30,40)</box>.", SQUARE,
                 [("", 1, (10, 20, 30, 40))], id="qwen-vl-box-without-ref"),  # no ref: empty label
    pytest.param("qwen-vl", "<ref>cat</ref> sits at <box>(10,20),(30,40)</box>", SQUARE,
                 [("", 1, (10, 20, 30, 40))], id="qwen-vl-prose-between-ref-and-box"),  # not a chain
    pytest.param("qwen-vl", "<ref>cat</ref><box>(1,2),(3,4)</box> and <box>(5,6),(7,8)</box>", SQUARE,
                 [("cat", 1, (1, 2, 3, 4)), ("", 1, (5, 6, 7, 8))], id="qwen-vl-chain-broken-by-words"),
    # --- Qwen2-VL special tokens ---
    pytest.param("qwen2-vl", "<|object_ref_start|>the man<|object_ref_end|><|box_start|>(123,235),(324,546)<|box_end|>",
                 WIDE, [("the man", 1, (246, 235, 648, 546))], id="qwen2-vl-tokens"),
    pytest.param("qwen2-vl", "<|object_ref_start|>cups<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
                 "<|box_start|>(5,6),(7,8)<|box_end|>", SQUARE,
                 [("cups", 1, (1, 2, 3, 4)), ("cups", 1, (5, 6, 7, 8))], id="qwen2-vl-two-boxes-one-ref"),
    pytest.param("qwen2-vl", "<|box_start|>(100,200),(300,400)<|box_end|>", SQUARE,
                 [("", 1, (100, 200, 300, 400))], id="qwen2-vl-box-without-ref"),
    pytest.param("qwen2-vl", "<|object_ref_start|>plate<|object_ref_end|><|quad_start|>(10,10),(90,12),(95,60),(8,55)"
                 "<|quad_end|>", SQUARE, [("plate", 1, (8, 10, 95, 60))], id="qwen2-vl-quad"),
    pytest.param("qwen2-vl", "<ref>mixed</ref><|box_start|>(1,2),(3,4)<|box_end|>", SQUARE,
                 [("mixed", 1, (1, 2, 3, 4))], id="qwen2-vl-mixed-spellings"),  # forgiving
    pytest.param("qwen2-vl", "<|object_ref_start|>a <|object_ref_end|><|box_start|> ( 1 , 2 ) , ( 3 , 4 ) <|box_end|>",
                 SQUARE, [("a", 1, (1, 2, 3, 4))], id="qwen2-vl-spaces-in-box"),
    # --- bare form left by skip_special_tokens=True ---
    pytest.param("qwen2-vl", "the man(123,235),(324,546)", WIDE,
                 [("the man", 1, (246, 235, 648, 546))], id="bare"),
    pytest.param("qwen2-vl", "Found: a dog(1,2),(3,4)(5,6),(7,8), and the cat(9,10),(11,12).", SQUARE,
                 [("a dog", 1, (1, 2, 3, 4)), ("a dog", 1, (5, 6, 7, 8)), ("the cat", 1, (9, 10, 11, 12))],
                 id="bare-chain-shares-label"),  # "and" is not part of the label
    pytest.param("qwen2-vl", "sign(100,100),(200,110),(210,200),(90,190)", SQUARE,
                 [("sign", 1, (90, 100, 210, 200))], id="bare-quad"),
    pytest.param("qwen-vl", "击掌(536,509),(588,602)", SQUARE,
                 [("击掌", 1, (536, 509, 588, 602))], id="bare-qwen-vl-cjk"),
    # fine-tuned Qwen2.5-VL / Qwen3-VL write the tokens too (ms-swift's legacy bbox format): each in its own space
    pytest.param("qwen2.5-vl", "the man(123,235),(324,546)", ([(648, 1092)], [(324, 546)]),
                 [("the man", 1, (246, 470, 648, 1092))], id="bare-qwen2.5-input-pixels"),  # the input is half size
    pytest.param("qwen3-vl", "the man(123,235),(324,546)", WIDE, [("the man", 1, (246, 235, 648, 546))],
                 id="bare-qwen3-relative"),
    pytest.param("qwen3-vl", "Solve for (1,2),(3,4) in the plane.", SQUARE, [],
                 id="bare-after-a-space-not-read-for-qwen3"),  # only qwen-vl / qwen2-vl read it loosely
    # --- Qwen2.5-VL / Qwen3-VL JSON ---
    pytest.param("qwen3-vl", '```json\n[\n  {"bbox_2d": [74, 361, 324, 808], "label": "plate/dish"}\n]\n```', WIDE,
                 [("plate/dish", 1, (148, 361, 648, 808))], id="json-fenced"),
    pytest.param("qwen3-vl", 'Sure! Here they are: [{"bbox_2d": [1, 2, 3, 4], "label": "a"}, '
                 '{"bbox_2d": [5, 6, 7, 8], "label": "b"}] Hope it helps.', SQUARE,
                 [("a", 1, (1, 2, 3, 4)), ("b", 1, (5, 6, 7, 8))], id="json-unfenced-with-prose"),
    pytest.param("qwen3-vl", 'The cake: {"bbox_2d": [10, 20, 30, 40], "label": "cake"}', SQUARE,
                 [("cake", 1, (10, 20, 30, 40))], id="json-single-object"),
    pytest.param("qwen3-vl", '[{"point_2d": [925, 618], "label": "point_1"}]', WIDE,
                 [("point_1", 1, (1850, 618))], id="json-point"),
    pytest.param("qwen3-vl", '[{"label": "cup", "bbox_2d": [1, 2, 3, 4]}]', SQUARE,
                 [("cup", 1, (1, 2, 3, 4))], id="json-label-first"),
    pytest.param("qwen3-vl", '[{"bbox_2d": [1, 2, 3, 4], "text_content": "EXIT"}]', SQUARE,
                 [("EXIT", 1, (1, 2, 3, 4))], id="json-ocr-text-content"),
    pytest.param("qwen3-vl", '[{"bbox_2d": [1, 2, 3, 4]}]', SQUARE, [("", 1, (1, 2, 3, 4))], id="json-no-label"),
    pytest.param("qwen3-vl", "[{'bbox_2d': [1, 2, 3, 4], 'label': 'py',}]", SQUARE,
                 [("py", 1, (1, 2, 3, 4))], id="json-python-quotes-trailing-comma"),
    pytest.param("qwen3-vl", '{"objects": [{"bbox_2d": [1, 2, 3, 4], "label": "in"}]}', SQUARE,
                 [("in", 1, (1, 2, 3, 4))], id="json-nested-in-wrapper"),
    pytest.param("qwen3-vl", '[{"bbox_2d": [1.5, 2.25, 3, 4], "label": "f"}]', SQUARE,
                 [("f", 1, (1.5, 2.25, 3, 4))], id="json-float-values"),
    pytest.param("qwen3-vl", '[{"bbox_2d": [100, 100, 200, 200], "label": "红色的杯子"}]', SQUARE,
                 [("红色的杯子", 1, (100, 100, 200, 200))], id="json-cjk-label"),
    pytest.param("qwen3-vl", '<think>maybe [{"bbox_2d": [1, 2, 3, 4], "label": "draft"}]</think>'
                 '[{"bbox_2d": [5, 6, 7, 8], "label": "final"}]', SQUARE,
                 [("final", 1, (5, 6, 7, 8))], id="json-reasoning-skipped"),
    pytest.param("qwen3-vl", 'Reasoning [{"bbox_2d": [1, 2, 3, 4], "label": "draft"}]</think>\n'
                 '[{"bbox_2d": [5, 6, 7, 8], "label": "final"}]', SQUARE,
                 [("final", 1, (5, 6, 7, 8))], id="json-reasoning-opened-in-prompt"),
    # --- Qwen2.5-VL absolute coordinates ---
    pytest.param("qwen2.5-vl", '```json\n[{"bbox_2d": [266, 140, 532, 280], "label": "right half"}]\n```',
                 ([(1000, 500)], [(532, 280)]), [("right half", 1, (500, 250, 1000, 500))],
                 id="qwen2.5-rescale-non-square"),  # 1000x500 seen as 532x280
    pytest.param("qwen2.5-vl", '{"point_2d": [133, 70], "label": "p"}', ([(1000, 500)], [(532, 280)]),
                 [("p", 1, (250, 125))], id="qwen2.5-point-rescale"),
    pytest.param("qwen2.5-vl", '<points x1="284" y1="305" alt="rolling pin">rolling pin</points>',
                 ([(600, 400)], [(600, 400)]), [("rolling pin", 1, (284, 305))], id="points-xml"),
    pytest.param("qwen2.5-vl", '<points x1="10" y1="20" x2="30" y2="40" x3="50" y3="60" alt="eggs">eggs</points>',
                 ([(1200, 800)], [(600, 400)]), [("eggs", 1, (20, 40)), ("eggs", 1, (60, 80)), ("eggs", 1, (100, 120))],
                 id="points-xml-several-pairs"),  # one point per pair, scaled x2
    pytest.param("qwen2.5-vl", '<points x1="10" y1="20" alt="from alt"></points>', ([(600, 400)], [(600, 400)]),
                 [("from alt", 1, (10, 20))], id="points-xml-alt-as-label"),
    pytest.param("qwen2.5-vl", '<point x="10" y="20" alt="one"/>', ([(600, 400)], [(600, 400)]),
                 [("one", 1, (10, 20))], id="points-xml-single-self-closing"),
    pytest.param("qwen2.5-vl", '<points x1="10" y1="abc" x2="30" y2="40" alt="p">p</points>',
                 ([(600, 400)], [(600, 400)]), [("p", 1, (30, 40))], id="points-xml-non-numeric-pair-dropped"),
    # --- corners, clipping, dropping ---
    pytest.param("qwen3-vl", '[{"bbox_2d": [300, 400, 100, 200], "label": "inv"}]', SQUARE,
                 [("inv", 1, (100, 200, 300, 400))], id="inverted-corners-swapped"),
    pytest.param("qwen2-vl", "<|box_start|>(300,400),(100,200)<|box_end|>", SQUARE,
                 [("", 1, (100, 200, 300, 400))], id="inverted-corners-tokens"),
    pytest.param("qwen3-vl", '[{"bbox_2d": [-50, 900, 500, 1100], "label": "edge"}]', WIDE,
                 [("edge", 1, (0, 900, 1000, 1000))], id="clipped-to-image"),
    pytest.param("qwen2.5-vl", '[{"bbox_2d": [700, 10, 900, 50], "label": "out"}, {"bbox_2d": [1, 2, 3, 4]}]',
                 ([(640, 480)], [(640, 480)]), [("", 1, (1, 2, 3, 4))], id="wholly-outside-dropped"),
    pytest.param("qwen2.5-vl", '[{"bbox_2d": [640, 10, 700, 50], "label": "touching"}]', ([(640, 480)], [(640, 480)]),
                 [], id="zero-area-after-clip-dropped"),  # only its left edge would touch the image
    pytest.param("qwen3-vl", '[{"point_2d": [1001, 5], "label": "out"}, {"point_2d": [1000, 0], "label": "corner"}]',
                 SQUARE, [("corner", 1, (1000, 0))], id="point-outside-dropped-corner-kept"),
    pytest.param("qwen3-vl", '[{"bbox_2d": [1, 2, 3], "label": "short"}, {"bbox_2d": ["1", 2, 3, 4], "label": "str"},'
                 ' {"bbox_2d": [true, 2, 3, 4], "label": "bool"}, {"bbox_2d": [NaN, 2, 3, 4], "label": "nan"},'
                 ' {"bbox_2d": [1e999, 2, 3, 4], "label": "inf"}, {"point_2d": [1, 2, 3], "label": "pt"},'
                 ' {"bbox_2d": [[1, 2, 3]], "label": "nested"}, {"bbox_2d": [1, 2, 3, 4], "label": "ok"}]', SQUARE,
                 [("ok", 1, (1, 2, 3, 4))], id="malformed-json-entries-dropped"),
    pytest.param("qwen2-vl", "<|box_start|>(1,2),(3)<|box_end|><|box_start|>(1,2),(3,4),(5,6)<|box_end|>"
                 "<|box_start|>(a,b),(c,d)<|box_end|><|box_start|>(1,2),(3,4)<|box_end|>", SQUARE,
                 [("", 1, (1, 2, 3, 4))], id="malformed-boxes-dropped"),
    # --- partial answers ---
    pytest.param("qwen3-vl", '[{"bbox_2d": [1,2,3,4], "label": "a"}, {"bbox_2d": [5,6', SQUARE,
                 [("a", 1, (1, 2, 3, 4))], id="truncated-json-mid-array"),
    pytest.param("qwen3-vl", '```json\n[{"bbox_2d": [1,2,3,4], "label": "a"}, {"bbox_2d": [5,6,7,8], "label": "b',
                 SQUARE, [("a", 1, (1, 2, 3, 4))], id="truncated-json-mid-label"),
    pytest.param("qwen3-vl", '[{"bbox_2d": [1,2,3,4], "label": "a"}, {"bbox_2d": [5,6,7,8], "label": "b"', SQUARE,
                 [("a", 1, (1, 2, 3, 4))], id="truncated-json-before-brace"),
    pytest.param("qwen3-vl", '```json\n[\n  {"bbox_2d": [1,', SQUARE, [], id="truncated-json-first-entry"),
    pytest.param("qwen2-vl", "<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
                 "<|object_ref_start|>b<|object_ref_end|><|box_start|>(123,235),(32", SQUARE,
                 [("a", 1, (1, 2, 3, 4))], id="truncated-tokens-mid-box"),
    pytest.param("qwen2-vl", "<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_st", SQUARE,
                 [], id="truncated-tokens-mid-marker"),
    pytest.param("qwen2-vl", "the man(123,235),(3", SQUARE, [], id="truncated-bare"),
    pytest.param("qwen-vl", "<ref>cat</ref><box>(1,2),(3,4)</box><ref>dog</ref><box>(5,6),(7,", SQUARE,
                 [("cat", 1, (1, 2, 3, 4))], id="truncated-qwen-vl-tags"),
    pytest.param("qwen2.5-vl", '<points x1="1" y1="2" alt="a">a</points><points x1="5" y1="6" alt="b">b',
                 ([(600, 400)], [(600, 400)]), [("a", 1, (1, 2))], id="truncated-points-xml"),
    # --- no groundings ---
    pytest.param("qwen2-vl", "A cat sleeps on a sofa.", SQUARE, [], id="plain-text"),
    pytest.param("qwen3-vl", '```json\n{"name": "cat", "count": [1, 2]}\n```', SQUARE, [], id="json-without-keys"),
    pytest.param("qwen2.5-vl", "Solve for (1,2),(3,4) in the plane.", ([(600, 400)], [(600, 400)]), [],
                 id="coordinates-in-prose-qwen2.5"),
    pytest.param("qwen2-vl", "", SQUARE, [], id="empty"),
]


@pytest.mark.parametrize(("family", "text", "sizes", "expected"), FORMAT_CASES)
def test_formats(family, text, sizes, expected):
    image_sizes, input_sizes = sizes if isinstance(sizes, tuple) else (sizes, None)
    assert summary(parse(text, family, image_sizes, input_sizes)) == expected


IMAGE_CASES = [
    pytest.param("qwen3-vl", '[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]', 2, id="default-last-image"),
    pytest.param("qwen3-vl", 'In Picture 1: [{"bbox_2d": [1, 2, 3, 4], "label": "a"}]', 1, id="picture-1"),
    pytest.param("qwen3-vl", 'picture 2 shows [{"bbox_2d": [1, 2, 3, 4]}]', 2, id="lower-case"),
    pytest.param("qwen3-vl", 'IMAGE 1 has [{"bbox_2d": [1, 2, 3, 4]}]', 1, id="image-n-upper-case"),
    pytest.param("qwen3-vl", 'Image #1: {"bbox_2d": [1, 2, 3, 4]}', 1, id="image-hash-n"),
    pytest.param("qwen3-vl", 'Picture1: {"bbox_2d": [1, 2, 3, 4]}', 1, id="no-space"),
    pytest.param("qwen3-vl", '图1中: {"bbox_2d": [1, 2, 3, 4]}', 1, id="chinese-tu-n"),
    pytest.param("qwen3-vl", '图片1里有 {"bbox_2d": [1, 2, 3, 4]}', 1, id="chinese-tupian-n"),
    pytest.param("qwen3-vl", '第1张图: {"bbox_2d": [1, 2, 3, 4]}', 1, id="chinese-di-n-zhang"),
    pytest.param("qwen3-vl", '第一张图片: {"bbox_2d": [1, 2, 3, 4]}', 1, id="chinese-numeral"),
    pytest.param("qwen3-vl", '图一: {"bbox_2d": [1, 2, 3, 4]}', 1, id="chinese-tu-numeral"),
    pytest.param("qwen3-vl", 'Picture 5 then Picture 1: {"bbox_2d": [1, 2, 3, 4]}', 1,
                 id="earlier-missing-picture-overridden"),  # the last mention names Picture 1
    pytest.param("qwen3-vl", 'An image 1024 pixels wide: {"bbox_2d": [1, 2, 3, 4]}', 2,
                 id="big-number-names-no-picture"),  # above 99 (and the count): not a Picture's name
    pytest.param("qwen3-vl", '{"bbox_2d": [1, 2, 3, 4]} is in Picture 1.', 2, id="mention-after-ignored"),
    pytest.param("qwen3-vl", 'Picture 1 vs Picture 2. In Picture 1: {"bbox_2d": [1, 2, 3, 4]}', 1,
                 id="nearest-preceding-wins"),
    pytest.param("qwen2-vl", "<|object_ref_start|>the cat in Picture 1<|object_ref_end|>"
                 "<|box_start|>(1,2),(3,4)<|box_end|>", 1, id="mention-in-ref-label"),
    pytest.param("qwen3-vl", 'image 1.5 times larger: {"bbox_2d": [1, 2, 3, 4]}', 2, id="decimal-not-a-mention"),
    pytest.param("qwen3-vl", '<think>Picture 1?</think>{"bbox_2d": [1, 2, 3, 4]}', 2,
                 id="mention-in-reasoning-ignored"),
]


@pytest.mark.parametrize(("family", "text", "image"), IMAGE_CASES)
def test_image_assignment(family, text, image):
    (detection,) = parse(text, family, TWO)
    assert detection.image == image


# A grounding naming a picture that does not exist (of TWO) is left out, never drawn on another one;
# readable(..., pictures=2) flags it (tests/test_grounding_readable.py).
MISSING_PICTURE_CASES = [
    pytest.param("qwen3-vl", 'Picture 1 then Picture 5: {"bbox_2d": [1, 2, 3, 4]}', id="last-mention-names-5"),
    pytest.param("qwen3-vl", 'Picture 0 and Picture 9: {"bbox_2d": [1, 2, 3, 4]}', id="mentions-0-and-9"),
    pytest.param("qwen3-vl", 'In Picture 1: <tool_call>{"name": "image_zoom_in_tool", "arguments": '
                 '{"bbox_2d": [1, 2, 3, 4], "img_idx": 2}}</tool_call>', id="img-idx-2-of-two"),  # Picture 3
    pytest.param("qwen2-vl", "在图5中<|object_ref_start|>猫<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>",
                 id="chinese-mention-tu-5"),
    pytest.param("qwen2.5-vl", 'Image 3: <points x1="10" y1="20" alt="pin">pin</points>', id="point-image-3"),
    pytest.param("qwen3-vl", 'Picture 99: {"bbox_2d": [1, 2, 3, 4]}', id="99-still-a-name"),
]


@pytest.mark.parametrize(("family", "text"), MISSING_PICTURE_CASES)
def test_a_missing_picture_is_never_replaced_by_another(family, text):
    assert parse(text, family, TWO, TWO) == []
    assert len(parse(text, family, TWO * 50, TWO * 50)) == 1  # with 100 pictures each is there


def test_boxes_split_across_pictures():
    text = ("In Picture 1 <|object_ref_start|>a cat<|object_ref_end|><|box_start|>(100,100),(200,200)<|box_end|>; "
            "in Picture 2 <|object_ref_start|>a dog<|object_ref_end|><|box_start|>(100,100),(200,200)<|box_end|>")
    assert summary(parse(text, "qwen2-vl", TWO)) == [
        ("a cat", 1, (100, 100, 200, 200)),  # square Picture 1
        ("a dog", 2, (200, 100, 400, 200)),  # wide Picture 2: x doubled
    ]


def test_qwen25_uses_each_images_input_size():
    text = (
        'Picture 1: {"bbox_2d": [28, 28, 56, 56], "label": "a"} '
        'Picture 2: {"bbox_2d": [28, 28, 56, 56], "label": "b"}'
    )
    got = parse(text, "qwen2.5-vl", [(280, 280), (1000, 500)], [(280, 280), (532, 280)])
    assert summary(got) == [("a", 1, (28, 28, 56, 56)), ("b", 2, (52.631579, 50, 105.263158, 100))]


def test_detection_fields():
    text = 'x <|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>'
    (d,) = parse(text, "qwen2-vl", [(500, 500)])
    assert d.raw == (1, 2, 3, 4)
    assert text[d.span[0] : d.span[1]] == "<|box_start|>(1,2),(3,4)<|box_end|>"
    assert d.kind == "box" and d.point is None and d.quad is None


def test_quad_corners_kept():
    (d,) = parse("<quad>(100,100),(200,110),(210,200),(-5,190)</quad>", "qwen-vl", SQUARE)
    assert d.kind == "quad"
    assert d.quad == ((100, 100), (200, 110), (210, 200), (0, 190))  # corners clipped one by one
    assert d.bbox == (0, 100, 210, 200)


def test_no_images_gives_nothing():
    assert parse('[{"bbox_2d": [1, 2, 3, 4]}]', "qwen3-vl", []) == []
    assert parse('[{"bbox_2d": [1, 2, 3, 4]}]', "qwen2.5-vl", []) == []  # input_sizes not needed then


def test_find_groundings_is_unscaled():
    (g,) = find_groundings('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}]', "qwen3-vl")
    assert (g.label, g.kind, g.values, g.source) == ("a", "box", (1, 2, 3, 4), "json")


ERROR_CASES = [
    pytest.param({"family": "qwen4-vl"}, id="unknown-family"),
    pytest.param({"family": "Qwen2-VL"}, id="family-is-case-sensitive"),
    pytest.param({"image_sizes": [(0, 100)]}, id="zero-width"),
    pytest.param({"image_sizes": [(100, -1)]}, id="negative-height"),
    pytest.param({"image_sizes": [(float("nan"), 100)]}, id="nan-size"),
    pytest.param({"image_sizes": [(True, 100)]}, id="bool-size"),
    pytest.param({"image_sizes": [(100,)]}, id="not-a-pair"),
    pytest.param({"image_sizes": [("100", 100)]}, id="string-size"),
    pytest.param({"image_sizes": (100, 100)}, id="one-pair-not-a-list"),
    pytest.param({"image_sizes": "100x100"}, id="string-sizes"),
    pytest.param({"input_sizes": [(100, 100), (100, 100)]}, id="input-sizes-wrong-length"),
    pytest.param({"input_sizes": [(100, 0)]}, id="input-size-zero"),
    pytest.param({"family": "qwen2.5-vl", "input_sizes": None}, id="qwen2.5-needs-input-sizes"),
    pytest.param({"text": None}, id="text-not-a-string"),
]


@pytest.mark.parametrize("override", ERROR_CASES)
def test_bad_arguments_raise(override):
    kwargs = {"text": "x", "family": "qwen2-vl", "image_sizes": [(100, 100)], "input_sizes": None} | override
    with pytest.raises(ValueError):
        parse(**kwargs)


def test_numpy_like_sizes_accepted():
    numbers = pytest.importorskip("numpy")
    (d,) = parse("<box>(0,0),(500,500)</box>", "qwen-vl", [(numbers.int64(200), numbers.float32(100))])
    assert d.bbox == (0, 0, 100, 50)


MODEL_TYPES = [
    pytest.param("qwen", "qwen-vl", id="qwen-vl-remote-code"),
    pytest.param("qwen2_vl", "qwen2-vl", id="qwen2-vl"),
    pytest.param("qwen2_5_vl", "qwen2.5-vl", id="qwen2.5-vl"),
    pytest.param("qwen3_vl", "qwen3-vl", id="qwen3-vl"),
    pytest.param("qwen3_vl_moe", "qwen3-vl", id="qwen3-vl-moe"),
    pytest.param("Qwen2-VL", "qwen2-vl", id="case-and-dash-ignored"),
]


@pytest.mark.parametrize(("model_type", "family"), MODEL_TYPES)
def test_family_from_model_type(model_type, family):
    assert family_from_model_type(model_type) == family


@pytest.mark.parametrize("model_type", ["llava", "qwen2", "qwen3", "", None], ids=["llava", "qwen2-text", "qwen3-text",
                                                                               "empty", "none"])
def test_family_from_unknown_model_type(model_type):
    with pytest.raises(ValueError):
        family_from_model_type(model_type)


@pytest.mark.parametrize(
    "kwargs",
    [{"label": "a", "image": 1}, {"label": "a", "image": 1, "bbox": (0, 0, 1, 1), "point": (0, 0)},
     {"label": "a", "image": 0, "point": (0, 0)}, {"label": "a", "image": 1, "bbox": (2, 0, 1, 1)}],
    ids=["neither-bbox-nor-point", "both", "image-zero", "inverted-bbox"],
)
def test_detection_is_strict(kwargs):
    with pytest.raises(ValueError):
        Detection(**kwargs)
