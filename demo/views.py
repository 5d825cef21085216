"""Views of a conversation: pure functions from the conversation record to what the page shows.

`chatbot_messages` gives the value of the `gr.Chatbot` (messages format, plain dicts so that
API clients get plain data too). Each image is shown with its "Picture N" label, its size and
what it cost the model, so that "compare Picture 1 and Picture 3" means the same thing to the
person and to the model. Answers are shown readably: no raw special tokens.
"""

from __future__ import annotations

import re

from demo.conversation import Attachment, Conversation, Turn

STOPPED_NOTE = "*(Stopped.)*"
_REF = re.compile(r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>", re.S)
_BOX = re.compile(r"<\|(box|quad)_start\|>(.*?)<\|\1_end\|>", re.S)
_ANY_TOKEN = re.compile(r"<\|[a-z_]*\|>")
_TRAILING_PARTIAL = re.compile(r"<(\|[a-z_]*)?$")  # a marker still being streamed


def readable_answer(text: str) -> str:
    """The model's raw answer with Qwen2-VL grounding markers shown as text, never as tokens."""
    text = _REF.sub(r"**\1**", text)
    text = _BOX.sub(lambda m: f" [{m.group(2).strip()}]", text)
    text = _ANY_TOKEN.sub("", text)
    return _TRAILING_PARTIAL.sub("", text)


def picture_caption(number: int, attachment: Attachment) -> str:
    """'Picture 2 · cat.png · 451×300 → 252×168 px, 54 visual tokens'."""
    width, height = attachment.size_wh
    parts = [f"**Picture {number}**"]
    if attachment.name:
        parts.append(attachment.name)
    size = f"{width}×{height}"
    if attachment.cost is not None:
        seen_w, seen_h = attachment.cost.input_wh
        size += f" → {seen_w}×{seen_h} px, {attachment.cost.tokens} visual tokens"
    parts.append(size)
    return " · ".join(parts)


def answer_text(turn: Turn, waiting_note: str = "") -> str:
    """What the assistant bubble shows for `turn` in its current state."""
    text = readable_answer(turn.answer).strip()
    if turn.status == "waiting":
        return waiting_note or "Waiting for the model…"
    if turn.status == "streaming" and not text:
        return "…"
    if turn.status == "stopped":
        return f"{text}\n\n{STOPPED_NOTE}" if text else STOPPED_NOTE
    if turn.status == "error":
        note = f"⚠ {turn.error}"
        return f"{text}\n\n{note}" if text else note
    if turn.status == "done" and not text:
        return "*(The model gave an empty answer.)*"
    return text


def chatbot_messages(conversation: Conversation, waiting_note: str = "") -> list[dict]:
    """The Chatbot value for `conversation`: per turn, its pictures, the question, the answer."""
    messages: list[dict] = []
    for index, turn in enumerate(conversation.turns):
        first = conversation.first_picture_number(index)
        for offset, attachment in enumerate(turn.attachments):
            number = first + offset
            messages.append({"role": "user", "content": picture_caption(number, attachment)})
            messages.append(
                {"role": "user", "content": {"path": attachment.path, "alt_text": f"Picture {number}"}}
            )
        if turn.text:
            messages.append({"role": "user", "content": turn.text})
        messages.append({"role": "assistant", "content": answer_text(turn, waiting_note)})
    return messages
