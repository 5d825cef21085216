"""The real command, `python app.py --model tiny-random`, run once in a subprocess for the tests that
need a process of its own (its memory, its temporary directory, the flags' wiring into Gradio).

`launched_app()` starts it on first use (the tests that share it measure differences, not
absolutes) and stops it when the test run ends. Gradio's heartbeat is set to 1 s, so a closed
client ends its session within a few seconds instead of about 25.
"""

from __future__ import annotations

import atexit
import functools
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
from gradio_client import Client, handle_file
from PIL import Image

from tests.helpers import client_when_up, end_process, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LaunchedApp:
    url: str
    process: psutil.Process
    temp: Path  # the app's TMPDIR: every file it writes is under it

    def client(self) -> Client:
        return client_when_up(self.url)

    def rss(self) -> int:
        return self.process.memory_info().rss

    def session_folders(self) -> list[Path]:
        """The live sessions' folders (the app makes its sessions' root on first use)."""
        roots = list(self.temp.glob("qwen-vl-chat-*/gradio/qwen-vl-chat-sessions-*"))
        return [p for root in roots for p in root.iterdir() if p.is_dir()]

    def disk(self) -> int:
        return sum(p.stat().st_size for p in self.temp.rglob("*") if p.is_file())


@functools.cache
def launched_app() -> LaunchedApp:
    temp = Path(tempfile.mkdtemp(prefix="launched-app-"))
    port = free_port()
    env = {
        **os.environ,
        "TMPDIR": str(temp),
        "GRADIO_HEARTBEAT_INTERVAL": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
    }
    log = open(temp / "app.log", "w")  # noqa: SIM115 - closed at exit
    server = subprocess.Popen(
        [sys.executable, "app.py", "--model", "tiny-random", "--port", str(port), "--max-new-tokens", "4",
         "--max-sessions-per-client", "100000", "--new-sessions-per-minute", "100000"],  # the suite's clients share one address
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )

    def stop() -> None:
        end_process(server)
        log.close()

    atexit.register(stop)
    app = LaunchedApp(f"http://127.0.0.1:{port}/", psutil.Process(server.pid), temp)
    warm = app.client()  # waits for the model; a picture's first trip through the vision path costs once
    picture = temp / "warm-up.png"
    Image.new("RGB", (640, 480), "gray").save(picture)
    warm.predict({"text": "warm up", "files": [handle_file(str(picture))]}, api_name="/chat")
    warm.close()
    wait_until(lambda: not app.session_folders(), timeout=20)
    return app
