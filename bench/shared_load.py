"""Many people at once, sending the same picture: does everyone get an answer?

    python -m bench.shared_load [--people 10] [--turns 4] [--max-new-tokens 8] [--json out.json]

Starts `python app.py --model tiny-random` in a subprocess (a temp directory of its own, as
`bench.sessions` does), then `--people` gradio_client clients, one session each, in threads. At
every turn they all wait at a barrier and send the same message with the same picture, byte for
byte (a meme everyone has: a picture made here, not one of the app's examples, which it never
moves), so Gradio's uploads, which it names by their content's hash, collide. Each turn's outcome is read from the answer: answered, or the notice the
app put in its place ("⚠ Not sent: …"), or an exception of the client.

Figures: turns answered of the turns sent, each kind of failure with its count, the answer times
(median and slowest), and the app's RSS before and after. The tiny random model answers noise: this
measures the app (uploads, sessions, the queue), not a model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file
    sys.path.insert(0, str(REPO))

from tests.helpers import client_when_up, end_process, free_port  # noqa: E402

MB = 2**20


def outcome(history: list) -> str:
    """'answered', or the app's notice in the last turn's place (its first words)."""
    last = history[-1] if history else None
    if not last or last.get("role") != "assistant":
        return "no answer"
    text = " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in _parts(last["content"]))
    if "Not sent" in text or "⚠" in text:
        return text.strip()[:90]
    return "answered"


def _parts(content) -> list:
    return content if isinstance(content, list) else [content]


def shared_picture(folder: Path) -> Path:
    """The same PNG for everyone (noise, so that it is no example's bytes)."""
    import numpy as np
    from PIL import Image

    path = folder / "meme.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 320, 3), dtype=np.uint8)).save(path)
    return path


def person(url: str, picture: Path, turns: int, barrier: threading.Barrier, results: list, index: int) -> None:
    from gradio_client import handle_file

    client = client_when_up(url)
    try:
        for turn in range(turns):
            barrier.wait(timeout=600)
            start = time.monotonic()
            try:
                history, *_ = client.predict(
                    {"text": f"What is in Picture {turn + 1}? (person {index})", "files": [handle_file(str(picture))]},
                    api_name="/chat",
                )
                results.append((outcome(history), time.monotonic() - start))
            except Exception as e:  # the client's own failure is a figure too
                results.append((f"{type(e).__name__}: {str(e)[:80]}", time.monotonic() - start))
    finally:
        client.close()


def run(people: int, turns: int, max_new_tokens: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as temp:
        port = free_port()
        env = {"TMPDIR": temp, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        process = subprocess.Popen(
            [sys.executable, "app.py", "--model", "tiny-random", "--port", str(port), "--max-new-tokens", str(max_new_tokens),
             "--max-pending-per-client", str(2 * people), "--concurrency", "1"],
            cwd=REPO, env={**__import__("os").environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/"
            client_when_up(url).close()
            app = psutil.Process(process.pid)
            rss_before = app.memory_info().rss
            results: list[tuple[str, float]] = []
            barrier = threading.Barrier(people)
            picture = shared_picture(Path(temp))
            threads = [threading.Thread(target=person, args=(url, picture, turns, barrier, results, i)) for i in range(people)]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - started
            rss_after = app.memory_info().rss
        finally:
            end_process(process)
    kinds = Counter(kind for kind, _ in results)
    times = sorted(seconds for _, seconds in results)
    return {
        "people": people,
        "turns_each": turns,
        "sent": len(results),
        "answered": kinds.get("answered", 0),
        "failures": {k: v for k, v in kinds.items() if k != "answered"},
        "answer_seconds_median": round(statistics.median(times), 2) if times else None,
        "answer_seconds_slowest": round(times[-1], 2) if times else None,
        "wall_seconds": round(wall, 1),
        "rss_mb_before": round(rss_before / MB),
        "rss_mb_after": round(rss_after / MB),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=10)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = run(args.people, args.turns, args.max_new_tokens)
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0 if figures["answered"] == figures["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
