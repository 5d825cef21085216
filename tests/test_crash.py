"""A crash costs one answer at most and leaves nothing behind (issue 23: after `kill -9` in the middle
of an answer the app's temporary folder, with the session's pictures, was left on disk for good).

The folders an app deletes at exit hold the id of their process; the next start deletes those whose
process is gone (`demo.record.sessions.clean_after_crash`). The conversation itself comes back from
the person's browser (tests/test_browser_history.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from gradio_client import handle_file
from PIL import Image

from demo.record.sessions import OWNER_FILE, clean_after_crash
from tests.helpers import client_when_up, end_process, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


def ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_the_folders_of_ended_processes_are_deleted(tmp_path):
    left = tmp_path / "qwen-vl-chat-left"  # its process was killed
    mine = tmp_path / "qwen-vl-chat-mine"  # this process's
    unknown = tmp_path / "qwen-vl-chat-bench"  # no owner written: not ours to judge
    other = tmp_path / "something-else"
    for folder, owner in ((left, ended_pid()), (mine, os.getpid()), (unknown, None), (other, ended_pid())):
        folder.mkdir()
        (folder / "picture.png").write_bytes(b"x")
        if owner is not None:
            (folder / OWNER_FILE).write_text(str(owner))
    assert clean_after_crash(tmp_path, "qwen-vl-chat-") == [left]
    assert not left.exists() and mine.exists() and unknown.exists() and other.exists()


def start(temp: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "app.py", "--model", "tiny-random", "--port", str(port), "--max-new-tokens", "4"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )


def test_the_next_start_deletes_what_a_killed_app_left(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    app = start(temp, port)
    try:
        client = client_when_up(f"http://127.0.0.1:{port}/")
        picture = tmp_path / "p.png"
        Image.new("RGB", (64, 48), "red").save(picture)
        client.predict({"text": "what is it?", "files": [handle_file(str(picture))]}, api_name="/chat")
        [left] = list(temp.glob("qwen-vl-chat-*"))
        assert any(left.rglob("p.png"))  # the session's picture
        os.kill(app.pid, signal.SIGKILL)  # no exit handler runs
        app.wait(timeout=30)
        assert left.exists()
        app = start(temp, port)
        client_when_up(f"http://127.0.0.1:{port}/")
        assert wait_until(lambda: not left.exists(), timeout=10)
        assert len(list(temp.glob("qwen-vl-chat-*"))) == 1  # the new one's own
    finally:
        end_process(app)
