"""A scripted engine for tests: replays canned answers through the Engine interface."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from demo.engines.base import Engine, EngineError, GenerationSettings
from demo.record.conversation import VisionCost


class ScriptedEngine(Engine):
    """Answers each call with the next scripted answer, piece by piece.

    An answer is a list of text pieces, or an exception to raise. `delay` is slept between
    pieces (checking the stop event, as a real engine checks it between decode steps).
    `calls` records the messages and settings of every call.
    """

    model_name = "scripted"
    family = "qwen2-vl"
    default_min_pixels = 56 * 56
    default_max_pixels = 28 * 28 * 64

    def __init__(self, answers: list[list[str] | Exception], delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.delay = delay
        self.calls: list[tuple[list[dict], GenerationSettings]] = []
        self.active = 0  # answers being generated right now

    def vision_cost(self, size_wh: tuple[int, int], settings: GenerationSettings) -> VisionCost:
        width, height = size_wh
        if max(width, height) / min(width, height) > 200:
            raise EngineError("this image's aspect ratio is above 200")
        return VisionCost(input_wh=(28, 28), tokens=1)

    def count_tokens(self, messages: list[dict], settings: GenerationSettings) -> int:
        """One token per word of text, one per picture (its `vision_cost`), one per video frame pair."""
        count = 0
        for part in (p for m in messages for p in m["content"]):
            if part.get("type") == "text":
                count += len(part["text"].split())
            elif part.get("type") == "image":
                count += self.vision_cost(part["image"].size, settings).tokens
            elif part.get("type") == "video":
                count += len(part["video"].frames) // 2
        return count

    def stream(
        self, messages: list[dict], settings: GenerationSettings, stop: threading.Event, session: str | None = None
    ) -> Iterator[str]:
        self.calls.append((messages, settings))
        answer = self.answers.pop(0) if self.answers else ["ok"]
        if isinstance(answer, Exception):
            raise answer
        self.active += 1
        try:
            for piece in answer:
                if stop.is_set():
                    return
                if self.delay:
                    time.sleep(self.delay)
                yield piece
        finally:
            self.active -= 1


class AtLeast(Engine):
    """Wraps a real engine so that every answer is at least `min_new_tokens` long.

    A random-weight model may end its answer at once; tests that need a long answer (to see
    it stream, or to stop it) use this. Everything else is the wrapped engine's own path.
    """

    def __init__(self, inner: Engine, min_new_tokens: int) -> None:
        self.inner = inner
        self.min_new_tokens = min_new_tokens
        self.model_name, self.family, self.random_weights = inner.model_name, inner.family, inner.random_weights
        self.default_min_pixels, self.default_max_pixels = inner.default_min_pixels, inner.default_max_pixels
        self.resize_factor = inner.resize_factor
        self.thinking, self.thinking_default = inner.thinking, inner.thinking_default
        self.zooms = inner.zooms

    def vision_cost(self, size_wh: tuple[int, int], settings: GenerationSettings) -> VisionCost:
        return self.inner.vision_cost(size_wh, settings)

    def count_tokens(self, messages: list[dict], settings: GenerationSettings) -> int:
        return self.inner.count_tokens(messages, settings)

    def stream(
        self, messages: list[dict], settings: GenerationSettings, stop: threading.Event, session: str | None = None
    ) -> Iterator[str]:
        from dataclasses import replace

        longer = replace(settings, max_new_tokens=max(settings.max_new_tokens, self.min_new_tokens), min_new_tokens=self.min_new_tokens)
        return self.inner.stream(messages, longer, stop, session)

    def forget(self, session: str) -> None:
        self.inner.forget(session)


@contextmanager
def forced_answer(engine, answer: str):
    """Make the real engine's model generate exactly `answer` (then end of turn), through `generate`.

    A logits processor puts all the probability on the next token of the answer, so the
    rest of the path (prompt, vision encoder, streamer, decoding) is the real one.
    """
    from transformers import LogitsProcessor, LogitsProcessorList

    tokens = engine.tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    original = engine.model.generate

    class Force(LogitsProcessor):
        def __init__(self, prompt_length: int) -> None:
            self.prompt_length = prompt_length

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - self.prompt_length
            scores[:] = float("-inf")
            scores[:, tokens[min(step, len(tokens) - 1)]] = 0
            return scores

    def generate(**kwargs):
        force = Force(kwargs["input_ids"].shape[1])
        earlier = kwargs.pop("logits_processor", [])  # the engine's own (min_new_tokens)
        return original(**kwargs, logits_processor=LogitsProcessorList([*earlier, force]))

    engine.model.generate = generate
    try:
        yield
    finally:
        del engine.model.generate  # back to the class's method
