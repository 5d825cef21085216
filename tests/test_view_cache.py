"""Finished answers are parsed once; a streamed update re-parses only the answer being written."""

from __future__ import annotations

import pytest
from PIL import Image

from bench import views as bench
from demo.record.conversation import Attachment, Conversation, Turn
from demo.views import annotations
from demo.views.chat import chatbot_messages

ANSWER = '[{"bbox_2d": [0, 0, 500, 500], "label": "cat"}, {"bbox_2d": [500, 500, 1000, 1000], "label": "cup"}]'


@pytest.fixture
def parses(monkeypatch):
    """The answers `grounding.parse` is called on, in order."""
    calls: list[str] = []
    original = annotations.parse
    monkeypatch.setattr(annotations, "parse", lambda answer, *a, **k: calls.append(answer) or original(answer, *a, **k))
    bench.empty_caches()
    yield calls
    bench.empty_caches()


def conversation(*turns: Turn) -> Conversation:
    picture = Attachment(path="/uploads/a.png", image=Image.new("RGB", (200, 100)), name="a.png")
    turns[0].attachments.append(picture)
    for turn in turns:
        turn.input_sizes = [(56, 28)]
    return Conversation(turns=list(turns))


def test_a_finished_answer_is_parsed_once_over_many_updates(parses):
    chat = conversation(Turn("find", answer=ANSWER, status="done"), Turn("more", answer="", status="streaming"))
    for piece in ["In ", "Picture 1", ' [{"point_2d": [1, 2]}]']:
        chat.turns[1].answer += piece
        chatbot_messages(chat, "qwen3-vl")
    assert parses.count(ANSWER) == 1  # cached after the first update
    assert len([a for a in parses if a != ANSWER]) == 3  # the streaming answer, at every update


def test_the_cache_key_holds_everything_the_detections_depend_on(parses):
    chat = conversation(Turn("find", answer=ANSWER, status="done"))
    first = annotations.turn_detections(chat, 0, "qwen3-vl")
    assert annotations.turn_detections(chat, 0, "qwen3-vl") == first and len(parses) == 1
    assert annotations.turn_detections(chat, 0, "qwen2.5-vl") != first  # another family: other coordinates
    chat.turns[0].input_sizes = [(112, 56)]
    annotations.turn_detections(chat, 0, "qwen2.5-vl")  # the model saw it at another size
    chat.turns[0].answer = ANSWER.replace("500, 500, 1000", "400, 400, 1000")  # regenerated
    assert annotations.turn_detections(chat, 0, "qwen3-vl") != first
    assert len(parses) == 4


def test_cached_detections_are_the_parsed_ones_and_callers_cannot_change_them(parses):
    chat = conversation(Turn("find", answer=ANSWER, status="done"))
    cached = annotations.turn_detections(chat, 0, "qwen3-vl")
    cached.clear()  # a caller's list is its own
    bench.empty_caches()
    assert annotations.turn_detections(chat, 0, "qwen3-vl") == annotations.parse(ANSWER, "qwen3-vl", [(200, 100)], [(56, 28)])


@pytest.mark.slow  # a timing: noisy on a loaded 2-core machine; the parse-once tests above are the exact check
def test_the_benchmark_shows_the_finished_turns_cost_almost_nothing_cached():
    figures = bench.main(["--turns", "6", "--boxes", "10", "--updates", "8"])
    uncached, cached = figures["uncached"], figures["cached"]
    assert cached["finished_turns_median_ms"] * 3 < uncached["finished_turns_median_ms"]
    assert cached["parse_median_ms"] < uncached["parse_median_ms"]


def test_a_loaded_conversation_of_many_answers_with_boxes_shows_in_seconds(tmp_path):
    """Issue 26: each answer's picture with its boxes was a PNG of the kept picture (a megapixel:
    0.15-0.36 s to encode), so 101 answers with boxes on one 1024x1024 picture took 30.7 s to show
    and the 1,000 a loaded conversation may hold minutes. In the chat it is now a JPEG of about
    twice the size it is shown at (exports stay PNG): 0.75 s for those 101 here."""
    import time

    import numpy as np

    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.record.session_file import dump_conversation
    from tests.fakes import ScriptedEngine
    from tests.helpers import parts, shown

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    photo = Image.fromarray(noise).resize((1024, 1024), Image.Resampling.BILINEAR)  # photo-like: hard to compress
    photo.save(tmp_path / "p.png")
    turns = [
        Turn(f"where is it? ({n})", [Attachment(path=str(tmp_path / "p.png"), image=photo, name="p.png")] if n == 0 else [],
             answer=f"<|object_ref_start|>cat<|object_ref_end|><|box_start|>({n},10),(950,950)<|box_end|>",
             status="done", input_sizes=[(1008, 1008)])
        for n in range(300)
    ]
    saved = tmp_path / "saved.json"
    saved.write_text(dump_conversation(Conversation(turns)))
    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([]))
    handlers = ChatHandlers(slot)
    start = time.monotonic()
    reply = handlers.load(str(saved), None)
    view = shown(reply)
    seconds = time.monotonic() - start
    print(f"300 answers, each with its own box on one 1024x1024 picture: loaded and shown in {seconds:.2f} s")
    drawn = [p["path"] for p in parts(view, "assistant") if isinstance(p, dict)]
    assert not reply.notice and len(drawn) == 300 and len(set(drawn)) == 300  # every answer's own boxes
    with Image.open(drawn[0]) as first:
        assert first.format == "JPEG" and first.size == (512, 512)  # shown within 520x200: 200 px, twice is 400
    assert seconds < 12, f"300 answers with boxes took {seconds:.1f} s to load and show"
