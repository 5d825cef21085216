"""Every conversation the app saves loads back (issue 26): conversations of every shape are made by the
real handlers (a scripted engine answers), saved with Save, loaded with Load into another session,
and compared; saving the loaded conversation again gives the same file.

Before, a video turn followed by a picture turn saved fine and was refused on load ("turn 2 has
malformed input sizes": a turn's input sizes are per picture, the check counted videos too).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from demo.engines.base import EngineError
from demo.engines.slot import EngineSlot
from demo.page.handlers import ChatHandlers
from demo.record.conversation import Conversation
from demo.record.limits import Limits
from demo.record.session_file import dump_conversation, read_conversation
from tests.fakes import ScriptedEngine
from tests.test_video import write_video

BOX = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(100,100),(600,700)<|box_end|>"


class Request:
    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("sent")
    made = {}
    for name, color, size in (("red.png", "red", (64, 48)), ("blue.jpg", "blue", (1500, 900)), ("green.png", "green", (30, 90))):
        Image.new("RGB", size, color).save(folder / name)
        made[name] = str(folder / name)
    made["clip.mp4"] = str(write_video(folder / "clip.mp4", frames=8))
    made["long.mp4"] = str(write_video(folder / "long.mp4", frames=30, fps=5))
    return made


def handlers() -> ChatHandlers:
    """Answers in turn: boxes, a thinking model's reasoning and answer, plain text, an error."""
    engine = ScriptedEngine([])
    engine.answers = [[BOX], ["<think>Let me look.</think>", "A red square."], ["plain"], EngineError("The model ran out of memory.")] * 50
    slot = EngineSlot("scripted")
    slot.fill(engine)
    return ChatHandlers(slot, min_update_interval=0.0)


def act(chat: ChatHandlers, conversation: Conversation | None, step: tuple, files: dict, session: str) -> Conversation:
    """One thing a person does: ("ask", text, [file names]), ("regenerate",), ("edit", turn, text), ("version", turn, n)."""
    request = Request(session)
    if step[0] == "ask":
        *_, reply = chat.chat({"text": step[1], "files": [files[n] for n in step[2]]}, conversation, request=request)
    elif step[0] == "regenerate":
        *_, reply = chat.regenerate(conversation, request=request)
    elif step[0] == "edit":
        *_, reply = chat.edit(conversation, min(step[1], len(conversation.turns) - 1), step[2], request=request)
    else:
        index = min(step[1], len(conversation.turns) - 1)
        reply = chat.show_version(conversation, index, min(step[2], conversation.turns[index].version_count - 1))
    assert not reply.notice, reply.notice
    return reply.conversation


def round_trip(chat: ChatHandlers, conversation: Conversation, session: str) -> Conversation:
    saved = Path(chat.save(conversation, Request(session)))
    other = f"{session}-loader"
    reply = chat.load(str(saved), None, Request(other))
    assert reply.notice == "", reply.notice
    loaded = reply.conversation
    assert same(loaded, conversation)
    again = Path(chat.save(loaded, Request(other))).read_text("utf-8")
    assert json.loads(again) == json.loads(saved.read_text("utf-8"))  # saving what was loaded gives the same file
    chat.end_session(Request(other))
    return loaded


def same(loaded: Conversation, original: Conversation) -> bool:
    """The same turns, pictures and videos, and the same versions of each turn (issue 23: Save dropped
    the versions not shown), each with the same turns after it."""
    fields = ("text", "region", "answer", "reasoning", "thought_seconds", "error", "input_sizes")
    for a, b in zip(loaded.turns, original.turns, strict=True):
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        assert a.status == (b.status if b.status in ("done", "stopped", "error") else "stopped")
        assert (a.version, a.version_count) == (b.version, b.version_count)
        for x, y in zip(a.versions, b.versions, strict=True):
            assert [getattr(x.turn, f) for f in fields] == [getattr(y.turn, f) for f in fields]
            assert x.turn.attachments is a.attachments  # a version keeps its turn's pictures
            assert same(Conversation(x.later), Conversation(y.later))
        assert [(x.name, x.is_video, x.size_wh) for x in a.attachments] == [(y.name, y.is_video, y.size_wh) for y in b.attachments]
        for x, y in zip(a.attachments, b.attachments, strict=True):
            if x.is_video:
                assert (x.video.timestamps, x.video.sample_fps, x.video.frame_wh) == (y.video.timestamps, y.video.sample_fps, y.video.frame_wh)
                assert [f.tobytes() for f in x.video.frames] == [f.tobytes() for f in y.video.frames]
                assert Path(x.path).is_file()  # the strip shown in its place
            else:
                assert x.image.tobytes() == y.image.tobytes()
    return True


SHAPES = {
    "pictures": [("ask", "Two?", ["red.png", "blue.jpg"]), ("ask", "And this one?", ["green.png"])],
    "a video": [("ask", "What happens?", ["clip.mp4"])],
    "a video, then a picture": [("ask", "What happens?", ["clip.mp4"]), ("ask", "And here?", ["red.png"])],
    "a picture, a video, then text": [("ask", "Here?", ["red.png"]), ("ask", "Then?", ["long.mp4"]), ("ask", "So?", [])],
    "both in one turn": [("ask", "Compare", ["clip.mp4", "red.png", "long.mp4", "blue.jpg"])],
    "several turns, an error among them": [("ask", "one", ["red.png"]), ("ask", "two", []), ("ask", "three", []), ("ask", "four", ["clip.mp4"]), ("ask", "five", [])],
    "versions": [("ask", "Where?", ["red.png"]), ("regenerate",), ("ask", "Next", ["clip.mp4"]), ("edit", 0, "Where is it?"), ("version", 0, 0)],
    # Questions about a region (issue 25): on a picture of this turn, of an earlier one, in an edit.
    "regions": [
        ("ask", "About Picture 1 (1, 2)–(60, 40): what?", ["red.png"]),
        ("ask", 'About "sky" in Picture 2 (0, 0)–(1500, 900): and this?', ["blue.jpg"]),
        ("edit", 1, "About Picture 1 (0, 0)–(64, 48): the whole first one?"),
        ("version", 1, 0),
    ],
}


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_every_shape_of_conversation_the_app_saves_loads_back(files, shape):
    chat = handlers()
    conversation = None
    for step in SHAPES[shape]:
        conversation = act(chat, conversation, step, files, "maker")
    round_trip(chat, conversation, "maker")
    chat.end_session(Request("maker"))


steps = st.one_of(
    st.tuples(st.just("ask"), st.text(min_size=1, max_size=12).filter(str.strip), st.lists(st.sampled_from(["red.png", "blue.jpg", "green.png", "clip.mp4", "long.mp4"]), max_size=3)),
    st.tuples(st.just("regenerate")),
    st.tuples(st.just("edit"), st.integers(0, 5), st.text(min_size=1, max_size=12).filter(str.strip)),
    st.tuples(st.just("version"), st.integers(0, 5), st.integers(0, 3)),
)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(steps, min_size=1, max_size=6).filter(lambda s: s[0][0] == "ask"))
def test_whatever_a_person_does_the_saved_conversation_loads_back(files, script):
    chat = handlers()
    conversation = None
    for step in script:
        if step[0] == "edit" and step[2].strip() == conversation.turns[min(step[1], len(conversation.turns) - 1)].text:
            continue  # an unchanged question changes nothing
        conversation = act(chat, conversation, step, files, "person")
    round_trip(chat, conversation, "person")
    chat.end_session(Request("person"))


def test_a_thinking_turn_and_a_saved_mid_stream_answer_load_back(tmp_path):
    from demo.record.conversation import Turn

    conversation = Conversation([
        Turn("Think", answer="Done.", reasoning="First this, then that.", thought_seconds=2.5, status="done"),
        Turn("Cut", answer="half", reasoning="still", status="streaming"),
    ])
    path = tmp_path / "saved.json"
    path.write_text(dump_conversation(conversation))
    loaded = read_conversation(str(path), Limits()).conversation
    assert [(t.reasoning, t.thought_seconds, t.status) for t in loaded.turns] == [("First this, then that.", 2.5, "done"), ("still", None, "stopped")]


def test_hidden_versions_count_against_the_limits_and_deep_nesting_is_one_sentence(tmp_path):
    """Every version is held in memory once loaded: its turns count against the turns a conversation
    may have, and a file nested deeper than anyone could click is refused with one sentence."""
    from demo.media.pictures import UploadError
    from demo.record.conversation import Turn, Version

    def nested(depth: int) -> Conversation:
        turn = Turn("q", answer="a", status="done")
        for _ in range(depth):
            turn = Turn("q", answer="a", status="done", versions=[Version(Turn("old", answer="b", status="done"), [turn])], version=1)
        return Conversation([turn])

    path = tmp_path / "saved.json"
    path.write_text(dump_conversation(nested(20)))
    loaded = read_conversation(str(path), Limits()).conversation
    assert loaded.turns[0].version_count == 2 and loaded.turns[0].versions[0].later[0].version_count == 2
    path.write_text(dump_conversation(nested(20)))
    with pytest.raises(UploadError, match="more than the 30 a conversation may have"):
        read_conversation(str(path), Limits(max_turns=30))  # 20 levels of 2 turns each, and the last
    inner = '{"text": "q", "images": [], "answer": "a", "status": "done", "error": ""}'
    for _ in range(5000):  # deeper than Python's JSON reader goes: written by hand
        inner = ('{"text": "q", "images": [], "answer": "a", "status": "done", "error": "", "version": 1, '
                 f'"versions": [{{"turn": {{"text": "o", "answer": "b", "status": "done", "error": ""}}, "later": [{inner}]}}]}}')
    path.write_text(f'{{"format": "qwen-vl-chat/conversation", "version": 1, "turns": [{inner}]}}')
    with pytest.raises(UploadError, match="saved.json is not a conversation this app saved"):
        read_conversation(str(path), Limits(max_turns=100_000))
