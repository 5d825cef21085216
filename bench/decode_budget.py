"""Memory of the launched app while many people send small pictures that decode huge (issue 26).

    python -m bench.decode_budget [--clients 16] [--messages 8] [--side 8000] [--json out.json]

Starts `python app.py --backend openai` (16 answers at once by default) against a local scripted
OpenAI-compatible server that answers "ok" after 0.5 s, so that answers overlap and no model is
measured. Each of `--clients` gradio_client sessions sends `--messages` messages one after
another, each with one lossless WebP of `--side`² pixels of one colour (2.5 kB at 8000², the
issue's file); all clients run at once. The app's RSS is sampled every 20 ms: the baseline
(after a text-only warm-up), the peak, the RSS once all answers are in (sessions still open) and
8 s after every client closed (their sessions ended). Also: answers received, their latency,
and what the chat said (the reply, or the refusal).

Before issue 26 the 8000² run took the app from 234 MB to a peak of 17.3 GB, 6.9 GB once all
answers were in (6 uploads of 128 timed out); see docs/safety.md for the figures after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file
    sys.path.insert(0, str(REPO))

from gradio_client import handle_file  # noqa: E402

from tests.helpers import client_when_up, end_process, free_port, ok_server  # noqa: E402

MB = 2**20


def run(clients: int, messages: int, side: int) -> dict:
    with ok_server(delay=0.5) as (base_url, _):  # a server that takes half a second per answer
        return _run(base_url, clients, messages, side)


def _run(base_url: str, clients: int, messages: int, side: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="decode-budget-"))
    pictures = []
    for i in range(clients):
        pictures.append(folder / f"bomb-{i}.webp")
        Image.new("RGB", (side, side), (200, 30 + i, 30)).save(pictures[-1], "WEBP", lossless=True)
    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": "x", "GRADIO_HEARTBEAT_INTERVAL": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "app.py", "--backend", "openai", "--model", "Qwen/Qwen2-VL-2B-Instruct",
               "--base-url", base_url, "--port", str(port),
               "--max-new-tokens", "4", "--max-pending-per-client", str(4 * clients)]  # fmt: skip
    app = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        process = psutil.Process(app.pid)
        people = [client_when_up(f"http://127.0.0.1:{port}/") for _ in range(clients)]
        people[0].predict({"text": "warm up", "files": []}, api_name="/chat")
        time.sleep(1)
        baseline = peak = process.memory_info().rss
        latencies: list[float] = []
        said: set[str] = set()
        failures: list[str] = []

        def person(client, picture: Path) -> None:
            for n in range(messages):
                started = time.monotonic()
                try:
                    history, _ = client.predict({"text": f"What is this? {n}", "files": [handle_file(str(picture))]}, api_name="/chat")
                except Exception as e:  # noqa: BLE001 - counted: an upload that timed out, say
                    failures.append(type(e).__name__)
                    continue
                latencies.append(time.monotonic() - started)
                said.add(history[-1]["content"][0].get("text", "")[:100])

        threads = [threading.Thread(target=person, args=pair) for pair in zip(people, pictures, strict=True)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)
        wall = time.monotonic() - started
        answered = process.memory_info().rss
        for client in people:
            client.close()
        time.sleep(8)
        ended = process.memory_info().rss
    finally:
        end_process(app)
    return {
        "clients": clients, "messages": messages, "side": side, "file_bytes": pictures[0].stat().st_size,
        "baseline_mb": round(baseline / MB), "peak_mb": round(peak / MB), "answered_mb": round(answered / MB),
        "ended_mb": round(ended / MB), "answers": len(latencies), "failures": failures, "seconds": round(wall, 1),
        "latency_median_s": round(statistics.median(latencies), 1) if latencies else None,
        "latency_max_s": round(max(latencies), 1) if latencies else None, "said": sorted(said),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--messages", type=int, default=8)
    parser.add_argument("--side", type=int, default=8000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.clients, args.messages, args.side)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
