"""Questions about a region through the handlers and the record: the region reaches the model in the
family's format, the chat shows it readably, Undo and an edit give it back, Save and Load keep it;
the inspector's "Ask about this box" and "Zoom into this box" write the message (no server, no model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from demo.engines.slot import EngineSlot
from demo.media.resize import smart_resize
from demo.page.handlers import ChatHandlers
from demo.page.regions import ask_message, drawn_box, selected_region, zoom_message
from demo.record.conversation import VisionCost
from demo.record.limits import Limits
from demo.record.region import Region
from demo.record.session_file import read_conversation
from demo.views.inspector import Picks, inspect
from grounding.generations import generation
from tests.fakes import ScriptedEngine
from tests.helpers import shown


class Engine(ScriptedEngine):
    """Pictures cost what the family's processor makes of them, within 256 visual tokens."""

    def vision_cost(self, size_wh, settings):
        factor = generation(self.family).resize_factor
        height, width = smart_resize(size_wh[1], size_wh[0], factor, factor * factor * 4, factor * factor * 256)
        return VisionCost((width, height), width * height // factor**2)


def make(family: str, answers) -> tuple[ChatHandlers, Engine]:
    engine = Engine(answers)
    engine.family = family
    slot = EngineSlot("scripted", family)
    slot.fill(engine)
    return ChatHandlers(slot, min_update_interval=0.0), engine


def run(generator):
    return list(generator)[-1]


def last_question(engine: Engine) -> str:
    messages, _ = engine.calls[-1]
    return messages[-1]["content"][-1]["text"]


@pytest.mark.parametrize(
    "family, expected",
    [
        # Qwen2-VL: its tokens, 0-1000 of chelsea.png (451×300).
        ("qwen2-vl", "About this region of Picture 1: <|box_start|>(180,80),(800,980)<|box_end|>\nwhat is this?"),
        # Qwen2.5-VL: pixels of the 448×308 picture the model saw, not of the 451×300 one sent.
        ("qwen2.5-vl", 'About this region of Picture 1: {"bbox_2d": [80, 25, 359, 302]}\nwhat is this?'),
        # Qwen3-VL: JSON in 0-1000.
        ("qwen3-vl", 'About this region of Picture 1: {"bbox_2d": [180, 80, 800, 980]}\nwhat is this?'),
    ],
)
def test_a_region_reaches_the_model_in_the_familys_format(photos, family, expected):
    handlers, engine = make(family, [["A cat."], ["Its face."]])
    conversation = run(handlers.chat({"text": "look", "files": [str(photos["chelsea"])]}, None)).conversation
    reply = run(handlers.chat({"text": "About Picture 1 (81, 24)–(361, 294): what is this?", "files": []}, conversation))
    turn = reply.conversation.turns[-1]
    assert (turn.text, turn.region) == ("what is this?", Region(1, (81, 24, 361, 294)))
    assert last_question(engine) == expected
    if family == "qwen2.5-vl":
        assert turn.input_sizes == [(448, 308)]  # the model saw another size than 451×300
    # The person reads the readable form, never a token or JSON, and sees the region drawn on its picture.
    question, drawn = shown(reply)[-3:-1]
    assert question["content"] == "About Picture 1 (81, 24)–(361, 294): what is this?"
    assert drawn["role"] == "user" and drawn["content"]["alt_text"] == "Picture 1, the region asked about"
    with Image.open(drawn["content"]["path"]) as picture:
        assert picture.size[0] > 0  # chelsea.png, the box drawn on it


def test_a_region_on_a_picture_sent_with_it_and_one_that_is_not_there(photos):
    handlers, engine = make("qwen3-vl", [["ok"]])
    reply = run(handlers.chat({"text": "About Picture 1 (0, 0)–(10, 10): and here?", "files": [str(photos["coffee"])]}, None))
    assert reply.conversation.turns[0].region == Region(1, (0, 0, 10, 10))
    refused = run(handlers.chat({"text": "About Picture 3 (0, 0)–(10, 10): here?", "files": []}, reply.conversation))
    assert refused.notice == "Not sent: The question is about Picture 3, and there is no such picture in this conversation (it has 1)."
    outside = run(handlers.chat({"text": "About Picture 1 (0, 0)–(9999, 10): here?", "files": []}, reply.conversation))
    assert "is not a box inside Picture 1" in outside.notice
    empty = run(handlers.chat({"text": "About Picture 1 (0, 0)–(10, 10):", "files": []}, reply.conversation))
    assert empty.notice == "Not sent: Type a question after the region's colon."
    assert len(reply.conversation.turns) == 1 and len(engine.calls) == 1


def test_undo_an_edit_and_regenerate_keep_the_region_with_its_question(photos):
    handlers, engine = make("qwen2-vl", [["a"], ["b"], ["c"], ["d"]])
    conversation = run(handlers.chat({"text": "About Picture 1 (1, 2)–(30, 40): what?", "files": [str(photos["chelsea"])]}, None)).conversation
    run(handlers.regenerate(conversation))
    assert conversation.turns[0].region == Region(1, (1, 2, 30, 40))  # Regenerate keeps the question
    run(handlers.edit(conversation, 0, "About Picture 1 (5, 5)–(50, 50): and now?"))
    assert (conversation.turns[0].text, conversation.turns[0].region) == ("and now?", Region(1, (5, 5, 50, 50)))
    assert "(250,167),(1000,1000)" not in last_question(engine) and "<|box_start|>(11,17),(111,167)<|box_end|>" in last_question(engine)
    assert conversation.turns[0].versions[0].turn.region == Region(1, (1, 2, 30, 40))  # the earlier version keeps its own
    run(handlers.edit(conversation, 0, "and now?"))  # the region written away: the question has none
    assert conversation.turns[0].region is None
    restored = handlers.undo(conversation).message
    assert restored["text"] == "and now?"
    conversation = run(handlers.chat({"text": "About Picture 1 (1, 2)–(30, 40): what?", "files": [str(photos["chelsea"])]}, None)).conversation
    assert handlers.undo(conversation).message["text"] == "About Picture 1 (1, 2)–(30, 40): what?"


def test_save_and_load_keep_the_region_and_refuse_a_bad_one(photos, tmp_path):
    handlers, _ = make("qwen2.5-vl", [["a"], ["b"]])
    conversation = run(handlers.chat({"text": "look", "files": [str(photos["chelsea"])]}, None)).conversation
    run(handlers.chat({"text": 'About "the cat" in Picture 1 (81, 24)–(361, 294): what?', "files": []}, conversation))
    saved = Path(handlers.save(conversation))
    data = json.loads(saved.read_text("utf-8"))
    assert data["turns"][1]["region"] == {"picture": 1, "box": [81, 24, 361, 294], "label": "the cat"}
    assert data["turns"][0]["region"] is None
    loaded = handlers.load(str(saved), None).conversation
    assert loaded.turns[1].region == Region(1, (81, 24, 361, 294), "the cat") and loaded.turns[1].text == "what?"
    for bad, reason in [
        ({"picture": 2, "box": [0, 0, 1, 1]}, "no such picture"),  # only one picture by then
        ({"picture": 1, "box": [0, 0, 452, 10]}, "not a box inside Picture 1"),  # past its edge
        ({"picture": 1, "box": [5, 0, 1, 1]}, "malformed region"),  # corners out of order
        ({"picture": 1, "box": [0, 0, 1.5, 1]}, "malformed region"),  # not whole pixels
        ({"picture": 1, "box": [0, 0, 1, 1], "label": "<|box_end|>"}, "malformed region"),  # a marker in the label
        ({"picture": 1, "box": [0, 0, 1, 1], "extra": 1}, "malformed region"),
        ("Picture 1", "malformed region"),
    ]:
        data["turns"][1]["region"] = bad
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(data), "utf-8")
        with pytest.raises(Exception, match=reason):
            read_conversation(str(path), Limits())


def test_ask_and_zoom_write_the_selected_box_into_the_message(photos):
    handlers, _ = make("qwen2-vl", [["In Picture 1, <|object_ref_start|>the face<|object_ref_end|><|box_start|>(180,80),(800,980)<|box_end|>"], ["ok"]])
    conversation = run(handlers.chat({"text": "find the face", "files": [str(photos["chelsea"])]}, None)).conversation
    picks = Picks(selected="d0").current(conversation)
    picks = Picks(selected="d0", shape=picks.shape)
    region = selected_region(inspect(conversation, "qwen2-vl", picks, None))
    assert region == Region(1, (81, 24, 361, 294), "the face")
    assert ask_message(region, {"text": "About Picture 9 (1, 1)–(2, 2): is it a cat?", "files": ["x.png"]}) == {
        "text": 'About "the face" in Picture 1 (81, 24)–(361, 294): is it a cat?',  # the region written before is replaced
        "files": ["x.png"],
    }
    # A drawn box: clipped to the picture, whole pixels.
    box = drawn_box([500.2, -3, 400.6, 120.4], 451, 300)
    assert box == (401, 0, 451, 120) and drawn_box([1, 1, 1.2, 9], 451, 300) is None and drawn_box("x", 1, 1) is None
    drawn = selected_region(inspect(conversation, "qwen2-vl", Picks(selected="drawn", drawn=box, shape=picks.shape), None))
    assert drawn == Region(1, box)
    # Zoom: the crop (widened and enlarged as the zoom tool does) joins the message's files, named for where it comes from.
    # 21×11 px: widened to 32 px around its centre (63×33), enlarged to 256×32×32 pixels or more.
    message = zoom_message(Region(1, (100, 100, 121, 111)), conversation, {"text": "and this?", "files": []})
    (path,) = message["files"]
    assert message["text"] == "and this?" and Path(path).name == "crop of Picture 1 at (79, 89)–(142, 122).png"
    with Image.open(path) as crop:
        assert crop.size == (736, 384)
    # Sent, it is the next Picture like any upload, its name saying where it comes from.
    reply = run(handlers.chat(message, conversation))
    assert shown(reply)[-4]["content"].startswith("**Picture 2** · crop of Picture 1 at (79, 89)–(142, 122).png · 736×384")


def test_a_drawn_box_selected_has_no_row_to_highlight():
    """The list's highlight reads a grounding's id ("d3", "r0"); a drawn box ("drawn") has no row."""
    from demo.page.inspector_ui import _table
    from demo.views.inspector import HEADERS

    rows = [["1", "cat", "box", "[1, 2, 3, 4]", "(1, 2, 3, 4)", "2×2"]]
    assert _table(rows, HEADERS[:6], "drawn").value["data"] == rows
