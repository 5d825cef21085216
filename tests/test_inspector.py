"""The inspector's content (demo/views/inspector.py), pure: pickers, items, spans, rows, follow the conversation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from demo.record.conversation import Attachment, Conversation, Turn
from demo.views.ground_truth import Reference, References
from demo.views.inspector import LATEST, Picks, answer_segments, inspect, servable_path, shape
from grounding import parse

CAT = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(0,0),(500,500)<|box_end|>"
JSON = '[{"bbox_2d": [0, 0, 500, 500], "label": "cup"}, {"bbox_2d": [500, 500, 1000, 1000], "label": "cup"}, {"point_2d": [250, 750], "label": "spoon"}]'


def picture(name: str, size=(200, 100)) -> Attachment:
    return Attachment(path=f"/uploads/{name}", image=Image.new("RGB", size), name=name)


def chat(*turns: Turn) -> Conversation:
    conversation = Conversation(turns=list(turns))
    for index, turn in enumerate(conversation.turns):
        turn.input_sizes = [(56, 28)] * len(conversation.images_until(index))
    return conversation


@pytest.fixture(autouse=True)
def no_files(monkeypatch):
    """The pictures here exist in memory only: serve their path as it is."""
    monkeypatch.setattr("demo.views.inspector.servable_path", lambda path, size, image: path)


def test_an_empty_conversation_says_what_to_do():
    shown = inspect(Conversation(), "qwen2-vl", Picks(), None)
    assert shown.turns == [(LATEST, 0)] and shown.view["message"].startswith("Ask about a picture")


def test_the_latest_turn_with_groundings_stays_in_view_and_says_so():
    """Issue 25: an answer without boxes leaves the last one with some in view; the page hides the
    inspector while no answer has any (`has_groundings`)."""
    conversation = chat(
        Turn("find the cups", [picture("a.png")], answer="In Picture 1 " + JSON, status="done"),
        Turn("and now?", answer="Nothing more.", status="done"),
        Turn("more?", answer="", status="streaming"),
    )
    shown = inspect(conversation, "qwen3-vl", Picks(), None)
    assert shown.has_groundings and shown.answering and shown.view["title"] == "Turn 1 · Picture 1 · a.png"
    assert inspect(conversation, "qwen3-vl", Picks(turn=2, shape=shape(conversation)), None).view["title"] == "Turn 2 · Picture 1 · a.png"  # still choosable
    none = inspect(chat(Turn("look", [picture("a.png")], answer="Nice.", status="done")), "qwen3-vl", Picks(), None)
    assert not none.has_groundings and not none.answering and none.view["title"] == "Turn 1 · Picture 1 · a.png"


def test_a_drawn_box_is_shown_selected_and_forgotten_with_the_conversations_shape():
    conversation = chat(Turn("find the cups", [picture("a.png")], answer="In Picture 1 " + JSON, status="done"))
    picks = Picks(selected="drawn", drawn=(10, 20, 30, 40), picture=1, shape=shape(conversation))
    view = inspect(conversation, "qwen3-vl", picks, None).view
    assert (view["selected"], view["drawn"]) == ("drawn", [10, 20, 30, 40])
    conversation.turns.append(Turn("next"))
    assert inspect(conversation, "qwen3-vl", picks, None).view.get("drawn") is None


def test_the_latest_turn_and_the_first_picture_it_grounded_on_are_shown():
    conversation = chat(
        Turn("look", [picture("a.png"), picture("b.png")], answer="Nice.", status="done"),
        Turn("find the cups in Picture 2", answer="In Picture 2 " + JSON, status="done"),
    )
    shown = inspect(conversation, "qwen3-vl", Picks(), None)
    assert shown.turns == [(LATEST, 0), ("Turn 1 · look", 1), ("Turn 2 · find the cups in Picture 2", 2)]
    assert shown.pictures == [("Picture 1 · a.png · 0 groundings", 1), ("Picture 2 · b.png · 3 groundings", 2)]
    assert (shown.turn, shown.picture) == (0, 2)
    assert shown.view["title"] == "Turn 2 · Picture 2 · b.png"
    assert shown.view["picture"] == {"path": "/uploads/b.png", "meta": {"_type": "gradio.FileData"}}
    assert [(i["id"], i["kind"], i["box"] or i["point"]) for i in shown.view["items"]] == [
        ("d0", "box", [0, 0, 100, 50]),
        ("d1", "box", [100, 50, 200, 100]),
        ("d2", "point", [50, 75]),
    ]
    assert shown.labels == [("cup ×2", "cup"), ("spoon", "spoon")] and shown.shown_labels == ["cup", "spoon"]
    assert shown.rows[2] == ["3", "spoon", "point", "[250, 750]", "(50, 75)", ""]
    assert "200×100 px · 2 boxes, 1 point · the model's numbers are 0–1000 of the picture" == shown.view["about"]


def test_qwen25_rows_give_the_models_pixels_and_the_size_it_saw():
    conversation = chat(Turn("where", [picture("a.png")], answer='[{"bbox_2d": [0, 0, 28, 14], "label": "x"}]', status="done"))
    shown = inspect(conversation, "qwen2.5-vl", Picks(), None)
    assert shown.rows == [["1", "x", "box", "[0, 0, 28, 14]", "(0, 0, 100, 50)", "100×50"]]
    assert shown.view["about"].endswith("the model's numbers are pixels of the 56×28 picture it saw")


def test_picks_choose_turn_picture_hidden_labels_and_selection():
    conversation = chat(
        Turn("find", [picture("a.png"), picture("b.png")], answer="In Picture 1 " + JSON, status="done"),
        Turn("again", answer=CAT, status="done"),
    )
    picks = Picks(turn=1, picture=2, shape=shape(conversation))
    shown = inspect(conversation, "qwen3-vl", picks, None)
    assert shown.view["title"] == "Turn 1 · Picture 2 · b.png" and shown.view["items"] == []
    shown = inspect(conversation, "qwen3-vl", replace(picks, picture=1, hidden=frozenset({"cup"}), selected="d2", labels=False), None)
    assert [i["id"] for i in shown.view["items"]] == ["d2"]  # the cups are hidden
    assert [row[0] for row in shown.rows] == ["3"]
    assert (shown.view["selected"], shown.view["labels"]) == ("d2", False)
    assert shown.view["about"].endswith("2 hidden · the model's numbers are 0–1000 of the picture")


def test_a_pick_made_before_the_conversation_changed_shape_is_dropped():
    """A new turn, undo, clear, load: the inspector follows the latest answer again; a regenerated answer keeps the pick."""
    conversation = chat(Turn("one", [picture("a.png")], answer=CAT, status="done"), Turn("two", answer=CAT, status="done"))
    picks = Picks(turn=1, selected="d0", shape=shape(conversation))
    assert inspect(conversation, "qwen2-vl", picks, None).view["title"].startswith("Turn 1")
    conversation.turns[-1].answer = "regenerated"
    assert inspect(conversation, "qwen2-vl", picks, None).view["selected"] == "d0"
    conversation.turns.pop()  # undo
    shown = inspect(conversation, "qwen2-vl", picks, None)
    assert shown.turn == 0 and shown.view["selected"] is None
    assert picks.current(conversation) == Picks(shape=shape(conversation))
    loaded = chat(Turn("other", [picture("b.png")], answer=CAT, status="done"), Turn("two", answer=CAT, status="done"))
    assert picks.current(loaded).turn == 0  # as many turns, other questions: dropped too
    # What the person set that is not about a turn stays.
    assert Picks(turn=1, threshold=0.3, hidden=frozenset({"x"})).current(conversation).threshold == 0.3


def test_answer_segments_mark_each_grounding_and_dim_markers():
    answer = "Here " + CAT + " and <|box_start|>(9,9),(10,10)<|box_end|>."
    detections = parse(answer, "qwen2-vl", [(200, 100)])
    pieces = answer_segments(answer, detections, 1)
    assert "".join(p["t"] for p in pieces) == answer  # nothing lost, nothing added
    marked = [p for p in pieces if p["id"] == "d0"]
    assert "".join(p["t"] for p in marked) == "<|box_start|>(0,0),(500,500)<|box_end|>"
    assert [p["t"] for p in marked if p["marker"]] == ["<|box_start|>", "<|box_end|>"]
    assert pieces[1] == {"t": "<|object_ref_start|>", "id": None, "marker": True, "here": False}
    assert all(p["here"] for p in pieces if p["id"])


def test_model_text_reaches_the_view_as_data_not_markup():
    answer = '[{"bbox_2d": [0, 0, 500, 500], "label": "<img src=x onerror=alert(1)>${alert(2)}"}]'
    conversation = chat(Turn("x", [picture("a.png")], answer=answer, status="done"))
    shown = inspect(conversation, "qwen3-vl", Picks(), None)
    assert shown.view["items"][0]["label"] == "<img src=x onerror=alert(1)>${alert(2)}"  # set as text by inspector.js
    assert shown.rows[0][1] == "<img src=x onerror=alert(1)>${alert(2)}"  # a Dataframe "str" cell shows text


def test_with_references_items_and_rows_carry_the_match():
    conversation = chat(Turn("find", [picture("a.png")], answer=JSON, status="done"))
    references = References(
        "ref.json", "COCO", {"a.png": (Reference("Cup", (0, 0, 100, 50)), Reference("saucer", (0, 0, 200, 100)))}, {}
    )
    shown = inspect(conversation, "qwen3-vl", Picks(), references)
    assert [(i["status"], i["iou"], i["color"]) for i in shown.view["items"]] == [
        ("matched", 1.0, "#16a34a"),
        ("extra", None, "#dc2626"),
        (None, None, shown.view["items"][2]["color"]),  # a point is not compared
    ]
    assert [(r["status"], r["match"]) for r in shown.view["references"]] == [("matched", "d0"), ("missed", None)]
    assert shown.rows[0][6:] == ["matched r1", "1.00"] and shown.rows[1][6:] == ["extra", ""]
    assert shown.rows[3] == ["r2", "saucer", "reference", "", "(0, 0, 200, 100)", "200×100", "missed", ""]
    assert shown.view["truth"] == (
        "2 reference boxes · matched 1 · missed 1 · extra 1 · precision 0.50 · recall 0.50 · mean IoU 1.00 (IoU ≥ 0.5, same label)"
    )
    assert shown.scores == [["1", "Picture 1", "2", "2", "1", "1", "1", "0.50", "0.50", "1.00"]]
    off = inspect(conversation, "qwen3-vl", Picks(references=False, match_labels=False), references)
    assert off.view["references"] == [] and off.view["truth"].endswith("(IoU ≥ 0.5, any label)")


def test_pictures_the_browser_cannot_show_as_they_are_are_served_as_png(tmp_path, monkeypatch):
    from PIL import ImageOps

    import demo.views.inspector as module

    monkeypatch.setattr(module, "SERVED_DIR", tmp_path / "served")
    png = tmp_path / "a.png"
    Image.new("RGB", (30, 20), "red").save(png)
    assert servable_path(str(png), (30, 20), Image.open(png)) == str(png)
    tiff = tmp_path / "a.tiff"
    Image.new("RGB", (30, 20), "red").save(tiff)
    served = servable_path(str(tiff), (30, 20), Image.open(tiff).convert("RGB"))
    assert served.endswith(".png") and Image.open(served).size == (30, 20)
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the person sees it 20×30
    Image.new("RGB", (30, 20), "red").save(turned, exif=exif)
    upright = ImageOps.exif_transpose(Image.open(turned))
    served = servable_path(str(turned), upright.size, upright)
    assert served != str(turned) and Image.open(served).size == (20, 30)
    # A session's picture: its PNG goes into that session's folder (served to its owner only, deleted with it).
    from demo.record.sessions import Sessions

    sessions = Sessions(tmp_path / "sessions")
    [kept] = sessions.adopt("s", [str(tiff)]).values()
    served = servable_path(kept, (30, 20), Image.open(kept).convert("RGB"))
    assert Path(served).is_relative_to(sessions.folder("s")) and served.endswith(".png")
    sessions.end("s")
    assert not Path(served).exists()


def test_a_conversation_with_no_picture_says_so():
    conversation = chat(Turn("hello", answer="Hi.", status="done"))
    shown = inspect(conversation, "qwen2-vl", Picks(), None)
    assert shown.pictures == [] and shown.view["message"] == "No picture in the conversation yet."


def test_the_page_exports_the_comparison_with_the_loaded_references():
    """The Export button of the page passes the loaded references and the chosen threshold on."""
    import json

    import gradio as gr

    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.page.inspector_ui import InspectorPage
    from tests.fakes import ScriptedEngine

    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([]))
    with gr.Blocks():
        page = InspectorPage(ChatHandlers(slot), gr.State())
    conversation = chat(Turn("find", [picture("a.png")], answer=CAT, status="done"))
    references = References("ref.json", "COCO", {"a.png": (Reference("the cat", (0, 0, 100, 50)),)}, {})
    paths = page.export(conversation, Picks(threshold=0.7, match_labels=False), references)
    record = json.loads(open(paths[1]).read())  # after the zip of every export
    assert record["ground_truth"]["iou_threshold"] == 0.7 and record["ground_truth"]["labels_must_match"] is False
    assert record["ground_truth"]["scores"][0]["recall"] == 1.0
