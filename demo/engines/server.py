"""An engine that drives an OpenAI-compatible inference server (vLLM, SGLang, `transformers serve`).

It streams `{base_url}/chat/completions` with the official `openai` client. The app resizes
each image itself with the family's rule (`demo/media/resize.py`) and sends it as a PNG data URL,
never a path or URL, so the size the model sees is known here (Qwen2.5-VL answers in those
pixels). A text part `Picture N: ` (N over the whole conversation) precedes each image: the
labels the local engine's `add_vision_id` writes. A video part (a list of PIL frames) is sent
as `Video N: ` then its frames as images, so the server counts each frame as an image.

What it does not know: the server's own min/max pixels (an image outside them is resized again
there: keep the app's bounds within the server's; the app's least, 8 visual tokens, is llama.cpp's,
and a llama.cpp server's own least is measured at start, `demo.engines.llama_server`), and whether the weights are random (only a
local checkpoint directory with the marker file tells). Qwen2-VL's grounding markers survive
only if the server keeps special tokens: `transformers serve` streams them, vLLM strips them
unless asked (`extra_body={"skip_special_tokens": False}`), llama.cpp unless started with
`--special` (without the markers the boxes are still read, in Qwen2-VL's bare form); other Qwen special tokens are
removed here, as the local engine does. `min_new_tokens` has no portable field and is not sent;
`extra_body` passes server-specific fields (vLLM: `{"min_tokens": 8}`). It may not hold a field
that the app sets itself or that multiplies what one answer costs (`max_tokens`, `n`, `best_of`,
`logprobs`, a `generation_config` with `num_beams`, ... : `check_extra_body`): the OpenAI client
sends `extra_body` over the request's own fields, so `{"max_tokens": 100000}` would lift every
person's `--max-answer-tokens`. Such a body is refused when the engine is made (at start-up,
with one sentence), and `build_request` leaves those fields out of it all the same.

Thinking models: whether a model thinks is read from the registry and its name (a "…-Thinking"
checkpoint always does, Qwen3-VL's and later; otherwise Qwen3.5 and Qwen4-Exp have the template's `enable_thinking` switch, sent as
`chat_template_kwargs`, which vLLM, SGLang and `transformers serve` pass to the template).
A server returns the reasoning either inline in `content` (after the `<think>` the template put
in the prompt, so only `</think>` shows) or, with a reasoning parser, in a separate delta field:
`reasoning_content` (SGLang, `transformers serve`, vLLM before 0.20) or `reasoning` (vLLM 0.20+).
Both become the same stream as the local engine's: `<think>`, the reasoning, `</think>`, the
answer. Earlier answers go back without their reasoning: the templates drop it anyway.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
from PIL import Image

from demo.engines.base import (
    RANDOM_WEIGHTS_MARKER,
    Engine,
    EngineError,
    GenerationSettings,
    ThinkingMode,
    estimate_tokens,
)
from demo.engines.llama_server import image_part, is_llama_server, picture_floor_tokens
from demo.media.resize import DEFAULT_MAX_VISUAL_TOKENS, smart_resize, visual_tokens
from demo.record.conversation import VisionCost
from demo.record.reasoning import CLOSE, OPEN
from grounding.generations import FAMILIES, QWEN2_SPECIALS, QWEN2_VL_MARKERS, family_from_name, generation
from grounding.zoom import ZOOM_FAMILIES, ZOOM_TOOL, tool_call_text

log = logging.getLogger(__name__)

# Request fields `build_request` sets itself: what the model reads and each person's settings and limits.
OWN_FIELDS = ("model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p")
# Fields that lift a person's limit or multiply what one answer costs, on vLLM, SGLang or transformers
# serve: several answers at once (n, best_of, beam search), log-probabilities per token, the answer's
# length under another name. (min_tokens and ignore_eos stay allowed: they make answers longer, never
# longer than the person's max new tokens.)
COSTLY_FIELDS = ("n", "best_of", "use_beam_search", "logprobs", "top_logprobs", "prompt_logprobs", "max_new_tokens")
# transformers serve's `generation_config` (a JSON string of generate() arguments): the same, in its words.
COSTLY_GENERATION = (
    "max_new_tokens", "max_length", "num_beams", "num_return_sequences", "num_beam_groups",
    "output_scores", "output_logits", "output_attentions", "output_hidden_states", "return_dict_in_generate",
)  # fmt: skip
POLL_SECONDS = 0.05  # how often the answer loop looks at the stop event
# The least visual tokens a picture is sent with: llama.cpp's own least for Qwen2-VL, Qwen2.5-VL and
# Qwen3-VL (tools/mtmd/clip.cpp: set_limit_image_tokens(8, 4096)), above the processors' that vLLM and
# SGLang use (Qwen2-VL's and Qwen2.5-VL's 56 × 56 pixels: 4 tokens), so none of them enlarges a picture.
LEAST_VISUAL_TOKENS = 8

# Special tokens a server may leave in the text; the grounding markers are kept.
_DROPPED_SPECIALS = re.compile("|".join(re.escape(t) for t in QWEN2_SPECIALS if t not in QWEN2_VL_MARKERS))


def thinking_mode(family: str, model_name: str) -> tuple[ThinkingMode, bool]:
    """(mode, whether it thinks when not told) of a served model, from the registry and its name."""
    kind = generation(family).thinking
    if kind != "none" and "thinking" in model_name.lower():  # Qwen/Qwen3-VL-8B-Thinking, Qwen3.6-35B-A3B-Thinking
        return "always", True  # a Thinking checkpoint reasons whatever the switch says
    if kind == "switch":
        return "switch", True
    return "none", False


def check_extra_body(body: dict) -> None:
    """ValueError (one sentence) when `body` would override a field the app sets, or lift a cost per answer."""
    own = [key for key in body if key in OWN_FIELDS]
    costly = [key for key in body if key in COSTLY_FIELDS]
    config = body.get("generation_config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            config = None  # the server answers that it cannot read it, on the first request
    if isinstance(config, dict):
        costly += [f"generation_config.{key}" for key in config if key in COSTLY_GENERATION]
    if own or costly:
        keys = ", ".join(own + costly)
        raise ValueError(
            f"--extra-body may not set {keys}: the app sets each answer's length, sampling and model itself "
            "(--max-answer-tokens, the settings), and fields that multiply an answer's cost would lift every "
            "person's limits"
        )


def infer_family(model_name: str) -> str:
    """The grounding family named by a model id or path ("Qwen/Qwen2.5-VL-7B-Instruct" -> "qwen2.5-vl")."""
    family = family_from_name(model_name)
    if family is None:
        raise ValueError(
            f"cannot tell the Qwen VL family of model {model_name!r} from its name: pass --family ({', '.join(FAMILIES)})"
        )
    return family


class OpenAIEngine(Engine):
    """A Qwen VL model behind an OpenAI-compatible server. Holds no conversation; safe to share."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        family: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        timeout: float = 60.0,
        extra_body: dict | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.family = family or infer_family(model)
        spec = generation(self.family)  # ValueError for an unknown family
        self.patch, self.merge = spec.patch_size, spec.merge_size
        self.factor = self.resize_factor = spec.resize_factor
        self.default_min_pixels = min_pixels or LEAST_VISUAL_TOKENS * self.factor**2
        self.default_max_pixels = max_pixels or DEFAULT_MAX_VISUAL_TOKENS * self.factor**2
        self.random_weights = Path(model, RANDOM_WEIGHTS_MARKER).is_file()
        self.thinking, self.thinking_default = thinking_mode(self.family, model)
        self.zooms = self.family in ZOOM_FAMILIES  # the server's template is not seen: the generations trained for it
        self.timeout = timeout
        check_extra_body(extra_body or {})
        self.extra_body = dict(extra_body or {})
        # No retries: a server that is down should be reported now, not after a back-off.
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout,
            max_retries=0,
        )
        self.floor_pixels = 0  # no picture is sent smaller: the server's own least, when measured
        if is_llama_server(self.base_url, min(timeout, 5.0)):
            self._match_llama_floor()

    def _match_llama_floor(self) -> None:
        """Raise the app's least picture size to a llama.cpp server's, when it is larger (measured)."""
        least = math.ceil(self.default_min_pixels / self.factor**2)
        try:
            floor = picture_floor_tokens(self.client, self.model_name, self.factor, least)
        except (openai.OpenAIError, ValueError) as e:
            log.warning("could not measure the llama.cpp server's least picture size, pictures go at the app's sizes: %s", e)
            return
        if floor > least:
            log.warning("the llama.cpp server enlarges pictures to at least %d visual tokens: the app sends them so", floor)
            self.floor_pixels = floor * self.factor**2

    def vision_cost(self, size_wh: tuple[int, int], settings: GenerationSettings) -> VisionCost:
        width, height = size_wh
        min_pixels = max(settings.min_pixels or self.default_min_pixels, self.floor_pixels)
        max_pixels = max(settings.max_pixels or self.default_max_pixels, self.floor_pixels)
        try:
            h, w = smart_resize(height, width, self.factor, min_pixels, max_pixels)
        except (ValueError, ZeroDivisionError) as e:  # an aspect ratio above 200, an empty image
            raise EngineError(f"this image cannot be used: {e}") from None
        return VisionCost(input_wh=(w, h), tokens=visual_tokens((w, h), self.patch, self.merge))

    def count_tokens(self, messages: list[dict], settings: GenerationSettings) -> int:
        """An estimate: the server's tokenizer is not here (`demo.engines.base.estimate_tokens`).

        Counted as `build_request` sends them: each picture with its "Picture N: " label (about 4
        tokens) and its visual tokens at the size it is sent, and each video as its frames, each
        one a picture.
        """
        expanded = []
        for message in messages:
            parts = []
            for part in message["content"]:
                if part.get("type") == "video":
                    frames = getattr(part["video"], "frames", part["video"])
                    parts += [{"type": "text", "text": "Video N: "}] + [{"type": "image", "image": f} for f in frames]
                else:
                    parts.append(part)
            expanded.append({**message, "content": parts})
        return estimate_tokens(expanded, lambda size: self.vision_cost(size, settings).tokens + 4)

    def _image_part(self, image: object, settings: GenerationSettings) -> dict:
        if not isinstance(image, Image.Image):  # never forward a path or URL for the server to fetch
            raise EngineError("this engine sends only images the app has decoded, not paths or URLs")
        size = self.vision_cost(image.size, settings).input_wh
        return image_part(image.convert("RGB").resize(size, Image.Resampling.BICUBIC))

    def build_request(self, messages: list[dict], settings: GenerationSettings) -> dict:
        """The keyword arguments of `chat.completions.create` for `messages` (without `stream`)."""
        converted: list[dict] = []
        pictures = videos = 0
        for message in messages:
            parts: list[dict] = []
            for part in message["content"]:
                kind = part.get("type")
                if kind == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif kind == "image":
                    pictures += 1
                    parts += [
                        {"type": "text", "text": f"Picture {pictures}: "},
                        self._image_part(part["image"], settings),
                    ]
                elif kind == "video":
                    frames = getattr(part["video"], "frames", part["video"])  # a SampledVideo, or frames
                    if not isinstance(frames, (list, tuple)):
                        raise EngineError("this engine sends a video only as a list of decoded frames")
                    videos += 1
                    parts.append({"type": "text", "text": f"Video {videos}: "})
                    parts += [self._image_part(frame, settings) for frame in frames]
            if message["role"] == "user":
                converted.append({"role": "user", "content": parts})
            elif message["role"] == "tool":  # a crop sent back for a zoom (vLLM, SGLang and llama.cpp read its picture)
                converted.append({"role": "tool", "tool_call_id": f"zoom-{pictures}", "content": parts})
            else:  # system and assistant turns are plain text on every server
                converted.append({"role": message["role"], "content": "".join(p["text"] for p in parts if "text" in p)})
        request: dict = {"model": self.model_name, "messages": converted, "max_tokens": settings.max_new_tokens}
        if settings.zoom and self.zooms:
            request["tools"] = [ZOOM_TOOL]
        # temperature 0 is greedy on vLLM, SGLang and transformers serve. settings.min_new_tokens
        # has no portable field (vLLM: min_tokens, SGLang: min_new_tokens): it is not sent.
        request["temperature"] = settings.temperature
        if settings.temperature > 0:
            request["top_p"] = settings.top_p
        # Never over the fields above, whatever `extra_body` became after it was checked.
        extra_body = {k: v for k, v in self.extra_body.items() if k not in OWN_FIELDS and k not in COSTLY_FIELDS}
        if self.thinking == "switch":  # always said, so that the stream is read right; the setting wins
            kwargs = {**extra_body.get("chat_template_kwargs", {}), "enable_thinking": self._thinks(settings)}
            extra_body["chat_template_kwargs"] = kwargs
        if extra_body:
            request["extra_body"] = extra_body
        return request

    def stream(
        self, messages: list[dict], settings: GenerationSettings, stop: threading.Event, session: str | None = None
    ) -> Iterator[str]:
        """Stream the answer. A reader thread does the blocking HTTP reads; this loop polls it
        every POLL_SECONDS, so Stop (or closing the iterator) ends the answer at once and
        shuts the connection down, which tells the server to stop generating. `session` is
        unused: every request carries the whole conversation (a server may cache its prefix)."""
        request = self.build_request(messages, settings)
        thinks = self.thinking == "always" or (self.thinking == "switch" and self._thinks(settings))
        reasoning = _ReasoningStream(opened=thinks, closed=self.thinking == "switch" and not thinks)
        items: queue.Queue = queue.Queue()
        done = threading.Event()
        opened: list = []  # the openai Stream, once the server has answered

        def read() -> None:
            try:
                response = self.client.chat.completions.create(**request, stream=True)
                opened.append(response)
                if done.is_set():
                    response.close()
                    return
                with response:
                    for chunk in response:
                        items.put(("chunk", chunk))
                        if done.is_set():
                            return
                items.put(("end", None))
            except Exception as e:  # noqa: BLE001 - handed to the answer loop
                items.put(("error", (e, bool(opened))))

        if stop.is_set():
            return
        threading.Thread(target=read, name="openai-stream", daemon=True).start()
        finished = ended = False  # ended: the reader finished and closed the response itself
        calls = _ToolCalls()  # structured tool calls (a server that parses them), written out as the model's text at the end
        try:
            while not stop.is_set():
                try:
                    kind, value = items.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                ended = kind != "chunk"
                if kind == "error":
                    raise self._engine_error(*value)
                if kind == "end" and finished:
                    yield from calls.texts()
                    return
                if kind == "end":
                    raise EngineError(f"the inference server at {self.base_url} closed the stream mid-answer")
                for choice in value.choices:
                    finished = finished or choice.finish_reason is not None
                    delta = choice.delta
                    calls.add(getattr(delta, "tool_calls", None) if delta else None)
                    thought = (getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)) if delta else None
                    for text in reasoning.pieces(thought or "", (delta and delta.content) or ""):
                        if piece := _DROPPED_SPECIALS.sub("", text):
                            yield piece
        finally:
            done.set()
            if not ended:
                for response in opened:
                    _abort(response)

    def _thinks(self, settings: GenerationSettings) -> bool:
        return self.thinking_default if settings.thinking is None else settings.thinking

    def _engine_error(self, error: BaseException, started: bool) -> EngineError:
        where = f"the inference server at {self.base_url}"
        if isinstance(error, openai.APITimeoutError):
            return EngineError(f"{where} did not answer within {self.timeout:g} s")
        if isinstance(error, openai.APIConnectionError):
            if started:
                return EngineError(f"the connection to {where} broke off in the middle of the answer")
            return EngineError(f"cannot connect to {where}: is it running, and is the URL right?")
        if isinstance(error, openai.APIStatusError):
            status, detail = error.status_code, _detail(error.body)
            if status == 404:
                detail = "" if detail.lower() in ("not found", "no detail") else f" ({detail})"
                return EngineError(
                    f"{where} answered 404 Not Found{detail}: check that the URL ends in /v1 "
                    f"and that the server has the model {self.model_name!r}"
                )
            if status in (401, 403):
                return EngineError(f"{where} refused the API key ({status}): set OPENAI_API_KEY")
            return EngineError(f"{where} answered {status}: {detail}")
        if isinstance(error, openai.APIError):  # an error event inside the stream
            return EngineError(f"{where} failed in the middle of the answer: {_detail(error.body)}")
        log.error("request to %s failed", self.base_url, exc_info=error)
        return EngineError(f"the request to {where} failed: {type(error).__name__}: {_detail(str(error))}")


class _ReasoningStream:
    """A server's reasoning and content deltas as one text: ``<think>``, reasoning, ``</think>``, answer.

    `opened`: the prompt opened a think block, so content that comes first is inline reasoning.
    `closed`: the prompt closed it (thinking switched off): nothing the model writes is
    reasoning, whatever a server's parser calls it.
    """

    def __init__(self, opened: bool, closed: bool) -> None:
        self.opened, self.closed = opened, closed
        self.state = "start"  # then "field" (reasoning in its own field), "inline" or "answer"

    def pieces(self, reasoning: str, content: str) -> list[str]:
        if self.closed:
            reasoning, content = "", reasoning + content
        out: list[str] = []
        if reasoning:
            if self.state == "start":
                out.append(f"{OPEN}\n")
                self.state = "field"
            out.append(reasoning)
        if content:
            if self.state == "field":
                out.append(f"\n{CLOSE}\n\n")
                self.state = "answer"
            elif self.state == "start" and self.opened:
                out.append(f"{OPEN}\n")
                self.state = "inline"  # the model's own </think> ends it
            elif self.state == "start":
                self.state = "answer"
            out.append(content)
        return out


class _ToolCalls:
    """A stream's structured `tool_calls` deltas, put together (a call's name comes first, its
    arguments in pieces), and written as the model's own ``<tool_call>`` text (`grounding.zoom`)."""

    def __init__(self) -> None:
        self.calls: dict[int, list[str]] = {}  # index -> [name, arguments so far]

    def add(self, deltas) -> None:
        for delta in deltas or ():
            call = self.calls.setdefault(getattr(delta, "index", None) or 0, ["", ""])
            function = getattr(delta, "function", None)
            if function is not None:
                call[0] += getattr(function, "name", None) or ""
                call[1] += getattr(function, "arguments", None) or ""

    def texts(self) -> list[str]:
        return [("\n" if i else "") + tool_call_text(name, arguments) for i, (name, arguments) in enumerate(self.calls.values()) if name]


def _abort(response: openai.Stream) -> None:
    """Shut the connection down now: this wakes a read blocked in the reader thread."""
    stream = response.response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    try:
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
        else:
            response.close()
    except OSError:
        pass  # already closed


def _detail(body: object) -> str:
    """The server's error message, on one short line."""
    if isinstance(body, dict):
        error = body.get("error")
        error = error.get("message") if isinstance(error, dict) else error
        body = body.get("message") or body.get("detail") or error or body
    text = " ".join(str(body).split()) or "no detail"
    return text if len(text) <= 200 else text[:199] + "…"
