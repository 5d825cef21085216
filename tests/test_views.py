"""Pure views of the conversation record: model messages and the Chatbot value."""

from __future__ import annotations

import html

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from demo.record.conversation import Attachment, Conversation, Turn, VisionCost, to_model_messages
from demo.views.chat import answer_text, caption, chatbot_messages
from tests.helpers import parts


def answer_parts(messages: list[dict]) -> list:
    """The parts of the one answer in `messages` (its one assistant message)."""
    (answer,) = [m for m in messages if m["role"] == "assistant"]
    return parts([answer])


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
    messages = chatbot_messages(conversation, "qwen2-vl")
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
    shown = caption("Picture 2", picture("cat.png", (451, 300), VisionCost((252, 168), 54)))
    assert shown == "**Picture 2** · cat.png · 451×300 → 252×168 px, 54 visual tokens"


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("plain answer", "plain answer"),  # nothing to change
        (
            "<|object_ref_start|>the man<|object_ref_end|><|box_start|>(123,235),(324,546)<|box_end|> waves",
            "the man [Picture 1] waves",
        ),  # a grounded phrase names its picture
        ("streaming <|object_ref_start|>the ma", "streaming the ma"),  # an unfinished phrase mid-stream
        ("streaming <|box_sta", "streaming"),  # half a marker mid-stream
        ("x<|vision_pad|>y", "xy"),  # any other marker never shows
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),  # angle brackets are shown, as text (entities in the Markdown)
    ],
)
def test_the_answer_bubble_never_shows_raw_tokens(raw, shown):
    conversation = Conversation(turns=[Turn("q", [picture("a.png", (200, 100))], answer=raw, status="streaming", input_sizes=[(56, 28)])])
    bubble = answer_parts(chatbot_messages(conversation, "qwen2-vl"))[0]
    assert html.unescape(bubble) == shown  # what the person reads: the Markdown holds entities (demo/views/markup.py)
    assert "<|" not in bubble


def test_boxes_are_drawn_on_their_picture_with_a_list():
    answer = (
        "In Picture 2, <|object_ref_start|>the dog<|object_ref_end|><|box_start|>(500,500),(1000,1000)<|box_end|>"
    )
    conversation = Conversation(
        turns=[Turn("Find the dog", [picture("a.png", (200, 100)), picture("b.png", (400, 300))], answer=answer,
                    status="done", input_sizes=[(56, 28), (112, 84)])]
    )
    messages = chatbot_messages(conversation, "qwen2-vl")
    assistant = answer_parts(messages)  # one message: the answer, the picture's label, the picture drawn, the list
    assert len(assistant) == 4 and messages[-1]["content"] == assistant
    assert html.unescape(assistant[0]) == "In Picture 2, the dog [Picture 2]"
    assert assistant[1] == "**Picture 2** · 1 grounding"
    annotated = assistant[2]["path"]
    assert annotated.endswith(".jpg")  # a JPEG in the chat: encoded in milliseconds (exports are PNG)
    from PIL import Image

    with Image.open(annotated) as drawn:
        assert drawn.size == (400, 300)  # drawn on Picture 2, not on the latest or the first
    assert "| 1 | the dog | Picture 2 | (200, 150, 400, 300) |" in assistant[3]


def test_qwen25_boxes_use_the_size_the_model_saw():
    answer = '```json\n[{"bbox_2d": [0, 0, 56, 14], "label": "top half"}]\n```'
    conversation = Conversation(
        turns=[Turn("Where?", [picture("a.png", (200, 100))], answer=answer, status="done", input_sizes=[(56, 28)])]
    )
    assistant = answer_parts(chatbot_messages(conversation, "qwen2.5-vl"))
    assert html.unescape(assistant[0]) == "[1 box on Picture 1: top half]"
    assert "| 1 | top half | Picture 1 | (0, 0, 200, 50) |" in assistant[-1]


def test_a_label_cannot_break_the_detection_table():
    answer = '[{"bbox_2d": [0, 0, 500, 500], "label": "a|b<script>"}]'
    conversation = Conversation(turns=[Turn("?", [picture("a.png", (100, 100))], answer=answer, status="done", input_sizes=[(56, 56)])])
    table = answer_parts(chatbot_messages(conversation, "qwen3-vl"))[-1]
    assert "| 1 | a&#124;b&lt;script&gt; | Picture 1 | (0, 0, 50, 50) |" in table  # shown as a|b<script>, one cell


def test_an_answer_is_one_message_with_its_text_crops_pictures_and_list():
    from demo.record.conversation import Zoom

    answer = (
        '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 500, 500], "label": "cat", "img_idx": 0}}'
        '</tool_call> Picture 2: [{"bbox_2d": [0, 0, 1000, 1000], "label": "cat"}]'
    )
    crop = picture("crop.png", (20, 15))
    turn = Turn("Where?", [picture("a.png", (40, 30))], answer=answer, status="done", input_sizes=[(56, 28), (28, 28)],
                zooms=[Zoom(at=answer.index(" Picture 2"), source=1, region_xyxy=(0, 0, 20, 15), attachment=crop)])
    messages = chatbot_messages(Conversation(turns=[turn]), "qwen3-vl")
    assert [m["role"] for m in messages] == ["user", "user", "user", "assistant"]  # label, picture, question; the answer
    shown = parts(messages[-1:])
    kinds = ["file" if isinstance(p, dict) else p.split(" ·")[0] for p in shown]
    assert kinds[1:] == ["🔍 **Picture 2**", "file", "**Picture 1**", "file", "**Picture 2**", "file", "| | label | picture | pixels (x1, y1, x2, y2) or point (x, y) |\n|---|---|---|---|\n| 1 | cat | Picture 1 | (0, 0, 20, 15) |\n| 2 | cat | Picture 2 | (0, 0, 20, 15) |"]
    assert html.unescape(shown[0]) == "[1 box on Picture 1: cat] Picture 2: [1 box on Picture 2: cat]"
    assert shown[2] == {"path": "/uploads/crop.png", "alt_text": "Picture 2, a crop of Picture 1"}


def test_a_text_answer_stays_one_string_and_keeps_its_versions():
    conversation = Conversation(turns=[Turn("q", answer="first", status="done")])
    conversation.branch(0)
    conversation.turns[0].answer, conversation.turns[0].status = "second", "done"
    assert chatbot_messages(conversation, "qwen2-vl")[-1] == {
        "role": "assistant", "content": "second", "metadata": {"id": "qvc-version 0 1 2"}
    }


@pytest.mark.parametrize(
    "answer, shown, drawn",
    [
        # The model names a picture the conversation does not have (2 here): flagged, drawn on none.
        ("In Picture 5, <|object_ref_start|>the dog<|object_ref_end|><|box_start|>(0,0),(500,500)<|box_end|>",
         "In Picture 5, the dog [box on Picture 5 — there is no Picture 5]", []),
        # A tool call's img_idx past the last picture (img_idx 2 is Picture 3).
        ('Picture 1: <tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 500, 500], '
         '"label": "dog", "img_idx": 2}}</tool_call>', "Picture 1: [1 box on Picture 3: dog — there is no Picture 3]", []),
        # One box on a picture that exists, one on a picture that does not: only the first is drawn.
        ("Picture 1: <|object_ref_start|>a<|object_ref_end|><|box_start|>(0,0),(500,500)<|box_end|> "
         "Picture 9: <|object_ref_start|>b<|object_ref_end|><|box_start|>(0,0),(500,500)<|box_end|>",
         "Picture 1: a [Picture 1] Picture 9: b [box on Picture 9 — there is no Picture 9]", [1]),
    ],
)
def test_a_box_on_a_missing_picture_is_flagged_and_drawn_nowhere(answer, shown, drawn):
    conversation = Conversation(
        turns=[Turn("Find it", [picture("a.png", (200, 100)), picture("b.png", (400, 300))], answer=answer,
                    status="done", input_sizes=[(56, 28), (112, 84)])]
    )
    assistant = answer_parts(chatbot_messages(conversation, "qwen3-vl"))
    assert html.unescape(assistant[0]) == shown
    assert [int(p["alt_text"].split()[1].rstrip(",")) for p in assistant if isinstance(p, dict)] == drawn


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
    assert answer_text(turn, turn.answer) == shown


def test_questions_and_file_names_are_inert_too():
    conversation = Conversation(
        turns=[Turn("<b>hi</b>", [picture("<img src=x onerror=alert(1)>.png")], answer="ok", status="done")]
    )
    messages = chatbot_messages(conversation, "qwen2-vl")
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in messages[0]["content"]
    assert messages[2]["content"] == "&lt;b&gt;hi&lt;/b&gt;"  # the table of escapes is tests/test_inert.py


statuses = st.sampled_from(["done", "stopped", "error"])
turns = st.lists(
    st.builds(
        lambda text, images, answer, status: Turn(
            text, [picture(f"{i}.png", (i + 1, 5)) for i in range(images)], answer=answer, status=status
        ),
        st.text(max_size=30),
        st.integers(0, 3),
        st.text(max_size=30),
        statuses,
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(earlier=turns, last_text=st.text(min_size=1, max_size=30), last_images=st.integers(0, 3), system=st.text(max_size=20))
def test_model_messages_keep_every_picture_in_order_and_alternate(earlier, last_text, last_images, system):
    last = Turn(last_text, [picture(f"last{i}.png", (100 + i, 5)) for i in range(last_images)])
    conversation = Conversation(turns=[*earlier, last])
    messages = to_model_messages(conversation, system)
    roles = [m["role"] for m in messages]
    if system.strip():
        assert roles[0] == "system"
        roles = roles[1:]
    # user, assistant, user, assistant, ..., user: the turn being answered comes last.
    assert roles == ["user", "assistant"] * len(earlier) + ["user"]
    sent = [part["image"] for m in messages for part in m["content"] if part["type"] == "image"]
    assert [id(image) for image in sent] == [id(a.image) for a in conversation.images()]
    answers = [m["content"][0]["text"] for m in messages if m["role"] == "assistant"]
    assert answers == ["" if t.status == "error" else t.answer for t in earlier]
    # The chat view numbers the same pictures the same way.
    view = chatbot_messages(conversation, "qwen2-vl")
    labels = [m["content"]["alt_text"] for m in view if isinstance(m["content"], dict) and m["role"] == "user"]
    assert labels == [f"Picture {n}" for n in range(1, len(sent) + 1)]


@pytest.mark.parametrize(
    "shown_within",
    [
        (298, 200),  # a 390 px wide phone: the answer's card less its padding, 200 px high (page.css)
        (480, 200),  # a 1280 px wide desktop
    ],
    ids=["phone-390", "desktop-1280"],
)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(size=st.tuples(st.integers(1, 8000), st.integers(1, 8000)))
def test_the_chat_draws_labels_at_least_12_px_as_shown(shown_within, size):
    """A picture is shown at its own size, or shrunk into the box (never enlarged): its labels, drawn
    for CHAT_FIT, come out at least 12 px there (tests/test_answer_card_browser.py measures it)."""
    from demo.views.chat import CHAT_FIT
    from grounding.draw import font_size

    width, height = size
    scale = min(1.0, shown_within[0] / width, shown_within[1] / height)
    assert font_size(width, height, CHAT_FIT) * scale >= 12
