"""`python -m bench.views`: what one streamed update of the chat costs as the conversation grows.

Builds a conversation of `--turns` finished turns with `--boxes` boxes each (one picture per
turn, JSON answers in the family's format), plus one turn whose answer is streaming, and times
`chatbot_messages` (the Chatbot value the page sends on every update) after each new piece of
the streaming answer, with the view caches (`demo/views/annotations.py`, `demo/views/chat.py`) and with
them emptied before every update (what every update cost before they existed). Prints
milliseconds per update (median and 90th percentile of `--updates` updates), the part spent
parsing, and the cost of the finished turns alone (the streaming turn's text unchanged).
Pure Python, no model; a few seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from demo.record.conversation import Attachment, Conversation, Turn
from demo.views import annotations
from demo.views import chat as views
from demo.views.chat import chatbot_messages

CACHES = (annotations.parsed, annotations.detections_markdown, annotations._png_name, views._finished_answer)


def build(turns: int, boxes: int, family: str, folder: Path) -> Conversation:
    """`turns` finished turns with `boxes` boxes each, on one 640×480 picture each, and a streaming turn."""
    conversation = Conversation()
    for index in range(turns + 1):
        path = folder / f"picture{index + 1}.png"
        Image.new("RGB", (640, 480), (40 + 7 * index % 200, 90, 140)).save(path)
        with Image.open(path) as picture:
            attachment = Attachment(path=str(path), image=picture.convert("RGB"), name=path.name)
        items = [
            {"bbox_2d": [10 + 9 * i, 20 + 7 * i, 120 + 9 * i, 160 + 7 * i], "label": f"object {i % 7}"} for i in range(boxes)
        ]
        answer = f"In Picture {index + 1}:\n```json\n{json.dumps(items)}\n```"
        turn = Turn(f"Find everything in Picture {index + 1}.", [attachment], answer=answer, status="done")
        conversation.turns.append(turn)
    for index, turn in enumerate(conversation.turns):
        turn.input_sizes = [(644, 476)] * (index + 1)  # what the model saw of each picture so far
    last = conversation.turns[-1]
    last.answer, last.status = "", "streaming"
    return conversation


def empty_caches() -> None:
    for cache in CACHES:
        cache.cache_clear()


def measure(conversation: Conversation, family: str, updates: int, streamed: str, cached: bool = True) -> dict:
    """Time `chatbot_messages` after each of `updates` pieces of `streamed` (parse time counted apart)."""
    parse_seconds = 0.0
    original = annotations.parse

    def timed_parse(*args, **kwargs):
        nonlocal parse_seconds
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            parse_seconds += time.perf_counter() - start

    annotations.parse = timed_parse
    last = conversation.turns[-1]
    piece = max(1, len(streamed) // updates)
    times, parse_times, steady = [], [], []
    try:
        empty_caches()
        last.answer = ""
        chatbot_messages(conversation, family)  # the finished turns' pictures are drawn once, before
        for n in range(updates):
            if not cached:
                empty_caches()
            start = time.perf_counter()
            chatbot_messages(conversation, family)  # nothing new in the streaming turn: the finished turns' cost
            steady.append(time.perf_counter() - start)
            last.answer = streamed[: (n + 1) * piece]
            if not cached:
                empty_caches()
            parse_seconds = 0.0
            start = time.perf_counter()
            chatbot_messages(conversation, family)
            times.append(time.perf_counter() - start)
            parse_times.append(parse_seconds)
    finally:
        annotations.parse = original
    times.sort()
    return {
        "median_ms": 1000 * statistics.median(times),
        "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))],
        "parse_median_ms": 1000 * statistics.median(parse_times),
        "finished_turns_median_ms": 1000 * statistics.median(steady),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--boxes", type=int, default=30)
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--family", default="qwen2.5-vl")
    args = parser.parse_args(argv)
    figures: dict = {"turns": args.turns, "boxes": args.boxes, "updates": args.updates, "family": args.family}
    figures["python"] = platform.python_version()
    print(f"{args.turns} finished turns × {args.boxes} boxes ({args.family}) + 1 streaming turn, {args.updates} updates:")
    for name, cached in (("uncached", False), ("cached", True)):
        with tempfile.TemporaryDirectory() as folder:
            conversation = build(args.turns, args.boxes, args.family, Path(folder))
            streamed = f"Picture {args.turns + 1} has these:\n```json\n" + json.dumps(
                [{"bbox_2d": [5 * i, 5 * i, 50 + 5 * i, 60 + 5 * i], "label": f"thing {i}"} for i in range(args.boxes)]
            ) + "\n```"
            figures[name] = measure(conversation, args.family, args.updates, streamed, cached)
        f = figures[name]
        print(
            f"  {name:>8}: {f['median_ms']:6.1f} ms per update (median; p90 {f['p90_ms']:.1f} ms), parsing {f['parse_median_ms']:.1f} ms; "
            f"the finished turns alone {f['finished_turns_median_ms']:.1f} ms"
        )
    return figures


if __name__ == "__main__":
    main()
