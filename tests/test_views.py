"""Pure views of the conversation record: model messages and the Chatbot value."""

from __future__ import annotations

import pytest
from PIL import Image

from demo.conversation import Attachment, Conversation, Turn, to_model_messages
from demo.engine import VisionCost
from demo.views import answer_text, chatbot_messages, picture_caption, readable_answer


def picture(name: str, size=(40, 30), cost: VisionCost | None = None) -> Attachment:
    return Attachment(path=f"/uploads/{name}", image=Image.new("RGB", size), name=name, cost=cost)


def test_model_messages_put_images_first_and_alternate_roles():
    conversation = Conversation(
        turns=[
            Turn("Compare", [picture("a.png"), picture("b.png")], answer="Same.", status="done"),
            Turn("Why?", answer="", status="stopped"),  # stopped before any text: still an assistant message
            Turn("Last"),
        ]
    )
    messages = to_model_messages(conversation, "Be brief.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [part["type"] for part in messages[1]["content"]] == ["image", "image", "text"]
    assert messages[1]["content"][0]["image"] is conversation.turns[0].attachments[0].image
    assert messages[4]["content"] == [{"type": "text", "text": ""}]


def test_model_messages_keep_the_raw_answer_text():
    raw = "<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|> & <b>"
    conversation = Conversation(turns=[Turn("q", answer=raw, status="done"), Turn("next")])
    assert to_model_messages(conversation, "")[1]["content"][0]["text"] == raw


def test_chatbot_labels_each_picture_over_the_whole_conversation():
    conversation = Conversation(
        turns=[
            Turn("Compare", [picture("a.png"), picture("b.png")], answer="ok", status="done"),
            Turn("Text only", answer="fine", status="done"),
            Turn("This one?", [picture("c.png", cost=VisionCost((56, 28), 2))], status="streaming"),
        ]
    )
    messages = chatbot_messages(conversation)
    captions = [m["content"] for m in messages if isinstance(m["content"], str) and m["content"].startswith("**Picture")]
    assert [c.split("**")[1] for c in captions] == ["Picture 1", "Picture 2", "Picture 3"]
    files = [m["content"] for m in messages if isinstance(m["content"], dict)]
    assert [(f["path"], f["alt_text"]) for f in files] == [
        ("/uploads/a.png", "Picture 1"),
        ("/uploads/b.png", "Picture 2"),
        ("/uploads/c.png", "Picture 3"),
    ]
    assert [m["role"] for m in messages][-2:] == ["user", "assistant"]
    assert messages[-1]["content"] == "…"  # streaming, nothing yet


def test_picture_caption_shows_size_and_visual_tokens():
    caption = picture_caption(2, picture("cat.png", (451, 300), VisionCost((252, 168), 54)))
    assert caption == "**Picture 2** · cat.png · 451×300 → 252×168 px, 54 visual tokens"


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("plain answer", "plain answer"),  # nothing to change
        (
            "<|object_ref_start|>the man<|object_ref_end|><|box_start|>(123,235),(324,546)<|box_end|> waves",
            "**the man** [(123,235),(324,546)] waves",
        ),  # a grounded phrase
        ("a box <|box_start|>(1,2),(3,4)<|box_end|>", "a box  [(1,2),(3,4)]"),  # a box with no phrase
        ("streaming <|object_ref_start|>the ma", "streaming the ma"),  # an unfinished phrase mid-stream
        ("streaming <|box_sta", "streaming "),  # half a marker mid-stream
        ("trailing <", "trailing "),  # the first byte of a marker
        ("x<|vision_pad|>y", "xy"),  # any other marker never shows
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),  # ordinary angle brackets stay
    ],
)
def test_readable_answer_never_shows_raw_tokens(raw, shown):
    assert readable_answer(raw) == shown
    assert "<|" not in readable_answer(raw)


@pytest.mark.parametrize(
    "turn, shown",
    [
        (Turn("q"), "Waiting for the model…"),  # queued
        (Turn("q", answer="Hel", status="streaming"), "Hel"),  # growing
        (Turn("q", answer="Half", status="stopped"), "Half\n\n*(Stopped.)*"),  # Stop keeps the partial answer
        (Turn("q", status="error", error="Out of memory."), "⚠ Out of memory."),  # failure, one sentence
        (Turn("q", answer="", status="done"), "*(The model gave an empty answer.)*"),  # nothing said
    ],
)
def test_answer_text_by_status(turn, shown):
    assert answer_text(turn) == shown
