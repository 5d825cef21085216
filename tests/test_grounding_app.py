"""Groundings in the app: presets, export, and boxes drawn on the right picture end to end."""

from __future__ import annotations

import html
import json

import pytest
from PIL import Image

from demo.engines.slot import EngineSlot
from demo.page.handlers import ChatHandlers
from demo.record.conversation import Attachment, Conversation, Turn
from demo.views.export import coco_record, detections_record, write_exports
from grounding import label_color
from grounding.generations import PRESETS, grounding_prompt
from tests.fakes import ScriptedEngine, forced_answer
from tests.helpers import near, parts, shown


@pytest.mark.parametrize(
    "family, preset, expected",
    [
        ("qwen2-vl", "Locate one object", "Detect the bounding box of «the cat»."),  # token family: plain request
        ("qwen-vl", "Caption with grounding", "Generate the caption in English with grounding:"),  # Qwen-VL's caption
        ("qwen2.5-vl", "Detect categories", "Locate every instance that belongs to the following categories: '«cat, cup»'. Report bbox coordinates in JSON format."),  # cookbook wording
        ("qwen3-vl", "Point to", "Point to «the cat», output its coordinates in JSON format."),  # JSON points
    ],
)
def test_presets_follow_the_family(family, preset, expected):
    assert grounding_prompt(preset, family) == expected


def test_every_preset_exists_for_every_family():
    for family in ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl"):
        assert all(grounding_prompt(name, family) for name in PRESETS)
    with pytest.raises(ValueError):
        grounding_prompt("Dance", "qwen2-vl")
    with pytest.raises(ValueError):
        grounding_prompt("Point to", "llava")


def test_preset_keeps_the_attached_files():
    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([]))
    handlers = ChatHandlers(slot)
    assert handlers.preset("Locate one object", {"text": "old", "files": ["/up/a.png"]}) == {
        "text": "Detect the bounding box of «the cat».",
        "files": ["/up/a.png"],
    }


def grounded_conversation() -> Conversation:
    cat = Attachment(path="/up/cat.png", image=Image.new("RGB", (400, 200), "white"), name="cat.png")
    cup = Attachment(path="/up/cup.png", image=Image.new("RGB", (300, 300), "white"), name="cup.png")
    answer = (
        "<|object_ref_start|>a cat<|object_ref_end|><|box_start|>(0,0),(500,500)<|box_end|> and in Picture 2 "
        "<|object_ref_start|>a cup<|object_ref_end|><|box_start|>(100,100),(200,300)<|box_end|>"
    )
    return Conversation(turns=[Turn("find", [cat, cup], answer=answer, status="done", input_sizes=[(56, 28), (56, 56)])])


def test_detections_record_has_raw_and_pixel_coordinates():
    record = detections_record(grounded_conversation(), "qwen2-vl")
    assert record["family"] == "qwen2-vl"
    assert record["images"] == [
        {"picture": 1, "file_name": "cat.png", "width": 400, "height": 200},
        {"picture": 2, "file_name": "cup.png", "width": 300, "height": 300},
    ]
    first, second = record["detections"]
    # No mention before the cat: the latest picture (2) of the conversation.
    assert (first["picture"], first["label"], first["raw"], first["bbox_xyxy"]) == (2, "a cat", [0, 0, 500, 500], [0, 0, 150, 150])
    assert (second["picture"], second["bbox_xyxy"], second["model_input_wh"]) == (2, [30, 30, 60, 90], [56, 56])


def test_coco_record_uses_xywh_boxes_and_categories():
    coco = coco_record(grounded_conversation(), "qwen2-vl")
    assert [c["name"] for c in coco["categories"]] == ["a cat", "a cup"]
    assert coco["annotations"][1]["bbox"] == [30, 30, 30, 60]
    assert coco["annotations"][1]["area"] == 1800
    assert {a["image_id"] for a in coco["annotations"]} == {2}


def test_write_exports_writes_json_and_pngs(tmp_path):
    paths = write_exports(grounded_conversation(), "qwen2-vl", tmp_path)
    assert [p.name for p in paths] == ["detections.json", "detections-coco.json", "turn1-picture2.png"]
    assert json.loads(paths[0].read_text())["detections"]
    with Image.open(paths[2]) as png:
        assert png.size == (300, 300)


def test_boxes_of_a_real_generation_land_on_the_right_picture_at_the_right_pixels(engine, tmp_path):
    """Force a grounding answer through the real generate path, two pictures of different sizes."""
    slot = EngineSlot("tiny")
    slot.fill(engine)
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    answer = (
        "In Picture 1 <|object_ref_start|>the left half<|object_ref_end|><|box_start|>(0,0),(500,999)<|box_end|>, "
        "in Picture 2 <|object_ref_start|>the middle<|object_ref_end|><|box_start|>(250,250),(750,750)<|box_end|>"
    )
    files = []
    for name, size in (("wide.png", (400, 200)), ("tall.png", (200, 300))):
        Image.new("RGB", size, "white").save(tmp_path / name)
        files.append(str(tmp_path / name))
    with forced_answer(engine, answer):
        updates = [(reply, shown(reply)) for reply in handlers.chat({"text": "Where?", "files": files}, None)]
    conversation, chatbot = updates[-1][0].conversation, updates[-1][1]
    assert conversation.turns[0].answer == answer  # the real decode kept the markers
    assistant = parts(chatbot, "assistant")
    assert html.unescape(assistant[0]) == "In Picture 1 the left half [Picture 1], in Picture 2 the middle [Picture 2]"
    annotated = [c["path"] for c in assistant if isinstance(c, dict)]
    assert len(annotated) == 2
    left, middle = label_color("the left half"), label_color("the middle")
    white = (255, 255, 255)
    with Image.open(annotated[0]) as wide, Image.open(annotated[1]) as tall:  # JPEGs: colours within a few levels
        assert wide.size == (400, 200) and tall.size == (200, 300)
        # Picture 1's box is its left half: its right edge at x = 200 (500/1000 of 400 px).
        assert any(near(left, wide.getpixel((x, 100))) for x in range(196, 204))
        assert near(white, wide.getpixel((300, 100)))  # nothing drawn in the right half
        # Picture 2's box spans (50, 75)-(150, 225): its left and bottom edges.
        assert any(near(middle, tall.getpixel((x, 150))) for x in range(46, 54))
        assert any(near(middle, tall.getpixel((100, y))) for y in range(221, 229))
        assert near(white, tall.getpixel((10, 10))) and near(white, tall.getpixel((100, 150)))
    # The boxes appeared while streaming, not only at the end.
    seen_images = [sum(isinstance(p, dict) for p in parts(view, "assistant")) for _, view in updates]
    assert 1 in seen_images and seen_images[-1] == 2


def test_export_handler_gives_files_and_refuses_an_empty_conversation(photos):
    import gradio as gr

    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([['[{"bbox_2d": [0, 0, 500, 500], "label": "cat"}]']]))
    handlers = ChatHandlers(slot)
    with pytest.raises(gr.Error, match="nothing to export"):
        handlers.export(None)
    *_, reply = handlers.chat({"text": "cat?", "files": [str(photos["chelsea"])]}, None)
    paths = handlers.export(reply.conversation)
    names = [p.rsplit("/", 1)[-1] for p in paths]
    assert names == [
        "all-exports.zip", "detections.json", "detections-coco.json", "label-studio-tasks.json", "label-studio-config.xml", "turn1-picture1.png",
    ]  # the zip first (tests/test_exports.py reads each format back)
    record = json.loads(open(paths[1]).read())
    assert record["detections"][0]["bbox_xyxy"] == [0, 0, 225.5, 150]
