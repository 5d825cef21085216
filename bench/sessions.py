"""Memory and disk of the launched app while many sessions send big pictures, and after they end.

    python -m bench.sessions [--sessions 20] [--pictures 4] [--megapixels 64] [--json out.json]

Starts `python app.py --model tiny-random` in a subprocess with a temp directory of its own
(TMPDIR), so every file the app writes is counted and nothing else is. One warm-up session
(text only) runs and ends first; the baseline is taken after it. Then `--sessions` clients
(gradio_client, one session each, all kept open) each send one message with `--pictures`
different pictures of `--megapixels` megapixels (JPEG, made here once) and wait for the answer.
Last, every client is closed (its heartbeat ends, as when a tab closes) and the figures are
taken again `--settle` seconds later (Gradio notices a closed heartbeat within about 25 s).

Figures: the app process's RSS (psutil) at the baseline, after the first session, after all
sessions, and after they ended; the bytes under the app's temp directory at the same points.
The tiny random model answers noise: this measures the app (decoding, the record, the page's
files, Gradio), not a model's weights, which are the same in every session.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file
    sys.path.insert(0, str(REPO))

from tests.helpers import client_when_up, free_port  # noqa: E402

MB = 2**20


def big_picture(path: Path, megapixels: float, seed: int) -> Path:
    """A smooth, varied JPEG of about `megapixels` (square); written once."""
    if path.exists():
        return path
    side = int((megapixels * 1_000_000) ** 0.5)
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # upscaled: smooth, compresses well
    Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR).save(path, quality=85)
    return path


def disk_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def largest_files(root: Path, n: int = 8) -> list[tuple[str, int]]:
    files = [(str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file()]
    return sorted(files, key=lambda f: -f[1])[:n]


def settle(process: psutil.Process, seconds: float) -> int:
    """RSS once it has stopped falling for 3 s (or after `seconds`)."""
    deadline = time.monotonic() + seconds
    lowest, since = process.memory_info().rss, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 3:
        time.sleep(0.5)
        rss = process.memory_info().rss
        if rss < lowest - MB:
            lowest, since = rss, time.monotonic()
    return process.memory_info().rss


def run(sessions: int, pictures: int, megapixels: float, settle_s: float, app_args: list[str], app_dir: Path = REPO) -> dict:
    from gradio_client import handle_file

    work = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    (work / "tmp").mkdir()
    photos_dir = Path(tempfile.gettempdir()) / "qwen-vl-chat-bench"
    photos_dir.mkdir(exist_ok=True)
    photos = [big_picture(photos_dir / f"big-{megapixels:g}mp-{i}.jpg", megapixels, i) for i in range(pictures)]
    port = free_port()
    env = {**os.environ, "TMPDIR": str(work / "tmp"), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(app_dir / "app.py"), "--model", "tiny-random", "--port", str(port), "--max-new-tokens", "8", *app_args]
    log = open(work / "app.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    process = psutil.Process(server.pid)
    figures: dict = {"sessions": sessions, "pictures": pictures, "megapixels": megapixels, "app_args": app_args}
    try:
        url = f"http://127.0.0.1:{port}/"
        warm = client_when_up(url)
        warm.predict({"text": "hello", "files": []}, api_name="/chat")
        warm.close()
        time.sleep(settle_s)  # the warm-up session ends
        figures["baseline_rss"] = settle(process, 10)
        figures["baseline_disk"] = disk_bytes(work / "tmp")
        message = {"text": "Describe every picture.", "files": [handle_file(str(p)) for p in photos]}
        clients, after = [], []
        started = time.monotonic()
        for _ in range(sessions):
            client = client_when_up(url)
            clients.append(client)
            history, _ = client.predict(message, api_name="/chat")
            assert history and history[-1]["role"] == "assistant", history
            after.append(process.memory_info().rss)
        figures["seconds"] = round(time.monotonic() - started, 1)
        figures["rss_after_each"] = after
        figures["one_session_rss"] = after[0]
        figures["all_sessions_rss"] = after[-1]
        figures["peak_rss"] = max(after)
        figures["all_sessions_disk"] = disk_bytes(work / "tmp")
        for client in clients:
            client.close()
        # Gradio notices a closed heartbeat within about 25 s (its 15 s beat, then a 10 s poll).
        time.sleep(settle_s)
        figures["ended_rss"] = settle(process, 10)
        figures["ended_disk"] = disk_bytes(work / "tmp")
        figures["ended_largest_files"] = largest_files(work / "tmp")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    figures["log"] = str(work / "app.log")
    return figures


def report(f: dict) -> str:
    mb = lambda b: f"{b / MB:,.0f} MB"  # noqa: E731
    base = f["baseline_rss"]
    lines = [
        f"{f['sessions']} sessions x {f['pictures']} pictures of {f['megapixels']:g} MP "
        f"(app flags: {' '.join(f['app_args']) or 'defaults'}), {f['seconds']} s",
        f"RSS baseline           {mb(base)}",
        f"RSS after 1 session    {mb(f['one_session_rss'])}  (+{mb(f['one_session_rss'] - base)})",
        f"RSS after all sessions {mb(f['all_sessions_rss'])}  (+{mb(f['all_sessions_rss'] - base)}; peak {mb(f['peak_rss'])})",
        f"RSS after they ended   {mb(f['ended_rss'])}  ({'+' if f['ended_rss'] >= base else '-'}{mb(abs(f['ended_rss'] - base))})",
        f"disk baseline          {mb(f['baseline_disk'])}",
        f"disk with all sessions {mb(f['all_sessions_disk'])}",
        f"disk after they ended  {mb(f['ended_disk'])}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--pictures", type=int, default=4)
    parser.add_argument("--megapixels", type=float, default=64)
    parser.add_argument("--settle", type=float, default=40.0, help="seconds to wait after the sessions end")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--app-dir", type=Path, default=REPO, help="the checkout whose app.py runs (to measure an older one)")
    parser.add_argument("app_args", nargs="*", help="extra flags for app.py (after --)")
    args = parser.parse_args(argv)
    figures = run(args.sessions, args.pictures, args.megapixels, args.settle, args.app_args, args.app_dir.resolve())
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
