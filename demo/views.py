"""Views of a conversation: pure functions from the conversation record to what the page shows.

`chatbot_messages` gives the value of the `gr.Chatbot` (messages format, plain dicts so that
API clients get plain data too). Each image is shown with its "Picture N" label, its size and
what it cost the model, so that "compare Picture 1 and Picture 3" means the same thing to the
person and to the model. Answers are shown readably (`grounding.readable`: no raw special
tokens, no walls of JSON), and the boxes and points in them are drawn over their pictures
under the answer, with a compact list of them.
"""

from __future__ import annotations

from demo.annotations import annotated_png, by_picture, detections_markdown, turn_detections
from demo.conversation import Attachment, Conversation, Turn
from demo.markup import inert
from grounding import readable

STOPPED_NOTE = "*(Stopped.)*"


def picture_caption(number: int, attachment: Attachment) -> str:
    """'Picture 2 · cat.png · 451×300 → 252×168 px, 54 visual tokens'."""
    width, height = attachment.size_wh
    parts = [f"**Picture {number}**"]
    if attachment.name:
        parts.append(inert(attachment.name))
    size = f"{width}×{height}"
    if attachment.cost is not None:
        seen_w, seen_h = attachment.cost.input_wh
        size += f" → {seen_w}×{seen_h} px, {attachment.cost.tokens} visual tokens"
    parts.append(size)
    return " · ".join(parts)


def answer_text(turn: Turn, shown: str, waiting_note: str = "") -> str:
    """What the assistant bubble shows for `turn` in its current state; `shown` is its readable answer."""
    text = shown.strip()
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


def chatbot_messages(conversation: Conversation, family: str, waiting_note: str = "") -> list[dict]:
    """The Chatbot value: per turn its pictures, the question, the answer and the groundings drawn.

    `family` is the model's grounding format family (it says how to read the answers).
    """
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
            messages.append({"role": "user", "content": inert(turn.text)})
        detections = turn_detections(conversation, index, family)
        shown = inert(readable(turn.answer, family, detections))
        messages.append({"role": "assistant", "content": answer_text(turn, shown, waiting_note)})
        messages += grounding_messages(conversation, detections)
    return messages


def grounding_messages(conversation: Conversation, detections: list) -> list[dict]:
    """Under an answer: each referenced picture with its boxes drawn, then the list of them."""
    if not detections:
        return []
    images = conversation.images()
    messages: list[dict] = []
    for number, on_picture in by_picture(detections).items():
        count = len(on_picture)
        messages.append({"role": "assistant", "content": f"**Picture {number}** · {count} grounding{'s' * (count != 1)}"})
        path = annotated_png(images[number - 1], on_picture)
        messages.append({"role": "assistant", "content": {"path": path, "alt_text": f"Picture {number}, annotated"}})
    messages.append({"role": "assistant", "content": detections_markdown(detections)})
    return messages
