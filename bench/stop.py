"""How soon Stop ends an answer while its prompt is being read, on a real-sized model.

    python -m bench.stop [--shape tiny|2b] [--family F] [--dtype float32] [--after S] [--json out.json]

Two prompts, each answered by `engine.stream` in a session, Stop pressed `--after` seconds in
(while the prompt is still being read):

- **text**: one 448×448 photo and about 1,500 words of text (about 2,000 tokens): Stop lands in
  the chunked prefill of the text;
- **picture**: one 980×980 photo (1,225 visual tokens at patch 14): Stop lands in the vision
  encoder, whose attention over the whole picture is one operation of seconds on a CPU.

For each: the time from the stop to the end of the stream (what the person sees: the answer
ends), to the end of the generation thread (the model idle again), and how many tokens the
session's cache kept (read before the stop, reused by the next turn).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file
    sys.path.insert(0, str(REPO))

from bench.engine import machine_figures  # noqa: E402
from bench.models import ensure_checkpoint, square_photo  # noqa: E402
from bench.report import publish  # noqa: E402
from bench.shapes import SHAPES  # noqa: E402
from demo.engines.base import GenerationSettings  # noqa: E402
from demo.record.conversation import Attachment, Conversation, Turn, to_model_messages  # noqa: E402
from grounding.generations import DEFAULT_FAMILY  # noqa: E402

WORDS = ("Describe every corner of this picture: the colours, the light, the shapes and what they tell you. " * 100).strip()


def stopped_answer(engine, messages: list[dict], after: float, session: str) -> dict:
    """Stream an answer, press Stop `after` seconds in; the latencies after the stop."""
    settings = GenerationSettings(max_new_tokens=4, min_new_tokens=4)
    stop = threading.Event()
    prompt = engine.prepare_inputs(messages, settings)["input_ids"].shape[1]
    started = time.perf_counter()
    threading.Timer(after, stop.set).start()
    pieces = list(engine.stream(messages, settings, stop, session))
    stream_end = time.perf_counter()
    while any(t.name == "generate" for t in threading.enumerate()):
        time.sleep(0.01)
    thread_end = time.perf_counter()
    entry = engine.caches.take(session, None)
    kept = 0 if entry is None else len(entry.ids)
    if entry is not None:
        engine.caches.give_back(session, entry)
    engine.forget(session)
    stopped = started + after
    return {
        "prompt_tokens": prompt,
        "stop_after_s": after,
        "stream_end_after_stop_s": stream_end - stopped,
        "thread_end_after_stop_s": thread_end - stopped,
        "text_received": "".join(pieces),
        "tokens_kept": kept,
    }


def run(shape: str, family: str, dtype: str, after: float) -> dict:
    from demo.engines.local.engine import TransformersEngine

    load_before = os.getloadavg()
    checkpoint = ensure_checkpoint(shape, family)
    engine = TransformersEngine(str(checkpoint.path), device="cpu", dtype=dtype)
    photo = Attachment("bench/chelsea.png", square_photo("chelsea.png"), "chelsea.png")
    large = Attachment("bench/astronaut.png", square_photo("astronaut.png", 980), "astronaut.png")
    text = to_model_messages(Conversation(turns=[Turn(WORDS, [photo], status="streaming")]), "")
    picture = to_model_messages(Conversation(turns=[Turn("What is this?", [large], status="streaming")]), "")
    return {
        "machine": machine_figures(load_before),
        "config": {"shape": shape, "family": family, "dtype": dtype, "checkpoint": str(checkpoint.path),
                   "prefill_chunk_tokens": engine.prefill_chunk_tokens},  # fmt: skip
        "text": stopped_answer(engine, text, after, "bench-stop-text"),
        "picture": stopped_answer(engine, picture, after, "bench-stop-picture"),
    }


def report(results: dict) -> str:
    c, m = results["config"], results["machine"]
    out = [
        f"Stop while the prompt is read: shape {c['shape']}, {c['family']}, {c['dtype']}, chunks of {c['prefill_chunk_tokens']} tokens",
        f"{m['cpu_count']} CPUs, {m['torch_threads']} torch threads, torch {m['torch']}; load average before "
        f"{m['loadavg_before'][0]:.2f}, after {m['loadavg_after'][0]:.2f}",
        "  prompt                       tokens  stop at (s)  stream ends (s after)  thread ends (s after)  kept",
    ]
    for label, key in (("~2,000 tokens of text", "text"), ("a 980×980 picture", "picture")):
        r = results[key]
        out.append(
            f"  {label:<28} {r['prompt_tokens']:>6}  {r['stop_after_s']:>11.1f}  {r['stream_end_after_stop_s']:>21.2f}"
            f"  {r['thread_end_after_stop_s']:>21.2f}  {r['tokens_kept']:>4}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("tiny", "2b"), default="2b")
    parser.add_argument("--family", choices=list(SHAPES), default=DEFAULT_FAMILY)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="float32")
    parser.add_argument("--after", type=float, default=8.0, help="seconds into the answer to press Stop")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = run(args.shape, args.family, args.dtype, args.after)
    publish(report(results), results, args.json)
    return results


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
