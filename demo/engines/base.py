"""The engine interface: what the chat UI asks of a model backend.

An engine turns a conversation, given as chat messages in the Hugging Face format with the
images inline as PIL images, into a stream of answer text. It also says what each image
costs (the size the model sees it at, and its number of visual tokens).

This module knows no backend: it imports neither torch nor transformers. The transformers
engine lives in `demo/engines/local/engine.py`; tests plug in their own.

Message format (the same one `processor.apply_chat_template` takes)::

    [{"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
     {"role": "user", "content": [{"type": "image", "image": <PIL.Image>},
                                  {"type": "text", "text": "What is in Picture 1?"}]},
     {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
     ...]

Images are numbered "Picture 1", "Picture 2", ... in the order they appear over the whole
conversation; the engine labels them that way for the model (`add_vision_id`).
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from demo.record.conversation import VisionCost
from grounding.generations import DEFAULT_RESIZE_FACTOR

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
# A file in a local checkpoint directory that says its weights are random (the tiny test model).
RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS"

#: Whether a model reasons before it answers: never, always (Qwen3-VL Thinking), or as the
#: settings' `thinking` says (a chat template with an `enable_thinking` switch: Qwen3.5).
ThinkingMode = Literal["none", "always", "switch"]


@dataclass(frozen=True)
class GenerationSettings:
    """How to answer one turn. `temperature == 0` means greedy decoding.

    `min_pixels` / `max_pixels` bound the pixel count of each image as the model sees it;
    None means the model's own default. `min_new_tokens` exists for tests (a random-weight
    model may stop at once); the UI leaves it at 0. `thinking` is the chat template's
    `enable_thinking` for engines whose `thinking` is "switch" (None: the model's own default);
    other engines ignore it. `zoom` offers the model the zoom tool (`grounding.zoom`) when its
    engine `zooms`.
    """

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 0.9
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    min_pixels: int | None = None
    max_pixels: int | None = None
    min_new_tokens: int = 0
    thinking: bool | None = None
    zoom: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"min_new_tokens must be within [0, max_new_tokens], got {self.min_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is larger than max_pixels ({self.max_pixels})")


class ModelLoadError(Exception):
    """The model could not be loaded (or reached); the text is one line a person can act on."""


class EngineError(Exception):
    """A failure the person should read as one plain sentence (the exception's text)."""


class Engine(ABC):
    """A model backend. Capabilities are attributes; the UI reads them, never the backend type.

    Attributes:
        model_name: what the UI shows as the model.
        family: the generation, a family name of the registry (`grounding.generations`).
        random_weights: True when the weights are random (the answers are noise).
        default_min_pixels / default_max_pixels: the image pixel bounds used when the
            settings leave them at None.
        resize_factor: image and video frame sides are multiples of this (patch × merge).
        thinking: "none", "always" or "switch" (`ThinkingMode`): whether answers start with
            reasoning; with "switch" the settings' `thinking` decides, and `thinking_default`
            is what the model does when not told.
        zooms: the model can be offered the zoom tool (`grounding.zoom.ZOOM_TOOL`: Qwen3-VL,
            Qwen3.5): with the settings' `zoom`, it may answer with a call to it, and the app
            sends the crop back (`demo.page.zooming`).
    """

    model_name: str
    family: str
    random_weights: bool = False
    default_min_pixels: int
    default_max_pixels: int
    resize_factor: int = DEFAULT_RESIZE_FACTOR
    thinking: ThinkingMode = "none"
    thinking_default: bool = False
    zooms: bool = False

    @abstractmethod
    def vision_cost(self, size_wh: tuple[int, int], settings: GenerationSettings) -> VisionCost:
        """The cost of an image of `size_wh` (width, height) under `settings`."""

    @abstractmethod
    def stream(
        self, messages: list[dict], settings: GenerationSettings, stop: threading.Event, session: str | None = None
    ) -> Iterator[str]:
        """Yield the answer to `messages` in pieces, as it is generated.

        The pieces make up the assistant message as its chat template reads it back: when the
        prompt opened a ``<think>`` block (a thinking model), the first piece is that opening
        tag, then the reasoning, ``</think>`` and the answer (`demo.record.reasoning` splits them).

        Setting `stop` ends the generation within one decode step; the iterator then ends
        normally. Closing the iterator also stops the generation. Raises EngineError for
        failures the person should see (out of memory, a prompt the model cannot take).
        `session` names the conversation, for engines that keep state between its turns.
        """

    def count_tokens(self, messages: list[dict], settings: GenerationSettings) -> int:
        """The prompt's length in tokens: its text as the model reads it, plus every picture's and
        video's visual tokens under `settings`. No pixels are preprocessed.

        This default is an estimate (`estimate_tokens`); an engine with the model's tokenizer counts exactly.
        """
        return estimate_tokens(messages, lambda size: self.vision_cost(size, settings).tokens)

    def forget(self, session: str) -> None:  # noqa: B027 - engines without session state need nothing
        """Drop whatever the engine keeps for `session` (it was cleared, or it ended)."""


TEXT_BYTES_PER_TOKEN = 3  # Qwen's byte-level BPE: about 4 bytes a token in English, 3 in CJK, fewer in emoji
MESSAGE_OVERHEAD_TOKENS = 5  # <|im_start|>role\n ... <|im_end|>\n


def estimate_tokens(messages: list[dict], picture_tokens, frame_label_tokens: int = 2) -> int:
    """An estimate of a prompt's tokens without a tokenizer: a text's UTF-8 bytes / 3 (over for
    English, about right for Chinese, under for emoji), 5 per message for the chat template, each
    picture's `picture_tokens((width, height))` plus 2 (vision start and end), each video's visual
    tokens plus 2 per frame pair for its markers (`frame_label_tokens`)."""
    total = 3  # the generation prompt: <|im_start|>assistant\n
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        for part in message["content"]:
            kind = part.get("type")
            if kind == "text":
                total += math.ceil(len(part["text"].encode("utf-8")) / TEXT_BYTES_PER_TOKEN)
            elif kind == "image":
                total += picture_tokens(part["image"].size) + 2
            elif kind == "video":
                video = part["video"]
                total += video.visual_tokens + frame_label_tokens * max(1, len(video.frames) // 2)
    return total
