"""Decode speed alone, raw `generate` against the engine, in interleaved rounds.

    python -m bench.decode [--shape tiny|2b] [--dtype float32|bfloat16] [--rounds N] [--max-new-tokens N] [--json out.json]

`bench.engine` times decoding to the end of the caller's iteration, once per repeat. On a
2-core machine one run's decode rate moves by ±20 % with nothing changed, which is more than
the 3 % the decode target allows; this tool asks the narrower question of whether the engine
costs anything per token. Each round runs, on the same model and the same first-turn prompt
(one picture): raw `generate` (`bench.engine.raw_stream`), the engine with a new session, and
the engine without one. Per run it reports the decode rate between the first and the last
forward (forward hooks: the model's own time per token, the same clock for every side), the
median gap between forwards, and the tail: how long the caller's iteration lasts after the
last forward (the engine's own work after generating: storing the session cache, ending the
stream). Knows nothing of the targets; `bench.engine` reports those.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import threading
import time
from dataclasses import replace
from pathlib import Path

from bench.engine import TURNS, raw_stream
from bench.models import ensure_checkpoint, square_photo
from bench.probes import TokenClock
from bench.report import publish
from demo.engines.base import GenerationSettings
from demo.record.conversation import Attachment, Conversation, Turn, to_model_messages

SIDES = ("raw", "engine_session", "engine_no_session")


def forward_figures(calls: list[tuple[float, int, int]], started: float, ended: float) -> dict:
    """Figures of one generation from `TokenClock.calls` (end time of each forward first)."""
    if len(calls) < 2:
        raise ValueError("decode figures need at least two forwards (max new tokens >= 2)")
    times = [call[0] for call in calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return {
        "first_token_s": times[0] - started,
        "decode_tok_s": len(gaps) / (times[-1] - times[0]),
        "median_gap_s": statistics.median(gaps),
        "tail_s": ended - times[-1],
        "new_tokens": len(times),
    }


def run(shape: str = "tiny", dtype: str = "float32", rounds: int = 3, max_new_tokens: int = 32) -> dict:
    """`rounds` rounds of the three sides; every run's figures, medians and engine/raw ratios."""
    from transformers import AutoProcessor

    from demo.engines.local.engine import TransformersEngine

    checkpoint = ensure_checkpoint(shape)
    engine = TransformersEngine(str(checkpoint.path), device="cpu", dtype=dtype)
    processor = AutoProcessor.from_pretrained(checkpoint.path)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, temperature=0.0)
    text, names = TURNS[0]
    attachments = [Attachment(f"bench/{n}", square_photo(n), n) for n in names]
    messages = to_model_messages(Conversation(turns=[Turn(text, attachments, status="streaming")]), settings.system_prompt)
    stop = threading.Event()
    starts = {
        "raw": lambda tokens, _: raw_stream(engine.model, processor, messages, tokens),
        "engine_session": lambda tokens, session: engine.stream(messages, _with(settings, tokens), stop, session),
        "engine_no_session": lambda tokens, _: engine.stream(messages, _with(settings, tokens), stop, None),
    }
    clock = TokenClock(engine.model)
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    try:
        for side in SIDES:  # untimed warm-up: weights resident, first-call costs paid
            for _ in starts[side](2, "warm-up"):
                pass
            engine.forget("warm-up")
        for i in range(rounds):
            for side in SIDES:
                session = f"decode-{i}"
                clock.reset()
                started = time.perf_counter()
                for _ in starts[side](max_new_tokens, session):
                    pass
                runs[side].append(forward_figures(clock.calls, started, time.perf_counter()))
                engine.forget(session)
    finally:
        clock.close()
    medians = {side: {k: statistics.median(r[k] for r in runs[side]) for k in runs[side][0]} for side in SIDES}
    raw = medians["raw"]["decode_tok_s"]
    return {
        "config": {"shape": shape, "dtype": dtype, "rounds": rounds, "max_new_tokens": max_new_tokens},
        "machine": {"cpu_count": os.cpu_count(), "loadavg_after": list(os.getloadavg())},
        "runs": runs,
        "medians": medians,
        "decode_ratio": {side: medians[side]["decode_tok_s"] / raw for side in SIDES[1:]},
    }


def _with(settings: GenerationSettings, tokens: int) -> GenerationSettings:
    return replace(settings, max_new_tokens=tokens, min_new_tokens=tokens)


def report(results: dict) -> str:
    c = results["config"]
    lines = [f"shape {c['shape']}, {c['dtype']}, {c['rounds']} round(s) of {c['max_new_tokens']} new tokens"]
    lines.append(f"{'':20s}{'decode tok/s per round':>28s}{'median':>9s}{'gap ms':>9s}{'tail ms':>9s}{'/raw':>7s}")
    for side in SIDES:
        per_round = " ".join(f"{r['decode_tok_s']:7.3f}" for r in results["runs"][side])
        m = results["medians"][side]
        ratio = results["decode_ratio"].get(side)
        lines.append(
            f"{side:20s}{per_round:>28s}{m['decode_tok_s']:9.3f}{1000 * m['median_gap_s']:9.1f}"
            f"{1000 * m['tail_s']:9.1f}{'' if ratio is None else f'{ratio:7.3f}'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Decode speed of the engine against raw generate, interleaved.")
    parser.add_argument("--shape", choices=("tiny", "2b"), default="tiny")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.max_new_tokens < 2:
        parser.error("--rounds must be >= 1 and --max-new-tokens >= 2")
    results = run(args.shape, args.dtype, args.rounds, args.max_new_tokens)
    publish(report(results), results, args.json)
    return results


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
