"""Property tests: parse and readable never raise on model text, and what parse returns is sane."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grounding import FAMILIES, Detection, parse, readable
from grounding.tags import MARKERS

PROPS = settings(derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FRAGMENTS = [
    *MARKERS, "<|im_end|>", "<|", "|>", "<", ">", "/>", "(", ")", ",", " ", "\n", "```json\n", "```", "[", "]", "{",
    "}", ":", '"', "'", '"bbox_2d"', '"point_2d"', '"label"', '"text_content"', '"cat"', '"红色的杯子"', "NaN",
    "Infinity", "-Infinity", "1e999", "true", "null", "-", ".", "<points", "<point", " x1=", " y1=", " x2=", " y2=",
    ' x="', ' y="', ' alt="a"', "</points>", "Picture 1", "Picture 2", "picture 9", "Image 3", "图2", "图片1", "第一张",
    "第2张", "<think>", "</think>", "the man", "击掌",
    # shapes from issue 14: tool calls, other label keys, QwenVL HTML and Markdown, plain-text lines
    "<tool_call>", "</tool_call>", '"img_idx"', '"name"', '"name_en"', '"name_zh"', '"names"', '"bbox"', '"en"',
    '{"name": "image_zoom_in_tool", "arguments": ', "<p", "</p>", "<li", "</ol>", "<img", "/>", ' data-bbox="',
    ' class="image"', "&amp;", "<!-- Image (", "<!-- Table (", ") -->", "\n10,20,300,400 cat\n", "\n5, 6, 70, 80 ",
    # shapes from issue 25: agents' actions, boxes under keys, labels under other keys
    '{"name": "mobile_use", "arguments": ', '"action"', '"click"', '"swipe"', '"coordinate"', '"coordinate2"', '\\"',
    '"cars"', '"boxes"', '"object"', '"label_en"', "[[", "]]", "[10, 20, 300, 400]",
]
NUMBER = st.one_of(st.integers(-3000, 3000), st.floats(-5000, 5000, allow_nan=False), st.integers(-10**30, 10**30))
FRAGMENT_TEXT = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), NUMBER.map(str), st.text(max_size=4)), max_size=60
).map("".join)


@st.composite
def answers(draw) -> str:
    """A well-formed answer in one of the formats, with arbitrary numbers, maybe cut short."""
    n = draw(st.integers(1, 4))
    labels = draw(st.lists(st.sampled_from(["cat", "cup", "", "红色的杯子", 'a "q"']), min_size=n, max_size=n))
    boxes = draw(st.lists(st.lists(NUMBER, min_size=4, max_size=4), min_size=n, max_size=n))
    style = draw(st.sampled_from(
        ["json", "points", "tokens", "qwen-vl", "bare", "tool", "html", "markdown", "names", "agent", "keyed", "box-lists"]
    ))
    pairs = list(zip(boxes, labels, strict=True))
    if style == "json":
        key = draw(st.sampled_from(["bbox_2d", "point_2d"]))
        body = json.dumps([{key: b if key == "bbox_2d" else b[:2], "label": lb} for b, lb in pairs])
        text = f"```json\n{body}\n```"
    elif style == "points":
        text = "".join(f'<points x1="{b[0]}" y1="{b[1]}" alt="{lb}">{lb}</points>' for b, lb in pairs)
    elif style == "tokens":
        text = "".join(
            f"<|object_ref_start|>{lb}<|object_ref_end|><|box_start|>({b[0]},{b[1]}),({b[2]},{b[3]})<|box_end|>"
            for b, lb in pairs
        )
    elif style == "qwen-vl":
        text = "".join(f"<ref>{lb}</ref><box>({b[0]},{b[1]}),({b[2]},{b[3]})</box>" for b, lb in pairs)
    elif style == "tool":
        text = "\n".join(
            "<tool_call>\n" + json.dumps({"name": "image_zoom_in_tool", "arguments": {
                "label": lb, "bbox_2d": b, "img_idx": draw(st.integers(-1, 3))}}) + "\n</tool_call>"
            for b, lb in pairs
        )
    elif style == "html":
        tag = draw(st.sampled_from(["p", "li", "div", "h2"]))
        text = "".join(f'<{tag} data-bbox="{b[0]} {b[1]} {b[2]} {b[3]}">{lb}</{tag}>' for b, lb in pairs)
    elif style == "markdown":
        text = "\n".join(f"<!-- Image ({b[0]}, {b[1]}, {b[2]}, {b[3]}) -->" for b, _ in pairs)
    elif style == "names":
        body = json.dumps([{"bbox_2d": b, "names": {"zh": lb, "en": lb}} for b, lb in pairs])
        text = body[:-1] + ", {" + body[-1] if draw(st.booleans()) else body  # maybe a stray "{" at the end
    elif style == "agent":
        action = draw(st.sampled_from(["click", "swipe", "type"]))
        calls = [{"action": action, "coordinate": b[:2], **({"coordinate2": b[2:]} if action == "swipe" else {}),
                  **({"text": lb} if lb else {})} for b, lb in pairs]
        string = draw(st.booleans())  # arguments as a JSON string, as OpenAI-style tool_calls give them
        text = "\n".join("<tool_call>\n" + json.dumps({"name": "mobile_use", "arguments": json.dumps(c) if string else c})
                         + "\n</tool_call>" for c in calls)
    elif style == "keyed":
        text = json.dumps({lb or "thing": [b] for b, lb in pairs})
    elif style == "box-lists":
        text = json.dumps([{"bbox_2d": [b for b, _ in pairs], "label_en": labels[0], "label_zh": "猫"}])
    else:
        text = " ".join(f"{lb}({b[0]},{b[1]}),({b[2]},{b[3]})" for b, lb in pairs)
    prefix = draw(st.sampled_from(["", "Picture 1: ", "In 图2, ", "Image 7 "]))
    text = prefix + text
    cut = draw(st.integers(0, len(text)))
    return text if draw(st.booleans()) else text[:cut]


TEXTS = st.one_of(st.text(max_size=200), FRAGMENT_TEXT, answers())
SIDE = st.one_of(st.integers(1, 4000), st.floats(0.5, 4000))
SIZES = st.lists(st.tuples(SIDE, SIDE), max_size=3)


def check(detections: list[Detection], image_sizes, text: str) -> None:
    for d in detections:
        assert isinstance(d, Detection)
        assert 1 <= d.image <= len(image_sizes)
        w, h = image_sizes[d.image - 1]
        assert 0 <= d.span[0] < d.span[1] <= len(text)
        if d.bbox is not None:
            x1, y1, x2, y2 = d.bbox
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, (d, w, h)
        else:
            x, y = d.point
            assert 0 <= x <= w and 0 <= y <= h, (d, w, h)


@PROPS
@given(text=TEXTS, family=st.sampled_from(FAMILIES), image_sizes=SIZES, data=st.data())
def test_parse_never_raises_and_stays_inside(text, family, image_sizes, data):
    input_sizes = data.draw(st.lists(st.tuples(SIDE, SIDE), min_size=len(image_sizes), max_size=len(image_sizes)))
    detections = parse(text, family, image_sizes, input_sizes)
    check(detections, image_sizes, text)


@PROPS
@given(text=answers(), image_sizes=SIZES.filter(bool))
def test_structured_answers_relative_families(text, image_sizes):
    for family in ("qwen-vl", "qwen2-vl", "qwen3-vl"):
        check(parse(text, family, image_sizes), image_sizes, text)


_COMPLETE_MARKER = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>")


@PROPS
@given(text=TEXTS, family=st.sampled_from(FAMILIES))
def test_readable_never_raises_and_leaves_no_markers(text, family):
    sizes = [(640, 480), (800, 600)]
    shown = readable(text, family, parse(text, family, sizes, sizes))
    assert isinstance(shown, str)
    assert not _COMPLETE_MARKER.search(shown)
    assert not any(m in shown for m in MARKERS)
    less = shown.rfind("<")
    if less != -1:
        tail = shown[less:]
        assert not any(m.startswith(tail) and m != tail for m in MARKERS), repr(shown)
        assert not re.fullmatch(r"<\|[A-Za-z0-9_]*\|?", tail), repr(shown)


@PROPS
@given(text=answers(), family=st.sampled_from(FAMILIES))
def test_truncation_only_drops_the_last_detections(text, family):
    """A prefix of an answer yields a prefix of its detections: streaming only adds boxes."""
    sizes = [(1000, 1000)]

    def key(detections):
        return [(d.label, d.bbox, d.point, d.image) for d in detections]

    full = key(parse(text, family, sizes, sizes))
    for cut in range(0, len(text), max(1, len(text) // 8)):
        partial = key(parse(text[:cut], family, sizes, sizes))
        assert partial == full[: len(partial)]


@st.composite
def plain_answers(draw) -> str:
    """Plain-text ``x1,y1,x2,y2 label`` lines with prose around them."""
    n = draw(st.integers(1, 5))
    lines = []
    for _ in range(n):
        x1, y1 = draw(st.integers(0, 900)), draw(st.integers(0, 900))
        x2, y2 = x1 + draw(st.integers(1, 99)), y1 + draw(st.integers(1, 99))
        sep = draw(st.sampled_from([",", ", "]))
        lines.append(f"{x1}{sep}{y1}{sep}{x2}{sep}{y2} {draw(st.sampled_from(['cake', '红色的杯子', 'a b c']))}")
    return draw(st.sampled_from(["", "Here:\n"])) + "\n".join(lines) + draw(st.sampled_from(["", "\n", "\nDone."]))


@PROPS
@given(text=plain_answers(), family=st.sampled_from(FAMILIES))
def test_plain_lines_streaming_only_grows(text, family):
    """A prefix of plain-text lines yields a prefix of their boxes; only the last label may still be growing."""
    sizes = [(1000, 1000)]
    full = parse(text, family, sizes, sizes)
    assert len(full) == text.count("\n") + 1 - text.startswith("Here:") - text.endswith(("\n", "Done."))
    for cut in range(len(text) + 1):
        partial = parse(text[:cut], family, sizes, sizes)
        assert [d.bbox for d in partial] == [d.bbox for d in full[: len(partial)]]
        if partial:
            assert [d.label for d in partial[:-1]] == [d.label for d in full[: len(partial) - 1]]
            assert full[len(partial) - 1].label.startswith(partial[-1].label)
