"""The local engine: a Qwen VL checkpoint run in this process with transformers.

Loads any checkpoint `AutoProcessor` + `AutoModelForImageTextToText` can load (a hub id or a
local directory, including the tiny random ones from `demo/engines/tiny/`), renders the
conversation with the model's own chat template and `add_vision_id=True`, and streams the
answer token by token from `model.generate` running in a background thread. On the CPU that
thread is `TORCH_THREAD`, which also loads the model and preprocesses the inputs: torch's OpenMP
slows every parallel kernel by a third once two threads have run them
(`demo/engines/local/torch_thread.py`); so on the CPU answers are computed one at a time.

The answer is decoded with special tokens kept, then every special token except Qwen2-VL's
grounding markers is removed: `skip_special_tokens=True` would delete the markers too.

Thinking checkpoints: whether answers start with reasoning is read from the registry and the
checkpoint's own chat template (`thinking`: "always" when its generation prompt opens
``<think>``, "switch" when its `enable_thinking` changes that). The stream starts with the
``<think>`` the prompt opened, so that it reads as the template's own assistant message.
"""

from __future__ import annotations

import copy
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.utils import GenerateDecoderOnlyOutput
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from demo.engines.base import (
    RANDOM_WEIGHTS_MARKER,
    Engine,
    EngineError,
    GenerationSettings,
    ModelLoadError,
)
from demo.engines.hub.download import local_checkpoint
from demo.engines.local import quantized_store
from demo.engines.local.kv_buffer import session_cache
from demo.engines.local.kv_reuse import CacheStore, SessionCache, plan_reuse
from demo.engines.local.precision import guard_float16, quantize_model, resolve_device, resolve_dtype, resolve_quantize
from demo.engines.local.prefill import PrefillStopped, StopChecks, prefill
from demo.engines.local.streaming import TokenStreamer
from demo.engines.local.torch_thread import TORCH_THREAD, in_new_thread
from demo.media.resize import DEFAULT_MAX_VISUAL_TOKENS
from demo.media.video import processor_video_kwargs
from demo.record.conversation import VisionCost
from demo.record.reasoning import OPEN, prompt_opens_reasoning
from demo.record.sessions import release_memory
from grounding.generations import GENERATIONS, family_from_model_type, generation
from grounding.zoom import ZOOM_TOOL

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 2 * 2**30  # all sessions' reusable caches together
DEFAULT_PREFILL_CHUNK_TOKENS = 1024  # tokens per prefill chunk (bounds one operation and its activations)
STOP_GRACE_SECONDS = 0.5  # how long an answer waits, after Stop, for the model to reach a module boundary
class _StopOnEvent(StoppingCriteria):
    """Ends `generate` at the next decode step once any of the events is set."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        stop = any(event.is_set() for event in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _NoEndBefore(LogitsProcessor):
    """`min_new_tokens` (tests and the bench; a person's answers have none): the end tokens get no
    probability before that many new tokens. transformers' own processor builds a vocabulary-wide mask
    with `isin` at every step, 1.7 ms of a ~90 ms 4-bit decode step on the 2B shape."""

    def __init__(self, minimum: int, ends: list[int]) -> None:
        self.minimum, self.ends, self.prompt = minimum, torch.tensor(ends, dtype=torch.long), None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt is None:  # the first call comes with the prompt alone
            self.prompt = input_ids.shape[1]
        if input_ids.shape[1] - self.prompt < self.minimum:  # a new tensor: `generate` may keep the raw logits it was given
            return scores.index_fill(1, self.ends, float("-inf"))
        return scores


class TransformersEngine(Engine):
    """A Qwen VL model in this process. One instance serves every session; it holds no conversation."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        name: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        quantize: str = "none",
        keep_quantized: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.quantize = resolve_quantize(quantize, self.device)
        self.keep_quantized = keep_quantized  # int8/int4: read the quantized weights from the cache, or write them there
        self.model_name = name or model
        checkpoint = local_checkpoint(model)  # a Hub id is downloaded first, with bounded waits and one-line errors
        try:
            self.family = _family_of(checkpoint)  # before the weights: an unknown model is refused at once
            self.processor = AutoProcessor.from_pretrained(checkpoint)
            self.model = self._in_torch_thread(self._load_model, checkpoint, attn_implementation)
        except (torch.OutOfMemoryError, MemoryError) as e:
            raise ModelLoadError(
                f"not enough memory to load {model} on {self.device} in {str(self.dtype)[6:]}: "
                f"try --dtype bfloat16, a smaller model, or another device ({type(e).__name__})"
            ) from None
        except OSError as e:
            if "out of memory" in str(e).lower():
                raise ModelLoadError(f"not enough memory to load {model} on {self.device}") from None
            raise ModelLoadError(
                f"cannot load model {model!r}: it is not a local checkpoint directory, and the Hugging Face Hub "
                f"has no such model or cannot be reached ({_first_line(e)})"
            ) from None
        except (ValueError, ImportError) as e:
            raise ModelLoadError(f"cannot load model {model!r}: {_first_line(e)}") from None

        self.tokenizer = self.processor.tokenizer
        self.caches = CacheStore(cache_bytes)  # sessions' KV caches and vision encodings (0: no reuse)
        self.random_weights = Path(checkpoint, RANDOM_WEIGHTS_MARKER).is_file()
        image_processor = self.processor.image_processor
        self.patch_size = image_processor.patch_size
        self.merge_size = image_processor.merge_size
        self.resize_factor = self.patch_size * self.merge_size
        self.default_min_pixels = image_processor.size["shortest_edge"]
        # A checkpoint's own bound can be huge (Qwen2-VL: 12.8 M pixels, 16k tokens an image): cap it.
        cap = DEFAULT_MAX_VISUAL_TOKENS * self.resize_factor**2
        self.default_max_pixels = min(image_processor.size["longest_edge"], cap)
        specials = [t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special]
        keep = generation(self.family).keep_tokens
        dropped = sorted((t for t in specials if t not in keep), key=len, reverse=True)
        self._drop_specials = re.compile("|".join(map(re.escape, dropped))) if dropped else None
        self._stop_checks = StopChecks(self.model)
        self.prefill_chunk_tokens = DEFAULT_PREFILL_CHUNK_TOKENS
        self._turn_start_id = self.tokenizer.convert_tokens_to_ids("<|im_start|>")
        self._placeholder_ids = {"image": self.model.config.image_token_id, "video": self.model.config.video_token_id}
        self.thinking, self.thinking_default = self._thinking_mode()
        self.zooms = "tools" in str(self.processor.chat_template)  # Qwen3-VL's and Qwen3.5's templates declare tools

    def _in_torch_thread(self, fn: Callable, *args, **kwargs):
        """`fn(*args, **kwargs)` in `TORCH_THREAD` on the CPU, here on a GPU."""
        return TORCH_THREAD.call(fn, *args, **kwargs) if self.device == "cpu" else fn(*args, **kwargs)

    def _load_model(self, checkpoint: str, attn_implementation: str):
        """The model in its precision. int8/int4 (unless `keep_quantized` is off): read from the quantized
        weights kept in the cache by an earlier start (`quantized_store`), else quantized here and kept."""
        entry = quantized_store.entry_dir(checkpoint, self.quantize, self.dtype) if self.quantize in ("int8", "int4") and self.keep_quantized else None
        model = quantized_store.load(entry, checkpoint, attn_implementation) if entry else None
        if model is not None:
            log.info("quantized weights (%s) read from %s", self.quantize, entry)
        else:
            model = AutoModelForImageTextToText.from_pretrained(
                checkpoint,
                dtype="auto" if self.quantize in ("int8", "int4") else self.dtype,  # from the checkpoint's dtype, no float32 copy
                attn_implementation=attn_implementation,
            )
            self._set_precision(model)
        model.to(self.device).eval()
        # Freed load-time copies (int8: each layer's float weights) stay in this thread's malloc arena
        # otherwise: 5.9 GiB resident after loading the 2B shape in int8, 3.7 GiB once trimmed.
        release_memory()
        if entry and not (entry / quantized_store.MANIFEST).is_file() and quantized_store.save(model, entry):
            log.info("quantized weights (%s) kept in %s for the next start", self.quantize, entry)
            release_memory()  # the int8 weights unpacked for writing
        return model

    def _set_precision(self, model) -> None:
        """Int8 or int4 layers for --quantize (the rest in `self.dtype`); float32 vision under float16."""
        if self.quantize in ("int8", "int4"):
            quantize_model(model, bits=4 if self.quantize == "int4" else 8)
            model.to(self.dtype)
        elif self.dtype == torch.float16:
            guard_float16(model)

    # -- what images cost ---------------------------------------------------------------------

    def _pixel_bounds(self, settings: GenerationSettings) -> tuple[int, int]:
        return (settings.min_pixels or self.default_min_pixels, settings.max_pixels or self.default_max_pixels)

    def vision_cost(self, size_wh: tuple[int, int], settings: GenerationSettings) -> VisionCost:
        min_pixels, max_pixels = self._pixel_bounds(settings)
        width, height = size_wh
        try:
            h, w = smart_resize(height, width, self.resize_factor, min_pixels, max_pixels)
        except ValueError as e:  # e.g. an aspect ratio above 200
            raise EngineError(f"this image cannot be used: {e}") from None
        return VisionCost(input_wh=(w, h), tokens=(h // self.patch_size) * (w // self.patch_size) // self.merge_size**2)

    # -- prompts and generation ---------------------------------------------------------------

    def render_prompt(self, messages: list[dict], thinking: bool | None = None, zoom: bool = False) -> str:
        """The prompt text exactly as the model reads it, images as their placeholder tokens.

        `thinking` is the template's `enable_thinking` where it has that switch (None: its default);
        `zoom` offers the zoom tool (`grounding.zoom`) where the template declares tools.
        """
        switch = {"enable_thinking": thinking} if self.thinking == "switch" and thinking is not None else {}
        if zoom and self.zooms:
            switch["tools"] = [ZOOM_TOOL]
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, add_vision_id=True, **switch
        )

    def _thinking_mode(self) -> tuple[str, bool]:
        """("none" | "always" | "switch", whether it thinks when not told), from the registry and the template."""
        if generation(self.family).thinking == "none":
            return "none", False
        probe = [{"role": "user", "content": [{"type": "text", "text": "?"}]}]

        def opens(**switch) -> bool:
            prompt = self.processor.apply_chat_template(probe, tokenize=False, add_generation_prompt=True, **switch)
            return prompt_opens_reasoning(prompt)

        default = opens()
        # Passed to a template without the variable, transformers would hand it to the processor.
        if "enable_thinking" in str(self.processor.chat_template) and opens(enable_thinking=True) != opens(enable_thinking=False):
            return "switch", default
        return ("always" if default else "none"), default

    def prepare_inputs(self, messages: list[dict], settings: GenerationSettings):
        """Tokenize `messages` and preprocess their images and videos (`SampledVideo`s), in order, on the engine's device."""
        return self._in_torch_thread(self._prepare_inputs, messages, settings)

    def _prepare_inputs(self, messages: list[dict], settings: GenerationSettings):
        parts = [part for m in messages for part in m["content"]]
        images = [part["image"] for part in parts if part.get("type") == "image"]
        # Frames sampled for another generation's factor (28 vs 32) are resized to this one's.
        videos = [part["video"].for_factor(self.resize_factor) for part in parts if part.get("type") == "video"]
        min_pixels, max_pixels = self._pixel_bounds(settings)
        try:
            inputs = self.processor(
                text=[self.render_prompt(messages, settings.thinking, settings.zoom)],
                images=images or None,
                size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
                return_tensors="pt",
                **processor_video_kwargs(*videos),  # frames as sampled: no second resize or sampling
            )
        except ValueError as e:
            raise EngineError(f"the model cannot take this input: {_first_line(e)}") from None
        return inputs.to(self.device)

    def count_tokens(self, messages: list[dict], settings: GenerationSettings) -> int:
        """Exact, without preprocessing any pixels: the rendered prompt's tokens, each picture's and
        video's placeholder token expanded as the processor expands it (pictures at their size in
        `messages`; videos with their frame markers and, for Qwen3-VL, timestamps)."""
        parts = [part for m in messages for part in m["content"]]
        videos = [self._video_placeholder(part["video"]) for part in parts if part.get("type") == "video"]
        # The processor's own substitution, not ours: since transformers 5.25 Qwen3VLProcessor also folds
        # the template's <|vision_start|><|video_pad|><|vision_end|> into the per-frame-pair blocks it
        # writes (`get_text_with_replacements`), two tokens fewer per video. Images stay one token here.
        (text,), _ = self.processor.get_text_with_replacements(
            [self.render_prompt(messages, settings.thinking, settings.zoom)], videos_replacements=videos
        )
        count = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        for part in parts:
            if part.get("type") == "image":
                count += self.vision_cost(part["image"].size, settings).tokens - 1
        return count

    def _video_placeholder(self, video) -> str:
        """What the processor writes in place of a video's one placeholder token (from its grid, no pixels)."""
        from transformers.video_utils import VideoMetadata

        w, h = video.frame_wh
        grid = torch.tensor([[len(video.frames) // 2, h // self.patch_size, w // self.patch_size]])
        metadata = processor_video_kwargs(video)["videos_kwargs"]["video_metadata"][0]
        inputs = {"video_grid_thw": grid, "video_metadata": [VideoMetadata(**metadata)]}
        return self.processor.replace_video_token(inputs, video_idx=0)

    def clean(self, text: str) -> str:
        """Remove end-of-turn and other special tokens, keeping the grounding markers."""
        return self._drop_specials.sub("", text) if self._drop_specials else text

    def _generation_kwargs(self, settings: GenerationSettings, *stops: threading.Event) -> dict:
        config = copy.deepcopy(self.model.generation_config)
        sampling = settings.temperature > 0
        config.update(
            max_new_tokens=settings.max_new_tokens,
            do_sample=sampling,
            temperature=settings.temperature if sampling else None,
            top_p=settings.top_p if sampling else None,
            top_k=0 if sampling else None,  # the checkpoints' top_k=1 would make "sampling" greedy
        )
        kwargs = {"generation_config": config, "stopping_criteria": StoppingCriteriaList([_StopOnEvent(*stops)])}
        ends = config.eos_token_id
        if settings.min_new_tokens and ends is not None:
            kwargs["logits_processor"] = LogitsProcessorList([_NoEndBefore(settings.min_new_tokens, ends if isinstance(ends, list) else [ends])])
        return kwargs

    def generate(
        self,
        inputs,
        settings: GenerationSettings,
        session: str | None = None,
        *,
        stops: tuple[threading.Event, ...] = (),
        **extra,
    ):
        """`model.generate` on prepared `inputs`, the prompt read in chunks that `stops` can interrupt.

        With a `session` (and a cache budget), reuses and updates its cache. Returns what
        `generate` returns (`extra` is passed on, e.g. a streamer or `output_logits=True`); a stop
        while the prompt is read returns the prompt alone and ends the streamer. A failure drops
        the session's cache.
        """
        return self._in_torch_thread(self._generate, inputs, settings, session, stops, extra)

    def _generate(self, inputs, settings: GenerationSettings, session: str | None, stops: tuple, extra: dict):
        kwargs = self._generation_kwargs(settings, *stops)
        keep = session is not None and self.caches.max_bytes > 0
        if keep:
            extra["return_dict_in_generate"] = True
        kwargs.update(kwargs["generation_config"].update(**extra))  # generation options go in the config
        fresh = SessionCache(kv=session_cache(self.model.config))
        entry = self.caches.take(session, fresh) if keep else fresh
        ids = inputs["input_ids"]
        plan = None
        try:  # on a failure the entry, maybe half updated, is not given back
            with torch.inference_mode(), self._stop_checks.armed(stops):  # until generate's first forward ends
                plan = plan_reuse(self.model, inputs, entry, self._turn_start_id)
                _, last_chunk = prefill(
                    self.model, ids, plan.position_ids, entry.kv, plan.start, plan.encoded,
                    self._placeholder_ids, self.prefill_chunk_tokens, plan.marks, entry.snapshot,
                )  # fmt: skip
                output = self.model.generate(
                    input_ids=ids,
                    attention_mask=inputs.get("attention_mask"),
                    position_ids=plan.position_ids,
                    cache=entry.kv,
                    mm_encoder_outputs=last_chunk,
                    **kwargs,
                )
        except PrefillStopped:
            entry.settle(ids[0], reading=plan is not None)
            if keep:
                self.caches.give_back(session, entry)
            if kwargs.get("streamer") is not None:
                kwargs["streamer"].end()
            config = kwargs["generation_config"]
            return GenerateDecoderOnlyOutput(sequences=ids) if config.return_dict_in_generate else ids
        if keep:
            entry.ids = output.sequences[0, : entry.kv.get_seq_length()].clone()
            entry.live = True
            self.caches.give_back(session, entry)
        return output

    def forget(self, session: str) -> None:
        self.caches.forget(session)

    def stream(
        self, messages: list[dict], settings: GenerationSettings, stop: threading.Event, session: str | None = None
    ) -> Iterator[str]:
        prompt = self.render_prompt(messages, settings.thinking, settings.zoom)
        opening = prompt[prompt.rfind(OPEN) :] if prompt_opens_reasoning(prompt) else ""  # "<think>\n"
        streamer = TokenStreamer(self.tokenizer, skip_prompt=True, timeout=0.05, skip_special_tokens=False)
        failure: list[BaseException] = []
        closed = threading.Event()  # set when this iterator ends, however it ends

        def run() -> None:  # prepares the inputs too: the consumer stays free to see a Stop while this job waits
            try:
                if closed.is_set():  # stopped or closed while it waited for the thread
                    streamer.end()
                    return
                inputs = self.prepare_inputs(messages, settings)
                self.generate(inputs, settings, session, stops=(stop, closed), streamer=streamer)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer below
                failure.append(e)
                streamer.end()

        job = TORCH_THREAD.submit(run) if self.device == "cpu" else in_new_thread(run, name="generate")
        stopped_at = None  # when the consumer saw the stop switch set
        ended = False  # the stream ran to its end (not closed by the consumer)
        try:
            if opening:
                yield opening
            while True:
                try:
                    piece = next(streamer)
                except StopIteration:
                    break
                except queue.Empty:
                    if job.done() and streamer.text_queue.empty():
                        break
                    if stop.is_set():  # the generation ends at its next module boundary, or soon after
                        stopped_at = stopped_at or time.monotonic()
                        if time.monotonic() - stopped_at > STOP_GRACE_SECONDS:
                            break
                    continue
                piece = self.clean(piece)
                if piece:
                    yield piece
            ended = True
        finally:
            closed.set()
            # After a stop or a close, one operation may still be running (seconds for a large picture's
            # vision attention on a CPU): the answer ends now, the thread a little later, settling its cache.
            if ended and stopped_at is None:
                wait([job])
            else:
                wait([job], timeout=max(0.0, (stopped_at or time.monotonic()) + STOP_GRACE_SECONDS - time.monotonic()))
        if failure:
            raise _as_engine_error(failure[0])


def _family_of(model: str) -> str:
    """The registry family of the checkpoint `model`, from its config's `model_type`; ModelLoadError if none."""
    config = AutoConfig.from_pretrained(model)
    try:
        return family_from_model_type(config.model_type)
    except ValueError:
        local = ", ".join(g.title for g in GENERATIONS if g.local)
        raise ModelLoadError(
            f"{model!r} is a {config.model_type!r} model, not a Qwen vision-language model this app can run "
            f"({local})"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _as_engine_error(error: BaseException) -> BaseException:
    if isinstance(error, EngineError):  # already one sentence for the person
        return error
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(error).lower():
        return EngineError(
            "the model ran out of memory on this answer: try fewer or smaller images (lower max pixels), "
            "or fewer max new tokens"
        )
    log.error("generation failed", exc_info=error)
    return EngineError(f"generation failed: {_first_line(error)}")
