"""Costs a stranger can cause, bounded before they are paid (issue 26): decoded pixels per picture
and across answers at once (`demo/media/budget.py`), and server request fields no flag may lift.

Memory is measured as RSS: in a fresh subprocess for single decodes, and on the launched app
(`--backend openai` against a scripted server that answers at once) for answers at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from gradio_client import handle_file
from PIL import Image

import app
from demo.engines.base import GenerationSettings
from demo.engines.server import OpenAIEngine
from demo.media.pictures import UploadError, load_picture
from tests.helpers import client_when_up, end_process, free_port, ok_server

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


def solid_webp(path: Path, side: int, shade: int = 0) -> Path:
    """A few kB on disk, `side`² pixels once decoded: the issue's dimension bomb."""
    Image.new("RGB", (side, side), (200, 30 + shade, 30)).save(path, "WEBP", lossless=True)
    return path


def in_fresh_process(script: str) -> dict:
    """Run `script` in a new interpreter (the app's modules importable); it prints one JSON line."""
    prelude = textwrap.dedent("""
        import json, sys, threading, time
        def rss_mb(kind="VmRSS"):
            status = open("/proc/self/status").read()
            return int(status.split(kind + ":")[1].split()[0]) / 1024
    """)
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- one picture -------------------------------------------------------------------------------------


def test_a_small_webp_of_huge_dimensions_is_refused_before_decoding(tmp_path, monkeypatch):
    """2.5 kB, 8000×8000: about 1 GB while libwebp, Pillow and the resize hold their copies."""
    path = solid_webp(tmp_path / "bomb.webp", 8000)
    assert path.stat().st_size < 3000
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels were decoded"))
    with pytest.raises(UploadError) as refused:
        load_picture(str(path))
    text = str(refused.value)
    assert text.startswith("bomb.webp would take about 1,0") and "of memory to decode, more than this app gives one file" in text
    assert text.endswith(".") and ". " not in text


def test_decodes_at_once_share_one_budget():
    """Six people's WebPs decoded at once, each about 250 MB while decoded, within a budget of 400 MB."""
    measured = in_fresh_process("""
        import os, tempfile
        from PIL import Image
        from demo.media.pictures import load_picture
        try:
            from demo.media import budget
            budget.configure(400 * 2**20)
        except ImportError:  # before issue 26
            budget = None
        folder = tempfile.mkdtemp()
        paths = [os.path.join(folder, f"{i}.webp") for i in range(6)]
        for i, path in enumerate(paths):
            Image.new("RGB", (4000, 4000), (i, 2, 3)).save(path, lossless=True)
        before = rss_mb()
        threads = [threading.Thread(target=load_picture, args=(p,), kwargs={"need": lambda s: (1148, 1148)}) for p in paths]
        [t.start() for t in threads]; [t.join() for t in threads]
        print(json.dumps({"peak": rss_mb("VmHWM") - before, "reserved": budget.DECODING.peak if budget else None}))
        __import__("shutil").rmtree(folder)
    """)
    print(f"six 4000x4000 WebPs at once: peak +{measured['peak']:.0f} MB, at most {measured['reserved']} bytes reserved")
    assert measured["peak"] < 450  # six at once: about 1,500 MB
    assert measured["reserved"] <= 400 * MB


def test_the_budget_goes_in_turn_and_refuses_a_long_wait():
    from demo.media.budget import DecodeBudget  # here: the rest of the file runs without it (before issue 26)

    budget = DecodeBudget(100, wait_seconds=0.3)
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with budget.reserve(80, "first.png"):
            holding.set()
            release.wait(5)
            order.append("first")

    def then(name: str, nbytes: int) -> None:
        with budget.reserve(nbytes, name):
            order.append(name)

    threading.Thread(target=hold).start()
    holding.wait(5)
    started = time.monotonic()
    with pytest.raises(UploadError, match=r"^late\.png was not decoded: the app is busy decoding other people's files"):
        with budget.reserve(30, "late.png"):
            pass
    assert 0.25 < time.monotonic() - started < 2
    budget.wait_seconds = 5
    big = threading.Thread(target=then, args=("big.png", 90))
    big.start()
    time.sleep(0.1)
    small = threading.Thread(target=then, args=("small.png", 10))  # fits now, but comes after big
    small.start()
    time.sleep(0.1)
    release.set()
    big.join(5), small.join(5)
    assert order == ["first", "big.png", "small.png"] and budget.in_use == 0 and budget.peak <= 100
    with pytest.raises(UploadError, match=r"^huge\.png would take about 0 MB of memory to decode"):
        with budget.reserve(101, "huge.png"):
            pass


def test_only_the_formats_the_app_takes_are_opened(tmp_path):
    """Pillow would try each of its 40 plugins on any file; a PPM named .png was decoded."""
    path = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), "red").save(path, format="PPM")
    with pytest.raises(UploadError, match="photo.png is not an image this app can read"):
        load_picture(str(path))


def test_an_animation_costs_its_first_frame_only(tmp_path, monkeypatch):
    """(Already so before: kept as a guard.) Of 1,000 frames, only the first is read."""
    from PIL import GifImagePlugin

    path = tmp_path / "long.gif"
    frames = [Image.new("P", (64, 64), i % 200) for i in range(1000)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=20)
    seeks: list[int] = []
    real_seek = GifImagePlugin.GifImageFile.seek
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "seek", lambda self, frame: seeks.append(frame) or real_seek(self, frame))
    image, size = load_picture(str(path))
    assert size == (64, 64) and set(seeks) <= {0}


# -- answers at once, on the launched app ---------------------------------------------------------------


@pytest.fixture
def scripted_server():
    """An OpenAI-compatible server that answers "ok" at once: (its URL, the request bodies it got)."""
    with ok_server() as served:
        yield served


def test_answers_at_once_hold_at_most_the_budget(tmp_path, scripted_server):
    """Four people at once, two messages each, each with a 2 kB WebP of 6000×6000 (about 550 MB while
    decoded): the app grew by 2.2 GB or more when they were decoded side by side."""
    base_url, _ = scripted_server
    pictures = [solid_webp(tmp_path / f"bomb-{i}.webp", 6000, i) for i in range(4)]
    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": "x", "GRADIO_HEARTBEAT_INTERVAL": "1"}
    command = [sys.executable, "app.py", "--backend", "openai", "--base-url", base_url, "--model",
               "Qwen/Qwen2-VL-2B-Instruct", "--port", str(port), "--max-pending-per-client", "16"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        clients = [client_when_up(f"http://127.0.0.1:{port}/") for _ in pictures]
        clients[0].predict({"text": "warm up", "files": []}, api_name="/chat")
        process = psutil.Process(server.pid)
        baseline = peak = process.memory_info().rss
        replies: list[str] = []

        def person(client, picture) -> None:
            for n in range(2):
                history, _ = client.predict({"text": f"What is this? {n}", "files": [handle_file(str(picture))]}, api_name="/chat")
                replies.append(history[-1]["content"][0].get("text", ""))

        people = [threading.Thread(target=person, args=pair) for pair in zip(clients, pictures, strict=True)]
        for thread in people:
            thread.start()
        while any(thread.is_alive() for thread in people):
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)
        for client in clients:
            client.close()
    finally:
        end_process(server)
    print(f"4 people x 2 WebPs: +{(peak - baseline) / MB:.0f} MB at the peak; replies {set(replies)}")
    assert replies == ["ok"] * 8
    assert peak - baseline < 1300 * MB  # the budget (1 GiB), and the pictures kept


# -- a server's request: no flag lifts a person's limit -----------------------------------------------------

SERVER = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "Qwen/Qwen2-VL-2B-Instruct"]


@pytest.mark.parametrize(
    "body, named",
    [
        ({"max_tokens": 100_000}, "max_tokens"),  # the issue: it lifted --max-answer-tokens
        ({"max_completion_tokens": 100_000}, "max_completion_tokens"),  # preferred over max_tokens by vLLM and transformers serve
        ({"n": 16}, "n"),
        ({"best_of": 8, "use_beam_search": True}, "best_of, use_beam_search"),
        ({"logprobs": True, "top_logprobs": 20}, "logprobs, top_logprobs"),
        ({"generation_config": json.dumps({"num_beams": 8, "max_new_tokens": 99999})}, "generation_config.num_beams, generation_config.max_new_tokens"),
        ({"messages": []}, "messages"),
    ],
)
def test_extra_body_may_not_lift_a_persons_limit(capsys, body, named):
    with pytest.raises(SystemExit):
        app.parse_args([*SERVER, "--extra-body", json.dumps(body)])
    assert f"error: --extra-body may not set {named}: the app sets each answer's length" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"may not set {named}:"):
        OpenAIEngine("http://127.0.0.1:9/v1", "Qwen2-VL-2B", extra_body=body)


def test_server_specific_fields_still_pass():
    args = app.parse_args([*SERVER, "--extra-body", '{"skip_special_tokens": false, "min_tokens": 8}'])
    assert args.extra_body == {"skip_special_tokens": False, "min_tokens": 8}


def test_the_server_receives_each_persons_limit(scripted_server):
    base_url, bodies = scripted_server
    engine = OpenAIEngine(base_url, "Qwen2-VL-2B", extra_body={"skip_special_tokens": False, "min_tokens": 8})
    settings = GenerationSettings(max_new_tokens=7)
    assert list(engine.stream([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], settings, threading.Event())) == ["ok"]
    engine.extra_body.update(max_tokens=100_000, n=4)  # even changed after the check
    list(engine.stream([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], settings, threading.Event()))
    for body in bodies:
        assert body["max_tokens"] == 7 and "n" not in body and "max_completion_tokens" not in body
        assert body["skip_special_tokens"] is False and body["min_tokens"] == 8
    assert len(bodies) == 2
