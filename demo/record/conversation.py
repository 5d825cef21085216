"""The conversation record: the single source of truth of one chat session.

A `Conversation` is a list of `Turn`s; a turn holds what the person sent (text, images, videos)
and the model's raw answer text (grounding markers and all: never an escaped or display copy),
with a thinking model's reasoning apart from it (`demo/record/reasoning.py` splits the stream).
The model's messages are derived from it here by `to_model_messages`; the Chatbot's view
is derived in `demo/views/chat.py`. This module knows nothing of Gradio, torch or any engine.

Images are numbered over the whole conversation, in the order they were sent: the n-th image
is "Picture n" for the model (add_vision_id) and for the person alike; videos are numbered
apart, "Video n".
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Literal

from PIL import Image

from demo.record.region import Region, model_text

if TYPE_CHECKING:
    from demo.media.video import SampledVideo

@dataclass(frozen=True)
class VisionCost:
    """What one image costs the model: the size it is resized to, and its visual tokens."""

    input_wh: tuple[int, int]
    tokens: int


MAX_ZOOMS = 4  # crops sent back in one answer (`demo.page.zooming`); a call after that stays unanswered

TurnStatus = Literal["waiting", "streaming", "done", "stopped", "error"]


@dataclass
class Attachment:
    """One upload: where Gradio stored it (for display), and what the model sees of it.

    A picture has `image`; a video has `video` (its frames, sampled once at upload, so later
    turns never decode it again) and `image` None. A picture is kept reduced (at the size the model
    sees it at, or a display size: `demo.media.pictures`); `original_wh` is the size the person
    sent, and `size_wh`, in which boxes are given, is that size.
    """

    path: str
    image: Image.Image | None = None  # RGB, EXIF orientation applied: what the person sees
    name: str = ""  # the file name the person uploaded
    cost: VisionCost | None = None  # what the model saw at the last answer (set by the handlers)
    video: SampledVideo | None = None
    original_wh: tuple[int, int] | None = None  # the picture's size as sent (None: `image` is whole)

    @property
    def is_video(self) -> bool:
        return self.video is not None

    @property
    def size_wh(self) -> tuple[int, int]:
        if self.video is not None:
            return self.video.frame_wh
        return self.original_wh or self.image.size


@dataclass
class Zoom:
    """A crop the model asked for with the zoom tool (`grounding.zoom`) while answering, and was sent.

    It is a picture of the conversation (numbered after the turn's own, in the order they came),
    sent back as the tool's answer after `answer[:at]`, which ends with the model's call.
    """

    at: int  # where in the turn's answer the call ended
    source: int  # the Picture cropped
    region_xyxy: tuple[int, int, int, int]  # the cropped region, in that picture's pixels
    attachment: Attachment  # the crop, as sent
    reasoning: str = ""  # a thinking model's reasoning before the call


@dataclass
class Turn:
    """One question and its answer, as generated so far.

    `answer` is the model's raw text after any reasoning: what boxes are read from and what the
    person is answered. `reasoning` is what a thinking model wrote between ``<think>`` and
    ``</think>`` before it (empty for other models); `thought_seconds` the time from the start
    of the answer until the reasoning ended (None while it goes on, if it never ended, or if
    nobody knows: a conversation saved before it was recorded).
    """

    text: str
    attachments: list[Attachment] = field(default_factory=list)
    answer: str = ""
    reasoning: str = ""
    thought_seconds: float | None = None
    status: TurnStatus = "waiting"
    error: str = ""  # the sentence shown when status == "error"
    # (width, height) each conversation image had for the model when this turn was answered,
    # in Picture order: Qwen2.5-VL's boxes are in these pixels.
    input_sizes: list[tuple[int, int]] = field(default_factory=list)
    # The other versions of this turn (an earlier answer kept by Regenerate, an earlier question
    # kept by an edit), each with the turns that followed it; the turn's own fields are the version
    # shown, which is the one the model sees. `version` is its place among all of them (0-based).
    versions: list[Version] = field(default_factory=list)
    version: int = 0
    zooms: list[Zoom] = field(default_factory=list)  # the crops sent back while answering, in order
    region: Region | None = None  # the box the question is about (`demo.record.region`): part of the question

    def pictures(self) -> list[Attachment]:
        """Its uploads, then the crops sent back while it was answered: the order the model reads them."""
        return self.attachments + [z.attachment for z in self.zooms]

    @property
    def version_count(self) -> int:
        return len(self.versions) + 1


@dataclass
class Version:
    """A version of a turn not shown: the turn as it was (without versions) and what followed it."""

    turn: Turn
    later: list[Turn]


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def attachments(self) -> list[Attachment]:
        """Every upload of the conversation, pictures and videos, and the crops the model zoomed into, in the order sent."""
        return [a for turn in self.turns for a in turn.pictures()]

    def images(self) -> list[Attachment]:
        """Every picture of the conversation in Picture order (index 0 is Picture 1)."""
        return [a for a in self.attachments() if not a.is_video]

    def images_until(self, turn_index: int) -> list[Attachment]:
        """The pictures the model had seen when it answered turn `turn_index` (Picture order)."""
        return [a for turn in self.turns[: turn_index + 1] for a in turn.pictures() if not a.is_video]

    def branch(self, index: int, text: str | None = None, region: Region | None = None) -> Turn:
        """Start a new version of turn `index`, answered anew: the version shown (its answer, and
        the turns after it) is kept among the turn's versions, the new one comes last. `text`
        replaces the question (an edit), and `region` its region; None keeps both (Regenerate). The turns after it go with
        the kept version. A version never answered (no text, not done) is not worth keeping."""
        turn = self.turns[index]
        if turn.answer or turn.status == "done" or self.turns[index + 1 :]:
            self._keep_shown(index)
            turn.version = len(turn.versions)
        del self.turns[index + 1 :]
        for name in _ANSWER_FIELDS:  # every field of an answer back to a fresh turn's
            setattr(turn, name, getattr(Turn(""), name))
        turn.status = "waiting"
        if text is not None:
            turn.text, turn.region = text, region
        return turn

    def show_version(self, index: int, version: int) -> None:
        """Show version `version` (0-based, among `version_count`) of turn `index`, with what followed it."""
        turn = self.turns[index]
        if not 0 <= version < turn.version_count:
            raise ValueError(f"turn {index + 1} has {turn.version_count} versions, not a version {version + 1}")
        if version == turn.version:
            return
        self._keep_shown(index)
        chosen = turn.versions.pop(version)
        for name in _VERSION_FIELDS:
            setattr(turn, name, getattr(chosen.turn, name))
        turn.version = version
        self.turns[index + 1 :] = chosen.later

    def _keep_shown(self, index: int) -> None:
        """The shown version of turn `index` (and the turns after it) into its versions, at its place."""
        turn = self.turns[index]
        kept = Version(replace(turn, versions=[], version=0), self.turns[index + 1 :])
        turn.versions.insert(turn.version, kept)

    def labels(self) -> list[list[str]]:
        """Per turn, each upload's label: "Picture n" or "Video n", counted over the conversation."""
        return [labels[: len(turn.attachments)] for turn, labels in zip(self.turns, self._labels(), strict=True)]

    def zoom_labels(self, index: int) -> list[str]:
        """The "Picture n" of each crop sent back while turn `index` was answered."""
        return self._labels()[index][len(self.turns[index].attachments) :]

    def _labels(self) -> list[list[str]]:
        counts = {"Picture": 0, "Video": 0}
        labels = []
        for turn in self.turns:
            labels.append([])
            for attachment in turn.pictures():
                kind = "Video" if attachment.is_video else "Picture"
                counts[kind] += 1
                labels[-1].append(f"{kind} {counts[kind]}")
        return labels


# What a version of a turn is made of: everything but the versions themselves and the attachments
# (an edit changes the words; the pictures stay); what an answer is made of: that, but the question
# (its words and the region it is about).
_VERSION_FIELDS = tuple(f.name for f in fields(Turn) if f.name not in ("attachments", "versions", "version"))
_ANSWER_FIELDS = tuple(name for name in _VERSION_FIELDS if name not in ("text", "region"))


def to_model_messages(
    conversation: Conversation, system_prompt: str, family: str = "", input_sizes: list[tuple[int, int]] | None = None
) -> list[dict]:
    """The chat messages for the model: system prompt, then each turn as user/assistant.

    Images and videos come before the text in a user message, in the order they were sent, as in
    Qwen's own examples. The last turn
    has no assistant message when it is the one being answered (its answer is empty and it
    is not finished); earlier turns always have one, even if empty, so roles alternate.
    A failed answer's partial text is not sent back (the question and its images are).
    A blank system prompt leaves the model's default (the chat template supplies it).

    An earlier answer's reasoning goes as `reasoning_content`, the field the Qwen3-VL Thinking and
    Qwen3.5 templates read first; both leave out the reasoning of every answer before the last
    question, so the prompt holds each earlier answer alone, as their model cards ask.
    Templates without thinking ignore the field.

    A turn whose answer zoomed (`Turn.zooms`) is split there: the answer up to each call, then a
    "tool" message holding the crop (rendered by the templates with tools as a user message's
    ``<tool_response>``, labelled "Picture n" like any picture), then the rest.

    A question about a region (`Turn.region`) holds it in `family`'s own format and coordinates
    (`demo.record.region.model_text`); `input_sizes` are the pictures' sizes as the model sees them
    in this prompt, in Picture order (Qwen2.5-VL's pixels; by default each picture's last cost).
    Without a family the region stays in its readable form.
    """
    messages: list[dict] = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    pictures = conversation.images()
    for index, turn in enumerate(conversation.turns):
        content: list[dict] = [
            {"type": "video", "video": a.video} if a.is_video else {"type": "image", "image": a.image}
            for a in turn.attachments
        ]
        text = _question(turn, family, pictures, input_sizes)
        if text:
            content.append({"type": "text", "text": text})
        messages.append({"role": "user", "content": content})
        start = 0
        for zoom in turn.zooms:  # each zoom: the answer up to its call, then the crop as the tool's answer
            messages.append(_assistant(turn.answer[start : zoom.at], zoom.reasoning))
            messages.append({"role": "tool", "content": [{"type": "image", "image": zoom.attachment.image}]})
            start = zoom.at
        is_pending = index == len(conversation.turns) - 1 and turn.status in ("waiting", "streaming")
        if not is_pending:
            failed = turn.status == "error"
            messages.append(_assistant("" if failed else turn.answer[start:], "" if failed else turn.reasoning))
    return messages


def _question(turn: Turn, family: str, pictures: list[Attachment], input_sizes: list[tuple[int, int]] | None) -> str:
    """The turn's question as the model reads it (its region, if any, in `family`'s format)."""
    region = turn.region
    if region is None or not 1 <= region.picture <= len(pictures):
        return turn.text
    picture = pictures[region.picture - 1]
    if input_sizes is not None and len(input_sizes) == len(pictures):
        seen = input_sizes[region.picture - 1]
    else:
        seen = picture.cost.input_wh if picture.cost is not None else picture.size_wh
    return model_text(region, turn.text, family, picture.size_wh, seen)


def _assistant(text: str, reasoning: str) -> dict:
    message = {"role": "assistant", "content": [{"type": "text", "text": text}]}
    if reasoning:
        message["reasoning_content"] = reasoning
    return message
