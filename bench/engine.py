"""The app's engine against raw transformers, on one model loaded once: latency, decode speed, memory.

    python -m bench.engine [--shape tiny|2b] [--family F] [--quick] [--image-side N] [--repeats N] [--max-new-tokens N] [--json out.json]

`--family` picks the generation (`bench.models`, `bench.shapes`: Qwen2-VL-2B, Qwen2.5-VL-3B,
Qwen3-VL-2B, Qwen3.5-0.8B shapes at `--shape 2b`, their tiny checkpoints at `--shape tiny`).

The model is loaded once, by `TransformersEngine(path, device="cpu", dtype=...)`; the raw
baseline runs on that same `engine.model` (with its own `AutoProcessor`), so memory figures
are comparable. Every run uses the same greedy settings with `min_new_tokens == max_new_tokens`
(random weights would otherwise stop at different points) and the same 448×448 photos (`--image-side`:
another square size; the engine sizes them as the app does, within its default of 1280 visual tokens).

What is measured (one process, one run; each figure is the median over `--repeats`, raw and
engine runs interleaved; one untimed warm-up of each comes first, and it also makes the lazily
mmapped weights resident, so every phase starts from the same RSS):

- **raw generate**: what the transformers docs show: `processor.apply_chat_template` +
  `processor(...)` + `model.generate(**inputs, streamer=TextIteratorStreamer(...))` in a
  thread, the caller iterating the streamer. The prompt is rendered with `add_vision_id=True`,
  as the engine does, so both prefill the very same tokens (checked: `same_prompt`).
- **engine turn 1**: `engine.stream(messages, settings, stop, session=...)`, a new session.
- **5-turn conversation** (an image in turns 1 and 3, text follow-ups in 2, 4, 5; each answer
  appended to the `Conversation` as the app does) for (a) `session=None`, a full re-prefill
  each turn, and (b) a session, reusing the KV cache and vision encodings.

Figures per generation:

- `first_token_s` (TTFT, what the targets use): from the call to the end of the model's first
  forward, i.e. the first token; timed by the same hooks for raw generate and the engine.
- `first_text_s`: from the call to the first non-empty piece of text the caller receives. The
  engine hands on text token by token (`demo.engines.local.streaming.TokenStreamer`); raw generate's
  `TextIteratorStreamer` holds it back until a word ends (a space or newline), so with random
  weights that emit space-less runs (`cycycy…`) raw's first text can be the end of the answer.
- `decode_tok_s`: (generated tokens - 1) / (end of the iteration - end of the first forward).
  Tokens and their times come from forward hooks on the model: one forward per token.
- `prompt_tokens`, `prefilled_tokens` (fed to the first forward), `cached_tokens` (already in
  the KV cache at the first forward: > 0 only when a session's cache was reused).
- `cpu_per_wall`: process CPU seconds / wall seconds (about the thread count when nothing
  else competes for the cores: a low value means the figures were disturbed).

`--quick` measures only what the follow-up target needs, for shapes too slow for the rest:
turn 1 (a picture) answered in a session, then turn 2 (the text follow-up) answered `--repeats`
times each way, alternating: re-prefilled in full (no session: the picture encoded and every
token read again), and reusing a copy of the session as turn 1 left it. The ratio is the median
of each pair's. No raw generate, no warm-up (turn 1 makes the weights resident), no turns 3-5.

Peak RSS (`bench.probes.PeakRss`): this process's RSS sampled every 10 ms in a thread during
each phase, after glibc `malloc_trim(0)`; the shared model is in every figure, and each phase's
`rss_before` shows that floor. Targets and tables: `bench.report`. Models: `bench.models`.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file
    sys.path.insert(0, str(REPO))

from bench.models import IMAGE_SIDE, ensure_checkpoint, square_photo  # noqa: E402
from bench.probes import PeakRss, TokenClock, rss_bytes, timed  # noqa: E402
from bench.report import publish, ratio, report, targets  # noqa: E402
from bench.shapes import SHAPES  # noqa: E402
from demo.engines.base import GenerationSettings  # noqa: E402
from demo.record.conversation import Attachment, Conversation, Turn, to_model_messages  # noqa: E402
from grounding.generations import DEFAULT_FAMILY  # noqa: E402

DEFAULTS = {"tiny": {"repeats": 3, "max_new_tokens": 32}, "2b": {"repeats": 1, "max_new_tokens": 16}}
# (question, photos attached): images in turns 1 and 3, text follow-ups about them in 2, 4 and 5.
TURNS: list[tuple[str, list[str]]] = [
    ("Describe Picture 1 in detail.", ["chelsea.png"]),
    ("What colours stand out in it?", []),
    ("How does Picture 2 differ from Picture 1?", ["astronaut.png"]),
    ("Which of the two pictures is brighter?", []),
    ("Summarise both pictures in one sentence.", []),
]


# -- the two ways to answer ---------------------------------------------------------------------


def raw_stream(model, processor, messages: list[dict], max_new_tokens: int) -> Iterator[str]:
    """The transformers docs' streaming recipe: processor, then `generate` in a thread with a streamer."""
    from transformers import TextIteratorStreamer

    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, add_vision_id=True)
    images = [part["image"] for m in messages for part in m["content"] if part.get("type") == "image"]
    inputs = processor(text=[text], images=images or None, padding=True, return_tensors="pt").to(model.device)
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(
        inputs, streamer=streamer, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False
    )
    failure: list[BaseException] = []

    def generate() -> None:  # the docs pass model.generate itself; this only keeps a failure from hanging the loop
        try:
            model.generate(**kwargs)
        except BaseException as e:  # noqa: BLE001 - raised again below
            failure.append(e)
            streamer.end()

    thread = threading.Thread(target=generate)
    thread.start()
    yield from streamer
    thread.join()
    if failure:
        raise failure[0]


def measure(clock: TokenClock, start: Callable[[], Iterable[str]]) -> dict:
    """One generation: `start()` returns the stream; timed from just before the call, RSS sampled."""
    clock.reset()
    with PeakRss() as rss:
        started = time.perf_counter()
        figures = timed(iter(start()), started, clock)
    figures.update(rss_before_bytes=rss.before, peak_rss_bytes=rss.peak)
    return figures


def conversation_run(
    engine, clock: TokenClock, settings: GenerationSettings, photos: dict, session: str | None
) -> dict:
    """The 5 turns, each answer appended as the app does; per-turn figures and the peak RSS of all."""
    conversation = Conversation()
    turns = []
    stop = threading.Event()
    with PeakRss() as rss:
        for text, names in TURNS:
            attachments = [Attachment(path=f"bench/{n}", image=photos[n], name=n) for n in names]
            turn = Turn(text, attachments, status="streaming")
            conversation.turns.append(turn)
            messages = to_model_messages(conversation, settings.system_prompt)
            clock.reset()
            started = time.perf_counter()
            figures = timed(engine.stream(messages, settings, stop, session), started, clock)
            turn.answer, turn.status = figures["answer"], "done"
            figures["images"] = len(names)
            turns.append(figures)
    if session is not None:
        engine.forget(session)
    return {"turns": turns, "rss_before_bytes": rss.before, "peak_rss_bytes": rss.peak}


def follow_up_run(engine, clock: TokenClock, settings: GenerationSettings, photos: dict, repeats: int) -> dict:
    """`--quick`: turn 1 in a session, then turn 2 re-prefilled in full and with the session, `repeats` times.

    The two answers to turn 2 alternate, so both meet the same load; each answer with the session
    starts from a copy of the session as turn 1 left it (the cache, its snapshots and encodings).
    """
    session = "bench-follow-up"
    stop = threading.Event()
    (text, names), (follow_up, _) = TURNS[0], TURNS[1]
    conversation = Conversation(turns=[Turn(text, [Attachment(f"bench/{n}", photos[n], n) for n in names], status="streaming")])
    turn1 = measure(clock, lambda: engine.stream(to_model_messages(conversation, settings.system_prompt), settings, stop, session))
    turn1["images"] = len(names)
    conversation.turns[0].answer, conversation.turns[0].status = turn1["answer"], "done"
    conversation.turns.append(Turn(follow_up, status="streaming"))
    messages = to_model_messages(conversation, settings.system_prompt)
    left = engine.caches.take(session, None)
    after_turn1 = copy.deepcopy(left)
    engine.caches.give_back(session, left)
    engine.forget(session)
    reprefills, reuses = [], []
    for i in range(repeats):
        reprefills.append(measure(clock, lambda: engine.stream(messages, settings, stop, None)))
        name = f"{session}-{i}"
        engine.caches.give_back(name, copy.deepcopy(after_turn1))
        reuses.append(measure(clock, lambda n=name: engine.stream(messages, settings, stop, n)))
        engine.forget(name)
    reprefill, reused = _summary(reprefills), _summary(reuses)
    for figures in (reprefill, reused):
        figures["images"] = 0
    return {
        "turn1": turn1,
        "reprefill": reprefill,
        "session": reused,
        "first_text_ratio": _median([ratio(b["first_text_s"], a["first_text_s"]) for a, b in zip(reprefills, reuses, strict=True)]),
        "first_token_ratio": _median([ratio(b["first_token_s"], a["first_token_s"]) for a, b in zip(reprefills, reuses, strict=True)]),
    }


# -- the run ------------------------------------------------------------------------------------


def machine_figures(load_before: tuple[float, float, float]) -> dict:
    """What ran the benchmark, and how busy the machine was before and (now) after."""
    import torch
    import transformers

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
    }


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _summary(runs: list[dict]) -> dict:
    """Median of every numeric figure over `runs`; the runs themselves kept under "runs"."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    summary = {k: _median([r[k] for r in runs]) for k in keys}
    summary["answer"] = runs[0].get("answer", "")[:200]
    summary["runs"] = runs
    return summary


def run(
    shape: str = "tiny",
    repeats: int | None = None,
    max_new_tokens: int | None = None,
    dtype: str = "bfloat16",
    warmup: bool = True,
    log: Callable[[str], None] = print,
    family: str = DEFAULT_FAMILY,
    quick: bool = False,
    image_side: int = IMAGE_SIDE,
) -> dict:
    """Measure everything once for `shape` of `family` (`quick`: the follow-up only); return the results."""
    from transformers import AutoProcessor

    from demo.engines.local.engine import TransformersEngine

    repeats = repeats or DEFAULTS[shape]["repeats"]
    max_new_tokens = max_new_tokens or DEFAULTS[shape]["max_new_tokens"]
    load_before = os.getloadavg()
    checkpoint = ensure_checkpoint(shape, family)
    log(f"[{shape} {family}] checkpoint {checkpoint.path} ({'built now' if checkpoint.built_now else 'cached'})")
    started = time.perf_counter()
    engine = TransformersEngine(str(checkpoint.path), device="cpu", dtype=dtype)
    processor = AutoProcessor.from_pretrained(checkpoint.path)  # the raw baseline's own, as a user would load it
    load_seconds = time.perf_counter() - started
    rss_after_load = rss_bytes()
    settings = GenerationSettings(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, temperature=0.0)
    photos = {name: square_photo(name, image_side) for _, names in TURNS for name in names}
    first_turn = Conversation(
        turns=[Turn(TURNS[0][0], [Attachment(f"bench/{n}", photos[n], n) for n in TURNS[0][1]], status="streaming")]
    )
    messages = to_model_messages(first_turn, settings.system_prompt)
    stop = threading.Event()
    clock = TokenClock(engine.model)
    config = {
        "shape": shape,
        "family": family,
        "source": SHAPES[family].source if shape == "2b" else checkpoint.path.name,
        "quick": quick,
        "dtype": dtype,
        "repeats": repeats,
        "warmup": warmup and not quick,
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": max_new_tokens,
        "checkpoint": str(checkpoint.path),
        "parameters": sum(p.numel() for p in engine.model.parameters()),
        "build_seconds": checkpoint.build_seconds,
        "built_now": checkpoint.built_now,
        "load_seconds": load_seconds,
        "image_side": image_side,
        "visual_tokens_per_image": engine.vision_cost((image_side, image_side), settings).tokens,
        "turns": [{"text": text, "images": names} for text, names in (TURNS[:2] if quick else TURNS)],
        "rss_method": "peak of /proc/self/statm RSS sampled every 10 ms per phase, after malloc_trim(0)",
    }
    if quick:
        try:
            log(f"[{shape} {family}] turn 1, then the follow-up re-prefilled and with the session")
            follow_up = follow_up_run(engine, clock, settings, photos, repeats)
        finally:
            clock.close()
        results = {
            "machine": machine_figures(load_before),
            "config": config,
            "rss": {"after_load_bytes": rss_after_load},
            "follow_up": follow_up,
        }
        results["targets"] = targets(results)
        return results
    try:
        if warmup:
            log(f"[{shape}] warm-up")
            measure(clock, lambda: raw_stream(engine.model, processor, messages, 2))
            short = GenerationSettings(max_new_tokens=2, min_new_tokens=2)
            measure(clock, lambda: engine.stream(messages, short, stop, None))
        rss_after_warmup = rss_bytes()
        raw_runs, engine_runs = [], []
        for i in range(repeats):
            log(f"[{shape}] single turn, repeat {i + 1}/{repeats}")
            raw_runs.append(measure(clock, lambda: raw_stream(engine.model, processor, messages, max_new_tokens)))
            session = f"bench-turn1-{i}"
            engine_runs.append(measure(clock, lambda s=session: engine.stream(messages, settings, stop, s)))
            engine.forget(session)
        reprefill_runs, session_runs = [], []
        for i in range(repeats):
            log(f"[{shape}] 5-turn conversation, repeat {i + 1}/{repeats}")
            reprefill_runs.append(conversation_run(engine, clock, settings, photos, None))
            session_runs.append(conversation_run(engine, clock, settings, photos, f"bench-conversation-{i}"))
    finally:
        clock.close()

    raw, eng = _summary(raw_runs), _summary(engine_runs)
    raw["same_prompt"] = eng["same_prompt"] = all(
        r["prompt_tokens"] == e["prompt_tokens"] for r, e in zip(raw_runs, engine_runs, strict=True)
    )
    strategies = {}
    for name, runs in (("reprefill", reprefill_runs), ("session", session_runs)):
        turns = [_summary([r["turns"][t] for r in runs]) for t in range(len(TURNS))]
        strategies[name] = {
            "turns": turns,
            "rss_before_bytes": _median([r["rss_before_bytes"] for r in runs]),
            "peak_rss_bytes": _median([r["peak_rss_bytes"] for r in runs]),
        }
    first_text_ratio = [
        ratio(b["first_text_s"], a["first_text_s"])
        for a, b in zip(strategies["reprefill"]["turns"], strategies["session"]["turns"], strict=True)
    ]
    first_token_ratio = [
        ratio(b["first_token_s"], a["first_token_s"])
        for a, b in zip(strategies["reprefill"]["turns"], strategies["session"]["turns"], strict=True)
    ]
    results = {
        "machine": machine_figures(load_before),
        "config": config,
        "rss": {"after_load_bytes": rss_after_load, "after_warmup_bytes": rss_after_warmup},
        "single_turn": {
            "raw": raw,
            "engine": eng,
            "ratio": {k: ratio(eng[k], raw[k]) for k in ("first_text_s", "first_token_s", "decode_tok_s", "peak_rss_bytes")},
        },
        "conversation": {**strategies, "first_text_ratio": first_text_ratio, "first_token_ratio": first_token_ratio},
    }
    results["targets"] = targets(results)
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Measure the app's engine against raw transformers generate.")
    parser.add_argument(
        "--shape", choices=sorted(DEFAULTS), default="tiny", help="tiny checkpoint, or a random 2B-shaped one"
    )
    parser.add_argument("--repeats", type=int, help="runs per figure, medians reported (default: 3 tiny, 1 2b)")
    parser.add_argument("--max-new-tokens", type=int, help="tokens every answer decodes (default: 32 tiny, 16 2b)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--family", choices=list(SHAPES), default=DEFAULT_FAMILY, help="the generation measured")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's, one per core); 1 resists other load best"
    )
    parser.add_argument(
        "--quick", action="store_true", help="only turn 1 and the follow-up (re-prefilled and with the session)"
    )
    parser.add_argument(
        "--image-side", type=int, default=IMAGE_SIDE, help=f"the photos' side in pixels (default: {IMAGE_SIDE})"
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up runs")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1 or args.max_new_tokens is not None and args.max_new_tokens < 2:
        parser.error("--repeats must be >= 1 and --max-new-tokens >= 2")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.image_side < 28:
        parser.error("--image-side must be >= 28")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    results = run(
        args.shape,
        args.repeats,
        args.max_new_tokens,
        args.dtype,
        warmup=not args.no_warmup,
        log=lambda s: print(s, file=sys.stderr, flush=True),
        family=args.family,
        quick=args.quick,
        image_side=args.image_side,
    )
    publish(report(results), results, args.json)
    return results


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
