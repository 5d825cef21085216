"""The chat handlers, driven as plain functions with a scripted engine (no server, no model)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image, ImageStat

from demo.engines.base import EngineError
from demo.engines.slot import EngineSlot
from demo.page.handlers import EMPTY_MESSAGE, ChatHandlers
from demo.page.settings import Settings
from demo.record.conversation import Conversation
from tests.fakes import ScriptedEngine
from tests.helpers import shown


class Request:
    """Stands in for gr.Request: only the session id is read."""

    def __init__(self, session_hash: str = "s1") -> None:
        self.session_hash = session_hash


def make(answers, delay: float = 0.0) -> tuple[ChatHandlers, ScriptedEngine]:
    engine = ScriptedEngine(answers, delay=delay)
    slot = EngineSlot("scripted")
    slot.fill(engine)
    return ChatHandlers(slot, min_update_interval=0.0), engine


def run(generator):
    return list(generator)[-1]


def test_a_turn_streams_and_ends_done(photos):
    handlers, engine = make([["Hel", "lo", "!"]])
    # A reply holds the conversation record, which goes on changing: the page renders each one as it comes.
    updates = [(reply, shown(reply)) for reply in handlers.chat({"text": "Hi", "files": [str(photos["chelsea"])]}, None, request=Request())]
    chatbot, conversation = updates[-1][1], updates[-1][0].conversation
    assert [view[-1]["content"] for _, view in updates] == ["…", "Hel", "Hello", "Hello!", "Hello!"]
    # The first reply clears the textbox; later ones leave alone what the person types meanwhile.
    assert [reply.message for reply, _ in updates] == [EMPTY_MESSAGE, None, None, None, None]
    turn = conversation.turns[0]
    assert (turn.text, turn.answer, turn.status) == ("Hi", "Hello!", "done")
    assert turn.attachments[0].cost is not None
    assert chatbot[0]["content"].startswith("**Picture 1** · chelsea.png · 451×300")


def test_pictures_reach_the_engine_in_conversation_order(photos):
    handlers, engine = make([["a"], ["b"]])
    conversation = run(handlers.chat({"text": "two", "files": [str(photos["chelsea"]), str(photos["coffee"])]}, None)).conversation
    run(handlers.chat({"text": "one more", "files": [str(photos["rocket"])]}, conversation))
    messages, _ = engine.calls[-1]
    images = [part["image"] for m in messages for part in m["content"] if part["type"] == "image"]
    # Each picture reaches the engine at the size its cost says (the fake engine sees 28x28), in order.
    assert [image.size for image in images] == [a.cost.input_wh for a in conversation.images()] == [(28, 28)] * 3
    expected = [Image.open(photos[n]).convert("RGB").resize((28, 28), Image.Resampling.BICUBIC) for n in ("chelsea", "coffee", "rocket")]
    for got, want in zip(images, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(ImageStat.Stat(got).mean, ImageStat.Stat(want).mean, strict=True)) < 3
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]


def test_settings_reach_the_engine():
    handlers, engine = make([["a"]])
    run(handlers.chat("Hi", None, Settings(64, 0.5, 0.7, "Be brief.", 0, 100_000)))
    _, settings = engine.calls[0]
    assert (settings.max_new_tokens, settings.temperature, settings.top_p, settings.system_prompt) == (64, 0.5, 0.7, "Be brief.")
    assert (settings.min_pixels, settings.max_pixels) == (None, 100_000)  # 0 or empty means the model's default


def refused(updates) -> str:
    """The notice of a refused message; checks that the conversation and the textbox were left alone."""
    (reply,) = updates
    chatbot = shown(reply)
    assert reply.message is None
    assert chatbot[-1]["role"] == "assistant" and chatbot[-1]["content"].startswith("⚠ Not sent: ")
    return chatbot[-1]["content"]


@pytest.mark.parametrize(
    "message",
    [
        {"text": "   ", "files": []},  # blank
        None,  # nothing at all
    ],
)
def test_an_empty_message_is_refused(message):
    handlers, engine = make([])
    assert "Type a question" in refused(list(handlers.chat(message, Conversation())))
    assert not engine.calls


def test_a_file_that_is_not_an_image_is_refused_and_the_conversation_is_unchanged(tmp_path):
    handlers, engine = make([["fine"]])
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    conversation = Conversation()
    assert "not an image" in refused(list(handlers.chat({"text": "read this", "files": [str(notes)]}, conversation)))
    assert conversation.turns == [] and not engine.calls
    conversation = run(handlers.chat("and now?", conversation)).conversation  # the session goes on
    assert conversation.turns[0].answer == "fine"


def test_an_image_the_model_cannot_take_is_refused_before_the_turn(tmp_path):
    from PIL import Image

    handlers, engine = make([])
    strip = tmp_path / "strip.png"
    Image.new("RGB", (4000, 10)).save(strip)
    conversation = Conversation()
    assert "aspect ratio" in refused(list(handlers.chat({"text": "what?", "files": [str(strip)]}, conversation)))
    assert conversation.turns == []


def test_bad_settings_are_refused_with_their_name():
    handlers, engine = make([])
    assert "top_p" in refused(list(handlers.chat("hi", None, Settings(64, 0.5, 0.0))))


def test_stop_keeps_the_partial_answer_and_the_next_turn_works():
    handlers, engine = make([["x"] * 10_000, ["fine"]], delay=0.001)
    session = Request("s1")
    updates = handlers.chat("long please", None, request=session)
    conversation = next(updates).conversation
    next(updates)
    threading.Timer(0.05, handlers.stop, args=(conversation, session)).start()
    run(updates)
    turn = conversation.turns[0]
    assert turn.status == "stopped" and 0 < len(turn.answer) < 10_000
    assert engine.active == 0
    conversation = run(handlers.chat("next", conversation, request=session)).conversation
    assert conversation.turns[1].answer == "fine" and conversation.turns[1].status == "done"


def test_stop_returns_the_view_after_the_answer_has_stopped():
    handlers, engine = make([["x"] * 10_000], delay=0.001)
    session = Request("s1")
    updates = handlers.chat("long please", None, request=session)
    conversation = next(updates).conversation
    consumer = threading.Thread(target=run, args=(updates,))
    consumer.start()
    time.sleep(0.05)
    view = shown(handlers.stop(conversation, session))
    consumer.join(5)
    assert view[-1]["content"].endswith("*(Stopped.)*")


def test_stop_in_one_session_leaves_another_alone():
    handlers, engine = make([["a"] * 300, ["b"] * 300], delay=0.001)
    first = handlers.chat("one", None, request=Request("s1"))
    second = handlers.chat("two", None, request=Request("s2"))
    conversation_1 = next(first).conversation
    conversation_2 = next(second).conversation
    next(first), next(second)
    threading.Timer(0.05, handlers.stop, args=(conversation_1, Request("s1"))).start()
    run(first), run(second)
    assert conversation_1.turns[0].status == "stopped"
    assert conversation_2.turns[0].status == "done" and conversation_2.turns[0].answer == "b" * 300


def test_closing_the_generator_stops_the_answer():
    """Gradio closes the handler's generator on Stop, on job.cancel() and when the tab closes."""
    handlers, engine = make([["x"] * 10_000])
    updates = handlers.chat("long", None, request=Request())
    conversation = next(updates).conversation
    next(updates)
    updates.close()
    assert conversation.turns[0].status == "stopped"
    assert engine.active == 0
    assert handlers.writing.of("s1") is None


def test_an_engine_error_is_shown_and_the_next_turn_works():
    handlers, engine = make([EngineError("The model ran out of memory."), ["recovered"]])
    reply = run(handlers.chat("first", None))
    assert shown(reply)[-1]["content"] == "⚠ The model ran out of memory."
    conversation = run(handlers.chat("second", reply.conversation)).conversation
    assert conversation.turns[1].answer == "recovered"


def test_an_unexpected_crash_is_shown_as_a_sentence():
    handlers, engine = make([RuntimeError("kaboom")])
    reply = run(handlers.chat("first", None))
    assert reply.conversation.turns[0].status == "error"
    assert "kaboom" in shown(reply)[-1]["content"]


def test_regenerate_replaces_the_last_answer():
    handlers, engine = make([["first"], ["second"]])
    conversation = run(handlers.chat("q", None)).conversation
    reply = run(handlers.regenerate(conversation))
    assert len(reply.conversation.turns) == 1 and reply.conversation.turns[0].answer == "second"
    assert shown(reply)[-1]["content"] == "second"  # the first answer is kept (see test_newcomer_page)
    assert shown(reply)[-1]["metadata"] == {"id": "qvc-version 0 1 2"}
    messages, _ = engine.calls[-1]
    assert [m["role"] for m in messages] == ["system", "user"]  # the old answer is not shown to the model


def test_regenerate_with_nothing_to_regenerate_is_refused():
    """One sentence in the chat, no exception (an exception would leave the page busy)."""
    handlers, engine = make([])
    reply = run(handlers.regenerate(None))
    assert reply.conversation.turns == [] and not engine.calls
    assert shown(reply)[-1]["content"] == "⚠ Not regenerated: There is no answer to regenerate yet."


def test_undo_removes_the_last_turn_and_gives_back_its_message(photos):
    handlers, _ = make([["a"], ["b"]])
    conversation = run(handlers.chat("one", None)).conversation
    conversation = run(handlers.chat({"text": "two", "files": [str(photos["coffee"])]}, conversation)).conversation
    reply = handlers.undo(conversation)
    assert [t.text for t in reply.conversation.turns] == ["one"]
    # The message comes back with its picture, now the copy in the session's folder.
    restored = reply.message
    assert restored["text"] == "two" and [Path(f).name for f in restored["files"]] == ["coffee.png"]
    assert Path(restored["files"][0]).read_bytes() == photos["coffee"].read_bytes()
    assert shown(reply)[-1]["content"] == "a"


def test_clear_starts_over_and_leaves_the_draft_alone():
    handlers, _ = make([["a"]])
    run(handlers.chat("one", None))
    reply = handlers.clear()
    assert shown(reply) == [] and reply.conversation.turns == []
    assert reply.message is None  # issue 23: Clear emptied the textbox too, losing what was being typed


class _Tab:
    session_hash = "tab-clear"


def test_clear_can_be_undone_until_the_next_answer(photos):
    handlers, _ = make([["a"], ["b"], ["c"]])
    reply = run(handlers.chat({"text": "one", "files": [str(photos["coffee"])]}, None, request=_Tab()))
    before, picture = reply.conversation, Path(reply.conversation.turns[0].attachments[0].path)
    handlers.clear(_Tab(), before)
    assert picture.exists()  # set aside, files and all
    back = handlers.restore(None, _Tab()).conversation
    assert back is before and [t.answer for t in back.turns] == ["a"] and picture.exists()
    # Cleared again, then a new answer: the cleared conversation and its files are gone.
    handlers.clear(_Tab(), back)
    run(handlers.chat("two", None, request=_Tab()))
    assert not picture.exists() and before.turns == []
    assert handlers.restore(None, _Tab()).conversation.turns == []  # nothing to bring back


def test_a_question_asked_while_loading_waits_for_the_model():
    engine = ScriptedEngine([["ready now"]])
    slot = EngineSlot("scripted")
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    threading.Timer(1.5, slot.fill, args=(engine,)).start()
    updates = [(reply, shown(reply)) for reply in handlers.chat("hello", None)]
    assert "still loading" in updates[0][1][-1]["content"]
    updates = [reply for reply, _ in updates]
    assert updates[0].message == EMPTY_MESSAGE and updates[1].message is None
    assert updates[-1].conversation.turns[0].answer == "ready now"


def test_a_model_that_failed_to_load_says_so():
    slot = EngineSlot("broken-model")
    slot.fail("no such model")
    handlers = ChatHandlers(slot)
    reply = run(handlers.chat("hello", None))
    assert reply.conversation.turns[0].status == "error"
    assert "no such model" in shown(reply)[-1]["content"]


def test_status_line_follows_loading():
    slot = EngineSlot("scripted")
    handlers = ChatHandlers(slot)
    line, timer = handlers.status()
    assert line.startswith("Loading **scripted**") and timer.active is True
    engine = ScriptedEngine([])
    engine.random_weights = True
    slot.fill(engine)
    line, timer = handlers.status()
    assert "is ready" in line and "random weights" in line and timer.active is False


def test_save_then_load_restores_the_conversation(photos, tmp_path):
    handlers, _ = make([["an answer"]])
    *_, reply = handlers.chat({"text": "keep this", "files": [str(photos["rocket"])]}, None)
    saved = handlers.save(reply.conversation)
    reply = handlers.load(saved, Conversation())
    chatbot, loaded = shown(reply), reply.conversation
    assert [(t.text, t.answer, t.status) for t in loaded.turns] == [("keep this", "an answer", "done")]
    assert loaded.turns[0].attachments[0].image.size == (640, 427)
    assert chatbot[0]["content"].startswith("**Picture 1** · rocket.jpg")


def test_loading_a_bad_file_keeps_the_current_conversation(tmp_path):
    handlers, _ = make([["a"]])
    *_, reply = handlers.chat("mine", None)
    conversation = reply.conversation
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    reply = handlers.load(str(bad), conversation)
    assert reply.conversation is conversation and reply.message is None
    assert shown(reply)[-1]["content"].startswith("⚠ Not loaded: bad.json is not a conversation")
    with pytest.raises(gr.Error):
        handlers.save(Conversation())


def saved_video_file(tmp_path: Path, **changes) -> Path:
    """The app's own save of a conversation with a video, with `changes` made to the video's fields."""
    from tests.test_video import write_video

    handlers, _ = make([["a video"]])
    clip = write_video(tmp_path / "clip.mp4", frames=8)
    conversation = run(handlers.chat({"text": "What happens?", "files": [str(clip)]}, None, request=Request("maker"))).conversation
    data = json.loads(Path(handlers.save(conversation, Request("maker"))).read_text())
    data["turns"][0]["images"][0].update(changes)
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(data))
    return path


def overflowing(path: Path) -> Path:
    """The file with its video's rate written as 1e999 (JSON's parser reads it as infinity)."""
    path.write_text(path.read_text().replace('"sample_fps": 123.25', '"sample_fps": 1e999'))
    return path


def _break_drawing(monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("cannot draw this")

    monkeypatch.setattr("demo.page.handlers.chatbot_messages", crash)


def _fill_the_disk(monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", "/srv/secret/loaded/x.png")

    monkeypatch.setattr("demo.page.handlers.write_pictures", full)


UNLOADABLE = {
    # (how the file is made or the server breaks, words of the one sentence)
    "sample_fps 0": (lambda tmp_path, mp: saved_video_file(tmp_path, sample_fps=0), "a sampling rate of 0 frames per second"),
    "NaN": (lambda tmp_path, mp: saved_video_file(tmp_path, duration=float("nan")), "holds NaN, which is not a number"),
    "1e999": (lambda tmp_path, mp: overflowing(saved_video_file(tmp_path, sample_fps=123.25)), "a video of turn 1 is malformed"),
    "the chat cannot be drawn": (lambda tmp_path, mp: _break_drawing(mp) or saved_video_file(tmp_path), "could not be shown (RuntimeError)"),
    "the disk is full": (lambda tmp_path, mp: _fill_the_disk(mp) or saved_video_file(tmp_path), "could not read or write it (No space left on device)"),
}


@pytest.mark.parametrize("case", UNLOADABLE, ids=list(UNLOADABLE))
def test_a_file_that_cannot_be_loaded_leaves_everything_as_it_was(photos, tmp_path, monkeypatch, case):
    make_file, words = UNLOADABLE[case]
    handlers, _ = make([["first answer"], ["second answer"]])
    tab = Request("keeper")
    conversation = run(handlers.chat({"text": "Keep me", "files": [str(photos["coffee"])]}, None, request=tab)).conversation
    picture = Path(conversation.turns[0].attachments[0].path)
    bad = make_file(tmp_path, monkeypatch)  # (made by handlers of its own)
    folders = sorted(handlers.sessions.root.iterdir())

    reply = handlers.load(str(bad), conversation, tab)
    notice = shown(reply)[-1]["content"]
    assert notice.startswith("⚠ Not loaded: ") and words in notice and "\n" not in notice and "/srv/" not in notice
    assert reply.conversation is conversation and [t.text for t in conversation.turns] == ["Keep me"]
    assert conversation.turns[0].attachments[0].image is not None and picture.is_file()
    assert sorted(handlers.sessions.root.iterdir()) == folders  # no folder left behind, none deleted

    # What Clear set aside stays too: Undo brings it back after a refused Load.
    handlers.clear(tab, conversation)
    reply = handlers.load(str(bad), Conversation(), tab)
    assert reply.notice.startswith("Not loaded: ")
    assert handlers.restore(None, tab).conversation is conversation and picture.is_file()
    handlers.end_session(tab)


def test_a_conversation_stops_at_its_turns_and_its_text_as_a_loaded_one_does():
    from demo.record.limits import Limits

    engine = ScriptedEngine([["ok"]] * 10)
    slot = EngineSlot("scripted")
    slot.fill(engine)
    handlers = ChatHandlers(slot, min_update_interval=0.0, limits=Limits(max_turns=2, max_text_chars=40))
    conversation = run(handlers.chat("one", None)).conversation
    conversation = run(handlers.chat("two", conversation)).conversation
    assert "This conversation has 2 turns, the most allowed (2): clear it or start a new one." in refused(list(handlers.chat("three", conversation)))
    handlers = ChatHandlers(slot, min_update_interval=0.0, limits=Limits(max_text_chars=40))
    conversation = run(handlers.chat("x" * 30, None)).conversation  # 32 characters with its answer
    assert "would hold 43 characters of text, more than the 40 allowed" in refused(list(handlers.chat("y" * 11, conversation)))
    assert len(conversation.turns) == 1
