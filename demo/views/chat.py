"""Views of a conversation: pure functions from the conversation record to what the page shows.

`chatbot_messages` gives the value of the `gr.Chatbot` (messages format, plain dicts so that
API clients get plain data too). Each image is shown with its "Picture N" label, its size and
what it cost the model, so that "compare Picture 1 and Picture 3" means the same thing to the
person and to the model. An answer is one message (`answer_message`): its text, shown readably
(`grounding.readable`: no raw special tokens, no walls of JSON, a box on a picture that does not
exist flagged), then the crops it zoomed into, the pictures its boxes and points are on with
them drawn, and a compact list of them. A thinking model's reasoning is a folded "thought"
above its answer (`reasoning_message`): open with a spinner while it streams, folded once it
has ended, opened by a click.
"""

from __future__ import annotations

import re
from functools import lru_cache

from demo.record.conversation import Attachment, Conversation, Turn
from demo.record.region import with_question
from demo.views.annotations import (
    CACHED_TURNS,
    STILL_CHANGING,
    annotated_image,
    by_picture,
    detections_markdown,
    turn_detections,
    undrawn_groundings,
)
from demo.views.markup import inert, message
from demo.views.region import region_messages
from grounding import readable

STOPPED_NOTE = "*(Stopped.)*"
# The narrowest box an annotated picture is shown within in the chat, which its lines and label tags are
# drawn for (grounding.draw's `fit`): 200 px high (page.css), and as wide as an answer's card less its
# padding, about 298 px on a 390 px wide phone (some room kept). A desktop shows it as high and up to
# 480 px wide: its tags are larger there. tests/test_answer_card_browser.py measures both.
CHAT_FIT = (280, 200)
# An answer that ended inside the reasoning: the reasoning is shown, and this instead of an answer.
NO_ANSWER_NOTES = {
    "done": "*(No answer yet: the answer ended while the model was still reasoning. More max new tokens "
    "(Settings) let it finish; its reasoning so far is above.)*",
    "stopped": "*(Stopped while the model was still reasoning: no answer yet. Its reasoning so far is above.)*",
}
_TIMESTAMP = re.compile(r"(?<![\d:.])(\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?)(?![\d:])")  # 0:12, 01:02:03, 12:05.5


def caption(label: str, attachment: Attachment) -> str:
    """'Picture 2 · cat.png · 451×300 → 252×168 px, 54 visual tokens', or for a video
    'Video 1 · clip.mp4 · 24 frames at 2.0 fps, 392×280 px each, 1,680 visual tokens'."""
    parts = [f"**{label}**"]
    if attachment.name:
        parts.append(inert(attachment.name))
    if attachment.video is not None:
        parts.append(attachment.video.describe())
        return " · ".join(parts)
    width, height = attachment.size_wh
    size = f"{width}×{height}"
    if attachment.cost is not None:
        seen_w, seen_h = attachment.cost.input_wh
        size += f" → {seen_w}×{seen_h} px, {attachment.cost.tokens} visual tokens"
    parts.append(size)
    return " · ".join(parts)


def answer_text(turn: Turn, shown: str, waiting_note: str = "") -> str:
    """What the assistant bubble shows for `turn` in its current state; `shown` is its answer as inert Markdown."""
    text = shown.strip()
    if turn.status == "waiting":
        return waiting_note or "Waiting for the model…"
    if turn.status == "streaming" and not text:
        return "…"
    if not text and turn.reasoning and turn.thought_seconds is None and turn.status in ("done", "stopped"):
        return NO_ANSWER_NOTES[turn.status]
    if turn.status == "stopped":
        return f"{text}\n\n{STOPPED_NOTE}" if text else STOPPED_NOTE
    if turn.status == "error":
        note = f"⚠ {inert(turn.error)}"  # a loaded file's error text is untrusted too
        return f"{text}\n\n{note}" if text else note
    if turn.status == "done" and not text:
        return "*(The model gave an empty answer.)*"
    return text


def chatbot_messages(conversation: Conversation, family: str, waiting_note: str = "", notice: str = "") -> list[dict]:
    """The Chatbot value: per turn its pictures, the question, the answer and the groundings drawn.

    `family` is the model's grounding format family (it says how to read the answers);
    `waiting_note` replaces a pending answer's placeholder; `notice` (why something was refused)
    comes last, marked ⚠. A turn with several versions (Regenerate, an edited question) tags
    its answer, and its question when the versions differ in words, with `version_tag`: the
    page draws ‹ 2/3 › arrows there (demo/page/page.js).
    """
    return _chat(conversation, family, waiting_note, notice)[0]


def question_turn(conversation: Conversation, family: str, message: int) -> int | None:
    """The turn whose question is the Chatbot's message number `message`; None for any other message."""
    questions = _chat(conversation, family)[1]
    return questions.index(message) if message in questions else None


VERSION_TAG = "qvc-version"  # demo/page/page.js reads it: "qvc-version <turn> <shown> <count>", 0-based


def version_tag(conversation: Conversation, index: int) -> dict | None:
    """The metadata of turn `index`'s answer (and of an edited question) when it has other versions:
    {"id": "qvc-version <turn> <shown> <count>"}, for the page's arrows. Gradio keeps a metadata
    id without a title as data and shows the message as any other (6.31: only a titled message is
    a thought). None for a single version, and for every turn while an answer is being written."""
    turns = conversation.turns
    if turns[index].version_count < 2 or turns[-1].status in STILL_CHANGING:
        return None
    turn = turns[index]
    return {"id": f"{VERSION_TAG} {index} {turn.version} {turn.version_count}"}


def edited(turn: Turn) -> bool:
    """Do the turn's versions differ in their question (an edit), not only in their answer?"""
    return any(version.turn.text != turn.text for version in turn.versions)


def _chat(conversation: Conversation, family: str, waiting_note: str = "", notice: str = "") -> tuple[list[dict], list[int | None]]:
    """The Chatbot value, and for each turn the number of its question's message (None: no text)."""
    messages: list[dict] = []
    questions: list[int | None] = []
    has_video = any(a.is_video for a in conversation.attachments())
    pictures = 0  # the pictures the model had seen by each answer: a box naming another number is flagged
    for index, (turn, labels) in enumerate(zip(conversation.turns, conversation.labels(), strict=True)):
        pictures += sum(not a.is_video for a in turn.pictures())
        for attachment, label in zip(turn.attachments, labels, strict=True):
            messages.append({"role": "user", "content": caption(label, attachment)})
            messages.append({"role": "user", "content": {"path": attachment.path, "alt_text": label}})
        questions.append(len(messages) if turn.text else None)
        tag = version_tag(conversation, index)
        if turn.text:
            question = with_question(turn.region, turn.text)  # "About Picture 1 (…)–(…): …" (demo.record.region)
            messages.append({"role": "user", "content": message(question), **({"metadata": tag} if tag and edited(turn) else {})})
            messages += region_messages(conversation, index, CHAT_FIT)  # its picture, the region drawn
        detections = turn_detections(conversation, index, family)
        emphasize = _TIMESTAMP if has_video else None
        if turn.status in STILL_CHANGING:
            shown = message(readable(turn.answer, family, detections, pictures), emphasize=emphasize)
        else:
            shown = _finished_answer(turn.answer, family, tuple(detections), pictures, emphasize)
        if turn.reasoning and turn.status != "waiting":
            messages.append(reasoning_message(turn))
        parts: list[str | dict] = []
        if not (turn.reasoning and _still_thinking(turn)):  # no "…" under a thought being written
            parts.append(answer_text(turn, shown, waiting_note))
        parts += zoom_parts(conversation, index)
        parts += grounding_parts(conversation, detections)
        if has_video and (undrawn := undrawn_groundings(turn.answer, family, detections)):
            parts.append(undrawn)
        if parts:
            messages.append(answer_message(parts, tag))
    if notice:
        messages.append({"role": "assistant", "content": f"⚠ {inert(notice)}"})
    return messages, questions


@lru_cache(maxsize=CACHED_TURNS)
def _finished_answer(answer: str, family: str, detections: tuple, pictures: int, emphasize: re.Pattern | None) -> str:
    """A finished answer as the bubble shows it (remembered: it no longer changes)."""
    return message(readable(answer, family, detections, pictures), emphasize=emphasize)


def reasoning_message(turn: Turn) -> dict:
    """The turn's reasoning as a Chatbot thought: pending (open, spinner) while it streams, then done (folded).

    Gradio opens a thought whose status is "pending" or absent and folds a "done" one, until the
    person clicks it. Reasoning that ended with no answer after it stays open.
    """
    if _still_thinking(turn):
        metadata = {"title": "Thinking…", "status": "pending"}
    elif turn.thought_seconds is None and not turn.answer.strip():  # no answer came: left open, it is all there is
        metadata = {"title": "Reasoning (unfinished)"}
    else:
        metadata = {"title": "Reasoning", "status": "done"}
    if turn.thought_seconds is not None:
        metadata["duration"] = turn.thought_seconds  # shown after the title: "Reasoning (2.4s)"
    return {"role": "assistant", "content": inert(turn.reasoning), "metadata": metadata}


def _still_thinking(turn: Turn) -> bool:
    return turn.status == "streaming" and turn.thought_seconds is None


def answer_message(parts: list[str | dict], tag: dict | None = None) -> dict:
    """An answer as one Chatbot message: its text alone, or the list of its parts (text, the crops it
    zoomed into with their captions, its pictures drawn with theirs, the list of its groundings).

    Gradio 6.31 shows each part of a list as a row of its own (with `group_consecutive_messages`
    off, which the questions' Edit needs: grouped, Edit sends one edit per part of the group);
    demo/page/page.js and page.css join an answer's rows into one card with one Copy button.
    """
    return {"role": "assistant", "content": parts[0] if len(parts) == 1 else parts, **({"metadata": tag} if tag else {})}


def zoom_parts(conversation: Conversation, index: int) -> list[str | dict]:
    """Of an answer that zoomed: each crop sent back to the model, after its label and where it was cut."""
    parts: list[str | dict] = []
    for zoom, label in zip(conversation.turns[index].zooms, conversation.zoom_labels(index), strict=True):
        x1, y1, x2, y2 = zoom.region_xyxy
        parts.append(f"🔍 {caption(label, zoom.attachment)} · zoomed into Picture {zoom.source} at ({x1}, {y1})–({x2}, {y2}) px")
        parts.append({"path": zoom.attachment.path, "alt_text": f"{label}, a crop of Picture {zoom.source}"})
    return parts


def grounding_parts(conversation: Conversation, detections: list) -> list[str | dict]:
    """Of an answer: each referenced picture with its boxes drawn, after its label, then the list of them."""
    if not detections:
        return []
    images = conversation.images()
    parts: list[str | dict] = []
    for number, on_picture in by_picture(detections).items():
        count = len(on_picture)
        parts.append(f"**Picture {number}** · {count} grounding{'s' * (count != 1)}")
        path = annotated_image(images[number - 1], on_picture, CHAT_FIT, lossless=False)
        parts.append({"path": path, "alt_text": f"Picture {number}, annotated"})
    parts.append(detections_markdown(tuple(detections)))
    return parts
