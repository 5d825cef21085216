"""Saving and loading conversations; a hostile file is refused with one sentence."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from demo.media.pictures import UploadError
from demo.record.conversation import Attachment, Conversation, Turn
from demo.record.limits import Limits
from demo.record.session_file import dump_conversation, load_conversation, max_file_bytes, read_conversation


def picture(color: str, size=(20, 10)) -> Attachment:
    return Attachment(path=f"/up/{color}.png", image=Image.new("RGB", size, color), name=f"{color}.png")


def saved() -> Conversation:
    return Conversation(
        turns=[
            Turn("Two?", [picture("red"), picture("blue", (8, 8))], answer="<|box_start|>(1,2),(3,4)<|box_end|>", status="done", input_sizes=[(56, 28), (56, 56)]),
            Turn("Then?", answer="half", status="stopped", input_sizes=[(56, 28), (56, 56)]),
            Turn("Fail?", answer="", status="error", error="Out of memory."),
        ]
    )


def png_b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_a_saved_conversation_loads_back_the_same(tmp_path):
    path = tmp_path / "conversation.json"
    path.write_text(dump_conversation(saved()))
    loaded = load_conversation(str(path), Limits(), tmp_path / "images")
    original = saved()
    for before, after in zip(original.turns, loaded.turns, strict=True):
        assert (after.text, after.answer, after.status, after.error, after.input_sizes) == (
            before.text, before.answer, before.status, before.error, before.input_sizes,
        )
        assert [a.name for a in after.attachments] == [a.name for a in before.attachments]
        for a, b in zip(after.attachments, before.attachments, strict=True):
            assert a.image.tobytes() == b.image.tobytes()
            assert a.path.startswith(str(tmp_path / "images"))


def test_an_answer_saved_mid_stream_loads_as_stopped(tmp_path):
    conversation = Conversation(turns=[Turn("q", answer="par", status="streaming")])
    path = tmp_path / "c.json"
    path.write_text(dump_conversation(conversation))
    assert load_conversation(str(path), Limits(), tmp_path).turns[0].status == "stopped"


def base_file(**turn) -> dict:
    return {"format": "qwen-vl-chat/conversation", "version": 1, "turns": [{"text": "q", "images": [], "answer": "a", "status": "done", "error": "", **turn}]}


HOSTILE = [
    # (file content, words of the refusal)
    ("not json at all {", "is not a conversation this app saved"),  # not JSON
    (json.dumps([1, 2, 3]), "not a conversation file of this app"),  # JSON, wrong shape
    (json.dumps({"format": "something-else", "version": 1, "turns": []}), "not a conversation file of this app"),  # wrong format
    (json.dumps({"format": "qwen-vl-chat/conversation", "version": 99, "turns": []}), "version 99"),  # from the future
    (json.dumps(base_file(status="hacked")), "unknown status"),  # a status the app does not know
    (json.dumps(base_file(text=12)), "not a string"),  # a number as the question
    (json.dumps(base_file(text="x" * 9000)), "over the length limit"),  # a question longer than typed ones may be
    (json.dumps(base_file(images=[{"name": "a.png", "png_base64": "!!!"}])), "not valid base64"),  # garbage image
    (json.dumps(base_file(images=[{"name": "a.png", "png_base64": base64.b64encode(b"plain text").decode()}])), "cannot be decoded"),  # not an image
    (json.dumps(base_file(images=[{"name": "a.png", "path": "/etc/passwd"}])), "malformed"),  # a path instead of bytes is never read
    (json.dumps(base_file(images=[{"name": "x.png", "png_base64": png_b64(Image.new("RGB", (2, 2)))}] * 40)), "more than the 32 images"),  # too many images
    (json.dumps(base_file(input_sizes=[[0, 5]])), "malformed input sizes"),  # nonsense sizes
    ("[" * 100_000 + "]" * 100_000, "is not a conversation this app saved"),  # nesting deep enough to break a parser
]


@pytest.mark.parametrize("content, words", HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_files_are_refused_with_a_sentence(tmp_path, content, words):
    path = tmp_path / "evil.json"
    path.write_text(content)
    with pytest.raises(UploadError) as refused:
        load_conversation(str(path), Limits(), tmp_path / "images")
    message = str(refused.value)
    assert message.startswith("evil.json ") and words in message and "\n" not in message


def test_a_name_with_a_path_is_only_a_name(tmp_path):
    content = base_file(images=[{"name": "../../etc/passwd", "png_base64": png_b64(Image.new("RGB", (4, 4), "red"))}])
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    loaded = load_conversation(str(path), Limits(), tmp_path / "images")
    attachment = loaded.turns[0].attachments[0]
    assert attachment.name == "passwd" and attachment.path.startswith(str(tmp_path / "images"))


def test_an_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(max_file_bytes(Limits()) + 1)  # sparse: nothing is written
    monkeypatch.setattr(Path, "read_text", lambda *a, **k: pytest.fail("the file was read"))
    with pytest.raises(UploadError, match="too large"):
        load_conversation(str(path), Limits(), tmp_path)


def video_item(**changes) -> dict:
    frame = png_b64(Image.new("RGB", (56, 28), "gray"))
    item = {"name": "v.mp4", "kind": "video", "frames_png_base64": [frame, frame], "timestamps": [0.0, 0.5],
            "source_wh": [56, 28], "source_fps": 30.0, "duration": 1.0, "sample_fps": 2.0, "factor": 28}
    return {**item, **changes}


UNREADABLE_NUMBERS = [
    # (file content, words of the refusal): values JSON's parser takes but no saved file has
    (json.dumps(base_file(images=[video_item(sample_fps=0)])), "a sampling rate of 0 frames per second"),  # crashed the chat's caption
    (json.dumps(base_file(images=[video_item(sample_fps=float("inf"))])), "holds Infinity, which is not a number"),
    (json.dumps(base_file(images=[video_item(duration=float("nan"))])), "holds NaN, which is not a number"),
    (json.dumps(base_file(images=[video_item()])).replace('"duration": 1.0', '"duration": 1e999'), "a video of turn 1 is malformed"),  # parsed as inf
    (json.dumps(base_file(images=[video_item(timestamps=[0.0, -1.0])])), "a video of turn 1 is malformed"),
    (json.dumps(base_file(images=[video_item(source_fps=1e300)])), "a video of turn 1 is malformed"),
    (json.dumps(base_file(thought_seconds=float("inf"), reasoning="r")), "holds Infinity"),
    (json.dumps(base_file(input_sizes=[[5, 5]])), "malformed input sizes"),  # a size for a picture the turn does not have
]


@pytest.mark.parametrize("content, words", UNREADABLE_NUMBERS, ids=[str(i) for i in range(len(UNREADABLE_NUMBERS))])
def test_numbers_no_saved_file_holds_are_refused_with_a_sentence(tmp_path, content, words):
    path = tmp_path / "odd.json"
    path.write_text(content)
    with pytest.raises(UploadError) as refused:
        load_conversation(str(path), Limits(), tmp_path / "images")
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_input_sizes_count_pictures_not_videos(tmp_path):
    """A video turn, then a picture turn: the picture turn's input sizes hold one size (the app's own save)."""
    turns = [
        {"text": "video", "images": [video_item()], "answer": "a", "status": "done", "error": "", "input_sizes": []},
        {"text": "picture", "images": [{"name": "p.png", "png_base64": png_b64(Image.new("RGB", (8, 8)))}],
         "answer": "b", "status": "done", "error": "", "input_sizes": [[28, 28]]},
    ]
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"format": "qwen-vl-chat/conversation", "version": 1, "turns": turns}))
    loaded = load_conversation(str(path), Limits(), tmp_path / "images")
    assert [t.input_sizes for t in loaded.turns] == [[], [(28, 28)]]


def many_turns(count: int, text: str = "question {i}?", answer: str = "answer {i}.") -> Conversation:
    return Conversation([Turn(text.format(i=i), answer=answer.format(i=i), status="done") for i in range(count)])


@pytest.mark.parametrize(
    "conversation, words",
    [
        (many_turns(60_000), "it has 60,000 turns, more than the 1,000 a conversation may have"),  # 10 MB, took 71-88 s to load
        (many_turns(50_000, "", ""), "it has 50,000 turns"),  # 50,000 empty messages in 4 MB: 118 s
        (many_turns(900, "q" * 8000, "a" * 8000), "it holds 14,400,000 characters of text, more than the 2,600,000"),
    ],
    ids=["60,000 short turns", "50,000 empty turns", "too much text"],
)
def test_a_conversation_larger_than_a_live_one_is_refused_at_once(tmp_path, conversation, words):
    path = tmp_path / "big.json"
    path.write_text(dump_conversation(conversation))
    start = time.perf_counter()
    with pytest.raises(UploadError) as refused:
        read_conversation(str(path), Limits())
    assert words in str(refused.value)
    assert time.perf_counter() - start < 3  # seconds; before: the whole file was read, checked and shown


BOX = "<|object_ref_start|>cat<|object_ref_end|><|box_start|>({i},100),(600,700)<|box_end|> "


@pytest.mark.parametrize("words", ["word ", BOX], ids=["prose", "boxes"])
def test_a_conversation_at_the_limits_loads_within_seconds(tmp_path, words):
    """As many turns and as much text as a loaded conversation may hold, read and shown (answers
    full of boxes are the slowest text to show: each is parsed)."""
    from demo.views.chat import chatbot_messages

    limits = Limits()
    each = limits.loaded_text_chars // limits.max_turns // 2
    answer = "{i} " + words * ((each - 6) // len(words.format(i=100)))
    conversation = many_turns(limits.max_turns, "{i} " + "q" * (each - 6), answer)
    path = tmp_path / "full.json"
    path.write_text(dump_conversation(conversation))
    start = time.perf_counter()
    loaded = read_conversation(str(path), limits).conversation
    chatbot_messages(loaded, "qwen2-vl")
    took = time.perf_counter() - start
    print(f"{limits.max_turns} turns, {path.stat().st_size / 1e6:.1f} MB: loaded and shown in {took:.1f} s")
    assert len(loaded.turns) == limits.max_turns and took < 15  # 0.3 s (prose) and 2-3 s (boxes) here


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turn=st.dictionaries(st.sampled_from(["text", "images", "answer", "status", "error", "input_sizes"]), json_values))
def test_any_json_either_loads_or_is_refused(tmp_path, turn):
    path = tmp_path / "any.json"
    path.write_text(json.dumps({"format": "qwen-vl-chat/conversation", "version": 1, "turns": [turn]}))
    try:
        loaded = load_conversation(str(path), Limits(), tmp_path / "images")
    except UploadError as e:
        assert "\n" not in str(e)
    else:
        assert len(loaded.turns) == 1
