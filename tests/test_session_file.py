"""Saving and loading conversations; a hostile file is refused with one sentence."""

from __future__ import annotations

import base64
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from demo.conversation import Attachment, Conversation, Turn
from demo.limits import Limits
from demo.media.pictures import UploadError
from demo.session_file import dump_conversation, load_conversation


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


def test_an_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.json"
    path.write_bytes(b" " * (3 * 1024 * 1024))
    with pytest.raises(UploadError, match="too large"):
        load_conversation(str(path), Limits(max_image_mb=0.1, max_images=2), tmp_path)


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
