"""Table-driven tests of the answer shapes of issue 25 (point 3): agents' clicks, labels under other
keys, boxes listed under keys, and the token / bare forms fine-tuned Qwen2.5-VL and Qwen3-VL write.

Each row says where its text comes from. Every shape is checked on the picture it belongs to, within
1 px, for Qwen2.5-VL (pixels of the resized input, whose size differs from the picture's) and for
Qwen3-VL / Qwen3.5 (0-1000 of the picture); the expected pixels are computed here from the
documented formulas, not by the parser.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from grounding import Detection, draw, find_groundings, label_color, parse, readable

# Two pictures and what Qwen2.5-VL sees of them: smart_resize(h, w, factor=28) of 800x600 is 812x588,
# of 1280x720 1288x728 (qwen_vl_utils). With no "Picture N" in the text a grounding is on the last one.
PICTURES = [(800, 600), (1280, 720)]
INPUTS = [(812, 588), (1288, 728)]
FAMILIES = ("qwen2.5-vl", "qwen3-vl", "qwen3.5")


def pixels(family: str, picture: int, values: tuple[float, ...]) -> tuple[float, ...]:
    """The documented mapping: v / 1000 * size (relative families), v / input size * size (Qwen2.5-VL)."""
    space_w, space_h = INPUTS[picture - 1] if family == "qwen2.5-vl" else (1000, 1000)
    w, h = PICTURES[picture - 1]
    return tuple(v / space_w * w if i % 2 == 0 else v / space_h * h for i, v in enumerate(values))


def assert_lands(detections: list[Detection], expected: list[tuple], tolerance: float = 1.0) -> None:
    """Labels, pictures and (action) exactly; coordinates within ``tolerance`` pixels."""
    assert [(d.label, d.image) for d in detections] == [(e[0], e[1]) for e in expected], detections
    for d, e in zip(detections, expected, strict=True):
        got = d.bbox if d.bbox is not None else d.point
        assert len(got) == len(e[2]) and all(abs(a - b) <= tolerance for a, b in zip(got, e[2], strict=True)), (d, e)
        if len(e) > 3:
            assert d.action == e[3], d


def tool_call(name: str, arguments: dict) -> str:
    """The Hermes form Qwen-Agent writes (QwenLM/Qwen-Agent qwen_agent/llm/fncall_prompts/nous_fncall_prompt.py)."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


# --- 1. the cookbooks' own answers, with the pixels their notebooks draw ---------------------------------

REAL = [
    # QwenLM/Qwen2.5-VL cookbooks/mobile_agent.ipynb, "Chinese App & Query with API": the printed answer. The
    # screenshot assets/agent_function_call/mobile_zh_example.jpg is 720x1280; the system prompt told the model
    # "The screen's resolution is 728x1288" (smart_resize), so the click is in those pixels.
    pytest.param("qwen2.5-vl", '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": '
                 '[639, 1095]}}\n</tool_call>\n', [(720, 1280)], [(728, 1288)],
                 [("click", 1, (639 * 720 / 728, 1095 * 1280 / 1288), "click")], id="qwen2.5-mobile-cookbook-click"),
    # QwenLM/Qwen3-VL cookbooks/mobile_agent.ipynb, "English App & Query with API": the printed answer on
    # mobile_en_example.png (1440x3120). The notebook draws it at round(v / 999 * size) = (644, 253) (its
    # screen is declared 999x999); 0-1000 lands 0.6 px from there.
    pytest.param("qwen3-vl", 'Thought: To search for Musk in X, I need to click on the search bar at the top of the '
                 'screen. This will allow me to type in the search query.\nAction: "I tapped on the search bar to '
                 'begin searching for Musk."\n<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", '
                 '"coordinate": [447, 81]}}\n</tool_call>', [(1440, 3120)], None,
                 [("click", 1, (644, 253), "click")], id="qwen3-mobile-cookbook-click"),
    # QwenLM/Qwen3-VL cookbooks/computer_use.ipynb (read from the fork Firefly-llm/Qwen3-VL): a 1000x1000 screen
    # is declared and the click is drawn at coordinate / 1000 * size. A 1920x1080 desktop:
    pytest.param("qwen3-vl", tool_call("computer_use", {"action": "left_click", "coordinate": [500, 382]}),
                 [(1920, 1080)], None, [("left_click", 1, (960, 412.56), "left_click")], id="qwen3-computer-left-click"),
    # QwenLM/Qwen2.5-VL cookbooks/utils/agent_function_call.py ComputerUse: pixels of the smart_resize'd screen,
    # 1932x1092 for a 1920x1080 desktop; its clicks take no coordinate, "mouse_move" goes there first.
    pytest.param("qwen2.5-vl", tool_call("computer_use", {"action": "mouse_move", "coordinate": [966, 546]}) + "\n"
                 + tool_call("computer_use", {"action": "double_click"}), [(1920, 1080)], [(1932, 1092)],
                 [("mouse_move", 1, (960, 540), "mouse_move")], id="qwen2.5-computer-move-then-double-click"),
    # QwenLM/Qwen3-VL#762: Qwen2.5-VL fine-tuning data (LLaMA-Factory, ShareGPT) in the Qwen2-VL tokens, absolute
    # pixels of the screenshot as the model gets it (1932x1092 for a 1920x1080 one).
    pytest.param("qwen2.5-vl", "<|object_ref_start|>Popup close button<|object_ref_end|><|box_start|>(1769, 1013), "
                 "(1778, 1027)<|box_end|>\n<|object_ref_start|>Popup close button<|object_ref_end|><|box_start|>"
                 "(483, 954), (519, 987)<|box_end|>", [(1920, 1080)], [(1932, 1092)],
                 [("Popup close button", 1, (1769 * 1920 / 1932, 1013 * 1080 / 1092, 1778 * 1920 / 1932, 1027 * 1080 / 1092)),
                  ("Popup close button", 1, (483 * 1920 / 1932, 954 * 1080 / 1092, 519 * 1920 / 1932, 987 * 1080 / 1092))],
                 id="qwen2.5-finetune-tokens-issue-762"),
    # the same answer from a server that skips special tokens
    pytest.param("qwen2.5-vl", "Popup close button(1769, 1013), (1778, 1027)\nPopup close button(483, 954), (519, 987)",
                 [(1920, 1080)], [(1932, 1092)],
                 [("Popup close button", 1, (1769 * 1920 / 1932, 1013 * 1080 / 1092, 1778 * 1920 / 1932, 1027 * 1080 / 1092)),
                  ("Popup close button", 1, (483 * 1920 / 1932, 954 * 1080 / 1092, 519 * 1920 / 1932, 987 * 1080 / 1092))],
                 id="qwen2.5-finetune-bare-issue-762"),
    # hiyouga/LlamaFactory#7015: a grounding answer with a box and no ref, Qwen2.5-VL pixels, stripped
    pytest.param("qwen2.5-vl", "(493,169),(539,297)", [(1000, 1000)], [(1008, 1008)],
                 [("", 1, (493 * 1000 / 1008, 169 * 1000 / 1008, 539 * 1000 / 1008, 297 * 1000 / 1008))],
                 id="qwen2.5-llamafactory-box-alone-bare"),
    # ms-swift issue 4898: Qwen2.5-VL grounding data with "name" and a long "description"
    pytest.param("qwen2.5-vl", '{"objects": [{"name": "Computer Processor", "bbox_2d": [8, 67, 299, 275], "description": '
                 '"A square-shaped, metallic object with a green and gold circuit board base."}]}',
                 [(600, 600)], [(308, 308)], [("Computer Processor", 1, (8 * 600 / 308, 67 * 600 / 308, 299 * 600 / 308, 275 * 600 / 308))],
                 id="qwen2.5-name-before-description-ms-swift-4898"),
    # QwenLM/Qwen3-VL#1720 (a person's prompt): "object_name" labels, duplicate keys where "}, {" went missing
    # (completed here: the answer was cut by max_new_tokens=128 mid-number, and a cut object gives nothing)
    pytest.param("qwen3-vl", '{\n  "object_name": "monitor",\n  "bbox": [195, 138, 617, 480],\n  "object_name": "laptop",\n'
                 '  "bbox": [663, 399, 917, 657]\n}', [(2000, 1000)], None,
                 [("monitor", 1, (390, 138, 1234, 480)), ("laptop", 1, (1326, 399, 1834, 657))], id="qwen3-object-name-issue-1720"),
]


@pytest.mark.parametrize(("family", "text", "image_sizes", "input_sizes", "expected"), REAL)
def test_real_answers_land_within_a_pixel(family, text, image_sizes, input_sizes, expected):
    assert_lands(parse(text, family, image_sizes, input_sizes), expected)


# --- 2. every shape, in both coordinate spaces -----------------------------------------------------------
# Rows: (text, [(label, picture, model numbers, action)]): numbers as the model writes them, mapped per family.

CLICK = tool_call("mobile_use", {"action": "click", "coordinate": [400, 300]})
SWIPE = tool_call("mobile_use", {"action": "swipe", "coordinate": [400, 500], "coordinate2": [400, 100]})
KEYED = '```json\n{"cars": [[10, 20, 300, 400], [500, 60, 700, 580]], "people": [[50, 50, 120, 300]], "dogs": []}\n```'

SHAPES = [
    # --- agents' actions (QwenLM/Qwen2.5-VL and Qwen3-VL cookbooks/utils/agent_function_call.py) ---
    pytest.param(CLICK, [("click", 2, (400, 300), "click")], id="mobile-click"),
    pytest.param(tool_call("mobile_use", {"action": "long_press", "coordinate": [10, 20], "time": 2}),
                 [("long_press", 2, (10, 20), "long_press")], id="mobile-long-press"),
    # swipe: "from the starting point with coordinate (x, y) to the end point with coordinates2 (x2, y2)"
    pytest.param(SWIPE, [("swipe start", 2, (400, 500), "swipe"), ("swipe end", 2, (400, 100), "swipe")],
                 id="mobile-swipe-two-points"),
    pytest.param(tool_call("computer_use", {"action": "left_click", "coordinate": [1, 2]}),
                 [("left_click", 2, (1, 2), "left_click")], id="computer-left-click"),
    pytest.param(tool_call("computer_use", {"action": "right_click", "coordinate": [700, 500]}),
                 [("right_click", 2, (700, 500), "right_click")], id="computer-right-click"),
    pytest.param(tool_call("computer_use", {"action": "mouse_move", "coordinate": [650, 50]}),
                 [("mouse_move", 2, (650, 50), "mouse_move")], id="computer-mouse-move"),
    pytest.param(tool_call("computer_use", {"action": "triple_click", "coordinate": [5, 5]}),
                 [("triple_click", 2, (5, 5), "triple_click")], id="computer-triple-click-qwen3"),
    # Qwen2.5-VL's left_click_drag: "Click and drag the cursor to a specified (x, y)": one point, where it ends
    pytest.param(tool_call("computer_use", {"action": "left_click_drag", "coordinate": [300, 200]}),
                 [("left_click_drag", 2, (300, 200), "left_click_drag")], id="computer-drag-to"),
    pytest.param(tool_call("computer_use", {"action": "left_click_drag", "coordinate": [10, 10], "coordinate2": [90, 90]}),
                 [("left_click_drag start", 2, (10, 10), "left_click_drag"), ("left_click_drag end", 2, (90, 90), "left_click_drag")],
                 id="computer-drag-both-ends"),
    pytest.param(tool_call("computer_use", {"action": "scroll", "coordinate": [400, 300], "pixels": -300}),
                 [("scroll", 2, (400, 300), "scroll")], id="computer-scroll-at-a-point"),
    pytest.param(tool_call("computer_use", {"action": "type", "coordinate": [30, 40], "text": "hello  world"}),
                 [("type: hello world", 2, (30, 40), "type")], id="action-text-in-label"),
    # OpenAI-style tool_calls (vLLM's hermes parser, DashScope): "arguments" is a JSON string
    pytest.param(json.dumps({"tool_calls": [{"id": "call_0", "type": "function", "function": {
        "name": "computer_use", "arguments": json.dumps({"action": "left_click", "coordinate": [123, 456]})}}]}),
                 [("left_click", 2, (123, 456), "left_click")], id="openai-tool-calls-string-arguments"),
    # Qwen-Agent's Message.function_call keeps arguments as a string too
    pytest.param(json.dumps({"role": "assistant", "content": "", "function_call": {
        "name": "mobile_use", "arguments": json.dumps({"action": "swipe", "coordinate": [1, 2], "coordinate2": [3, 4]})}}),
                 [("swipe start", 2, (1, 2), "swipe"), ("swipe end", 2, (3, 4), "swipe")], id="qwen-agent-function-call"),
    # the same JSON outside <tool_call> tags (a LLaMA-Factory "function_call" turn), and arguments alone
    pytest.param('{"name": "computer_use", "arguments": {"action": "mouse_move", "coordinate": [99, 19]}}',
                 [("mouse_move", 2, (99, 19), "mouse_move")], id="call-without-tags"),
    pytest.param('Next: {"action": "click", "coordinate": [500, 50], "reason": "search box"}',
                 [("click", 2, (500, 50), "click")], id="bare-arguments-object"),
    pytest.param('{"name": "mobile_use", "arguments": {"action": "click", "coordinate": "(639, 109)"}}',
                 [("click", 2, (639, 109), "click")], id="coordinate-as-a-string"),
    pytest.param(tool_call("mobile_use", {"action": "click", "coordinate": [1, 2]}) + "\n" + tool_call(
        "mobile_use", {"action": "type", "text": "Qwen-VL"}) + "\n" + CLICK,
                 [("click", 2, (1, 2), "click"), ("click", 2, (400, 300), "click")], id="several-calls-type-gives-nothing"),
    pytest.param("In Picture 1 the button is here.\n" + CLICK, [("click", 1, (400, 300), "click")], id="click-on-picture-1"),
    # --- labels under other keys (json_labels' order) ---
    pytest.param('[{"bbox_2d": [10, 20, 30, 40], "label_en": "cat", "label_zh": "猫"}]', [("cat", 2, (10, 20, 30, 40))],
                 id="label-en-before-zh"),
    pytest.param('[{"bbox_2d": [10, 20, 30, 40], "label_zh": "猫"}]', [("猫", 2, (10, 20, 30, 40))], id="label-zh-alone"),
    pytest.param('[{"bbox_2d": [10, 20, 30, 40], "label": {"zh": "猫", "en": "cat"}}]', [("cat", 2, (10, 20, 30, 40))],
                 id="label-pair-english-first"),
    pytest.param('[{"bbox_2d": [10, 20, 30, 40], "name_ja": "猫", "label_fr": "chat"}]', [("猫", 2, (10, 20, 30, 40))],
                 id="other-languages-in-text-order"),
    pytest.param('[{"bbox_2d": [10, 20, 30, 40], "label_fr": "chat", "name_en": "cat"}]', [("cat", 2, (10, 20, 30, 40))],
                 id="english-before-other-languages"),
    pytest.param('[{"bbox_2d": [10, 20, 30, 40], "object": "car"}, {"bbox_2d": [1, 2, 3, 4], "category": "bus"}, '
                 '{"bbox_2d": [5, 6, 7, 8], "class": "van"}, {"bbox_2d": [9, 9, 19, 19], "类别": "卡车"}]',
                 [("car", 2, (10, 20, 30, 40)), ("bus", 2, (1, 2, 3, 4)), ("van", 2, (5, 6, 7, 8)), ("卡车", 2, (9, 9, 19, 19))],
                 id="object-category-class-chinese-key"),
    pytest.param('[{"bbox_2d": [10, 20, 30, 40], "description": "a red car", "category": "car"}, '
                 '{"bbox_2d": [1, 2, 3, 4], "description": "a sign", "text": "STOP"}]',
                 [("car", 2, (10, 20, 30, 40)), ("STOP", 2, (1, 2, 3, 4))], id="names-before-text-before-description"),
    pytest.param('[{"bbox_2d": [10, 20, 30, 40], "description": "the cup on the left"}]',
                 [("the cup on the left", 2, (10, 20, 30, 40))], id="description-alone"),
    # --- box lists ---
    pytest.param('[{"bbox_2d": [[10, 20, 30, 40], [50, 60, 70, 80]], "label": "cup"}]',
                 [("cup", 2, (10, 20, 30, 40)), ("cup", 2, (50, 60, 70, 80))], id="bbox-2d-list-per-object"),
    pytest.param('[{"object": "car", "boxes": [[10, 20, 300, 400], [500, 60, 700, 580]]}]',
                 [("car", 2, (10, 20, 300, 400)), ("car", 2, (500, 60, 700, 580))], id="boxes-key-per-object"),
    pytest.param('[{"point_2d": [[10, 20], [30, 40]], "label": "eggs"}]', [("eggs", 2, (10, 20)), ("eggs", 2, (30, 40))],
                 id="point-2d-list"),
    pytest.param(KEYED, [("cars", 2, (10, 20, 300, 400)), ("cars", 2, (500, 60, 700, 580)), ("people", 2, (50, 50, 120, 300))],
                 id="keys-the-prompt-asked-for"),
    pytest.param('{"car": [10, 20, 300, 400], "dog": [500, 60, 700, 580], "count": 2}',
                 [("car", 2, (10, 20, 300, 400)), ("dog", 2, (500, 60, 700, 580))], id="one-box-per-key"),
    pytest.param('{"汽车": [[10, 20, 300, 400]], "行人": [[50, 50, 120, 300]]}',
                 [("汽车", 2, (10, 20, 300, 400)), ("行人", 2, (50, 50, 120, 300))], id="keys-in-chinese"),
    pytest.param('[{"object": "car", "locations": [[10, 20, 300, 400], [500, 60, 700, 580]]}]',
                 [("car", 2, (10, 20, 300, 400)), ("car", 2, (500, 60, 700, 580))], id="named-list-under-another-key"),
    pytest.param('{"Picture 1": [[10, 20, 300, 400]], "Picture 2": [[50, 50, 120, 300]]}',
                 [("Picture 1", 1, (10, 20, 300, 400)), ("Picture 2", 2, (50, 50, 120, 300))], id="keys-naming-pictures"),
    pytest.param('{"result": {"cars": [[10, 20, 300, 400]]}}', [("cars", 2, (10, 20, 300, 400))], id="nested-keyed-object"),
    # --- the tokens and the bare form, for every family (ms-swift QWENVL_BBOX_FORMAT='legacy') ---
    pytest.param("<|object_ref_start|>a dog<|object_ref_end|><|box_start|>(216,196),(556,499)<|box_end|>",
                 [("a dog", 2, (216, 196, 556, 499))], id="tokens"),
    pytest.param("a dog(216,196),(556,499) and a cat(600,100),(700,200)",
                 [("a dog", 2, (216, 196, 556, 499)), ("a cat", 2, (600, 100, 700, 200))], id="bare"),
    pytest.param("一只狗(216,196),(556,499)，一只猫(600,100),(700,200)",
                 [("一只狗", 2, (216, 196, 556, 499)), ("一只猫", 2, (600, 100, 700, 200))], id="bare-chinese"),
    pytest.param("signs(10,10),(50,50)(60,60),(90,90)", [("signs", 2, (10, 10, 50, 50)), ("signs", 2, (60, 60, 90, 90))],
                 id="bare-chain"),
    pytest.param("<ref>cup</ref><box>(10,20),(30,40)</box>", [("cup", 2, (10, 20, 30, 40))], id="qwen-vl-tags"),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("text", "expected"), SHAPES)
def test_shapes_land_on_the_right_picture(family, text, expected):
    want = [(e[0], e[1], pixels(family, e[1], e[2]), *e[3:]) for e in expected]
    assert_lands(parse(text, family, PICTURES, INPUTS), want)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("text", "expected"), SHAPES)
def test_streaming_never_gives_half_a_shape(family, text, expected):
    """Every prefix of a shape gives a prefix of its detections, never a half-written one."""

    def key(detections):
        return [(d.label, d.image, d.bbox, d.point, d.action) for d in detections]

    full = key(parse(text, family, PICTURES, INPUTS))
    for cut in range(len(text)):
        partial = key(parse(text[:cut], family, PICTURES, INPUTS))
        assert partial == full[: len(partial)], text[:cut]


# --- 3. what is not read -------------------------------------------------------------------------------

NOTHING = [
    pytest.param(tool_call("mobile_use", {"action": "type", "text": "Qwen-VL"}), id="type-has-no-coordinate"),
    pytest.param(tool_call("computer_use", {"action": "key", "keys": ["ctrl", "c"]}), id="key"),
    pytest.param(tool_call("mobile_use", {"action": "wait", "time": 2}), id="wait"),
    pytest.param(tool_call("mobile_use", {"action": "terminate", "status": "success"}), id="terminate"),
    pytest.param(tool_call("computer_use", {"action": "answer", "text": "It is 3 pm."}), id="answer"),
    pytest.param(tool_call("mobile_use", {"action": "system_button", "button": "Back"}), id="system-button"),
    pytest.param('{"coordinate": [1, 2]}', id="coordinate-without-action"),
    pytest.param('{"action": "click", "coordinate": [1, 2, 3]}', id="coordinate-of-three-numbers"),
    pytest.param('{"action": "", "coordinate": [1, 2]}', id="empty-action"),
    pytest.param("Click at [100, 200], then at (300, 400).", id="prose-with-coordinates"),
    pytest.param("The boxes are [[10, 20, 30, 40], [50, 60, 70, 80]].", id="bare-list-of-lists-in-prose"),
    pytest.param("```json\n[[10, 20, 30, 40], [50, 60, 70, 80]]\n```", id="bare-list-of-lists-fenced"),
    pytest.param('{"scores": [0.1, 0.2, 0.3, 0.4]}', id="numbers-under-a-unit-apart"),
    pytest.param('{"rgb": [255, 0, 0, 255]}', id="corners-out-of-order"),
    pytest.param('{"years": [2019, 2020, 2021, 2022]}', id="outside-the-coordinate-space"),
    pytest.param('{"cars": [[10, 20, 30, 40], "none"]}', id="list-holding-something-else"),
    pytest.param('{"cars": [[10, 20, 30, 40], [5, -6, 70, 80]]}', id="negative-number-in-a-list"),
    pytest.param('{"name": "cat", "count": [1, 2]}', id="two-numbers"),
    pytest.param("Solve for (1,2),(3,4) in the plane.", id="bare-after-a-space"),
    pytest.param("Between (10,20),(30,40) lies the answer.", id="bare-at-a-sentence-start-after-a-space"),
]


@pytest.mark.parametrize("family", ("qwen2.5-vl", "qwen3-vl"))
@pytest.mark.parametrize("text", NOTHING)
def test_not_read(family, text):
    assert parse(text, family, PICTURES, INPUTS) == []


STREAMING = [
    # never read half a box while streaming, and never the bare form where marker tokens are present
    pytest.param("qwen3-vl", "<|object_ref_start|>a dog<|object_ref_end|><|box_start|>(216,196),(556,499)", [],
                 id="tokens-box-end-not-yet-written"),
    pytest.param("qwen3-vl", "<|object_ref_start|>a dog<|object_ref_end|><|box_start|>(216,196),(556,499)<|box_end|>"
                 " and b(1,2),(3,4)", [("a dog", 2, (216, 196, 556, 499))], id="no-bare-where-markers-are"),
    pytest.param("qwen2.5-vl", "a dog(216,196),(556,4", [], id="bare-half-box"),
    pytest.param("qwen3-vl", "sign(100,100),(200,110),", [], id="bare-box-then-comma-a-quad-may-follow"),
    pytest.param("qwen3-vl", "sign(100,100),(200,110),(210,2", [], id="bare-quad-half-written"),
    pytest.param("qwen3-vl", "sign(100,100),(200,110),(210,200),(90,190)", [("sign", 2, (90, 100, 210, 200))],
                 id="bare-quad-complete"),
    pytest.param("qwen3-vl", SWIPE[: SWIPE.index("coordinate2") + 18], [], id="swipe-without-its-end-point"),
    pytest.param("qwen3-vl", CLICK[:-len("}\n</tool_call>")], [("click", 2, (400, 300))],
                 id="call-cut-after-its-arguments"),  # the action object itself is whole
    pytest.param("qwen3-vl", KEYED[: KEYED.index('"people"')], [], id="keyed-object-not-closed"),
    pytest.param("qwen3-vl", '[{"bbox_2d": [[10, 20, 30, 40], [50, 60, 70', [], id="box-list-half-written"),
]


@pytest.mark.parametrize(("family", "text", "expected"), STREAMING)
def test_partial_answers(family, text, expected):
    want = [(e[0], e[1], pixels(family, e[1], e[2])) for e in expected]
    assert_lands(parse(text, family, PICTURES, INPUTS), want)


def test_keyed_boxes_must_lie_inside_the_space_explicit_keys_are_clipped():
    text = '{"cars": [[10, 20, 300, 400], [500, 60, 1200, 580]]} [{"bbox_2d": [500, 60, 1200, 580], "label": "bus"}]'
    got = parse(text, "qwen3-vl", [(1000, 1000)])
    assert [(d.label, d.bbox) for d in got] == [("cars", (10, 20, 300, 400)), ("bus", (500, 60, 1000, 580))]
    # Qwen2.5-VL: the space is the input size (812x588 here), so y = 590 is outside it
    got = parse('{"cars": [[10, 20, 300, 400], [10, 20, 300, 590]]}', "qwen2.5-vl", [(800, 600)], [(812, 588)])
    assert [d.raw for d in got] == [(10, 20, 300, 400)]


def test_sources_and_spans():
    text = CLICK + "\n" + KEYED + '\n[{"bbox_2d": [[1, 2, 3, 4], [5, 6, 7, 8]], "label": "cup"}]'
    found = find_groundings(text, "qwen3-vl")
    assert [g.source for g in found] == ["agent", "keyed", "keyed", "keyed", "json", "json"]
    assert [text[g.span[0] : g.span[1]] for g in found] == [
        "[400, 300]", "[10, 20, 300, 400]", "[500, 60, 700, 580]", "[50, 50, 120, 300]", "[1, 2, 3, 4]", "[5, 6, 7, 8]",
    ]  # each box or point its own characters, for the inspector's highlight
    assert found[0].action == "click" and found[1].action is None


# --- 4. shown and drawn ------------------------------------------------------------------------------------

READABLE = [
    pytest.param("qwen3-vl", "Thought: tap the search bar.\n" + CLICK, "Thought: tap the search bar.\n[click on Picture 2]",
                 id="click-note"),
    pytest.param("qwen2.5-vl", SWIPE, "[swipe on Picture 2]", id="swipe-note-one-action"),
    pytest.param("qwen3-vl", "Found:\n" + KEYED + "\nDone.", "Found:\n[3 boxes on Picture 2: cars ×2, people]\nDone.",
                 id="keyed-note"),
    pytest.param("qwen3-vl", 'Years: {"years": [2019, 2020, 2021, 2022]}', 'Years: {"years": [2019, 2020, 2021, 2022]}',
                 id="keyed-numbers-parse-dropped-stay"),
    pytest.param("qwen3-vl", "Tapping.\n" + CLICK[:60], "Tapping.\n", id="half-written-call-hidden"),
    pytest.param("qwen3-vl", 'Calling {"name": "computer_use", "arguments": {"action": "left_cl', "Calling ",
                 id="half-written-untagged-call-hidden"),
    pytest.param("qwen3-vl", "Cars: " + KEYED[8 : KEYED.index("[500")], "Cars: ", id="half-written-keyed-object-hidden"),
    pytest.param("qwen3-vl", "a dog(216,196),(556,499) runs", "a dog [Picture 2] runs", id="bare-qwen3"),
]


@pytest.mark.parametrize(("family", "text", "shown"), READABLE)
def test_readable(family, text, shown):
    assert readable(text, family, parse(text, family, PICTURES, INPUTS)) == shown


def test_click_is_drawn_where_it_lands():
    (d,) = parse(CLICK, "qwen2.5-vl", PICTURES, INPUTS)
    picture = Image.new("RGB", PICTURES[1], "white")
    out = draw(picture, [d])
    x, y = (round(v) for v in d.point)
    assert out.getpixel((x, y)) == label_color("click")  # the dot's centre is the click


def test_keyed_box_is_drawn_within_a_pixel():
    (d, *_) = parse(KEYED, "qwen3-vl", PICTURES, INPUTS)
    out = draw(Image.new("RGB", PICTURES[1], "white"), [d])
    x1, y1, x2, y2 = pixels("qwen3-vl", 2, (10, 20, 300, 400))
    middle = round((y1 + y2) / 2)
    assert out.getpixel((round(x1), middle)) == label_color("cars")  # the left edge
    assert out.getpixel((round(x2) - 1, middle)) == label_color("cars")  # the right edge's last column


def test_action_is_drawn_when_the_label_is_empty():
    picture = Image.new("RGB", (200, 100), "white")
    untagged = draw(picture, [Detection(label="", image=1, point=(50, 50))])
    tagged = draw(picture, [Detection(label="", image=1, point=(50, 50), action="click")])
    assert tagged.tobytes() != untagged.tobytes()  # the tag naming the action


@pytest.mark.parametrize("action", ["", "  ", 3])
def test_detection_action_is_strict(action):
    with pytest.raises(ValueError):
        Detection(label="x", image=1, point=(1, 2), action=action)
