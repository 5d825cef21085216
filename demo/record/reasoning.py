"""Reasoning apart from the answer: how a thinking model's streamed text becomes a turn's two fields.

Qwen3-VL Thinking and Qwen3.5 (thinking on) write ``<think>`` reasoning ``</think>`` before their
answer (the tags are `grounding.generations.REASONING_TAGS`). Their chat templates open the
block in the prompt (the generation prompt ends in ``<think>\\n``), so the model itself only
writes the closing tag; engines put the opening tag back at the start of their stream, so that
what they yield is the assistant message as the template reads it back (see
`demo.engines.base.Engine.stream`). `split_reasoning` reads such a text the way both templates
read an assistant message in the history: the reasoning is what comes before the first
``</think>`` (less an opening ``<think>``, with its newlines stripped), the answer what follows
it (less its leading newlines). A ``</think>`` with no opening tag still closes reasoning
(a server that streams inline reasoning without the prompt's tag), as in the templates.

`AnswerWriter` feeds an engine's stream into a `Turn` piece by piece: ``turn.reasoning`` and
``turn.answer`` always hold the split of what has arrived, a tag split across two pieces is
held back until it is whole, and the time until the reasoning ended is noted. Knows nothing of
Gradio or of any engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from demo.record.conversation import Turn
from grounding.generations import REASONING_TAGS

OPEN, CLOSE = REASONING_TAGS


@dataclass(frozen=True)
class Split:
    """A streamed text read as reasoning then answer; `closed` once ``</think>`` has come."""

    reasoning: str
    answer: str
    closed: bool


def split_reasoning(text: str, final: bool = True) -> Split:
    """Reasoning and answer of an assistant text (`final=False` while it is still streaming).

    While streaming, a possible tag at the end (``</thi``, or ``<th`` at the start) is held back
    until the next piece says whether it is one; a `final` text holds nothing back.
    """
    end = text.find(CLOSE)
    if end >= 0:
        return Split(_after_opening(text[:end]).strip("\n"), text[end + len(CLOSE) :].lstrip("\n"), True)
    start = text.lstrip()
    if start.startswith(OPEN):
        return Split(_hold_back(_after_opening(start), final).strip("\n"), "", False)
    if not final and start and OPEN.startswith(start):  # "<th": maybe the opening tag
        return Split("", "", False)
    return Split("", _hold_back(text, final), False)


def _after_opening(text: str) -> str:
    """`text` less the ``<think>`` it opens with (repeated, if a model wrote the prompt's tag again)."""
    start = text.lstrip()
    if not start.startswith(OPEN):
        return text  # a lone </think> follows: all of it was reasoning
    while start.startswith(OPEN):
        start = start[len(OPEN) :]
        start = start.lstrip() if start.lstrip().startswith(OPEN) else start
    return start


def _hold_back(text: str, final: bool) -> str:
    """`text` without a trailing start of ``</think>`` ("<", "</", … "</think"), unless `final`."""
    if not final:
        for size in range(min(len(CLOSE) - 1, len(text)), 0, -1):
            if CLOSE.startswith(text[-size:]):
                return text[:-size]
    return text


def prompt_opens_reasoning(prompt: str) -> bool:
    """True when a rendered prompt's last turn (the generation prompt) leaves a ``<think>`` open."""
    tail = prompt[prompt.rfind("<|im_start|>") :]
    return tail.rfind(OPEN) > tail.rfind(CLOSE)


class AnswerWriter:
    """Writes an engine's stream into `turn`: its reasoning and its answer, apart, as they arrive.

    Creating it empties the turn's reasoning and answer (a regenerated answer starts afresh);
    `finish()` hands on what was held back once the stream has ended, however it ended.
    """

    def __init__(self, turn: Turn, clock: Callable[[], float] = time.monotonic) -> None:
        self.turn = turn
        self.text = ""  # the stream so far: only while it lasts, the turn holds the result
        self.clock = clock
        self.started = clock()
        self.before = ""  # the answer of the rounds before this one (a zoom's call and what led to it)
        turn.reasoning, turn.answer, turn.thought_seconds = "", "", None

    def next_round(self) -> None:
        """After `finish()` and a zoom (`Turn.zooms`): the next stream continues the answer as the turn
        holds it now (cut after the call), with reasoning of its own."""
        self.before, self.text = self.turn.answer, ""
        self.turn.reasoning = ""

    def write(self, piece: str, final: bool = False) -> None:
        self.text += piece
        split = split_reasoning(self.text, final)
        self.turn.reasoning, self.turn.answer = split.reasoning, self.before + split.answer
        if split.closed and self.turn.thought_seconds is None:
            self.turn.thought_seconds = round(self.clock() - self.started, 1)

    def finish(self) -> None:
        self.write("", final=True)
