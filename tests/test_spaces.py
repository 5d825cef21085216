"""Hugging Face Spaces: the README's front matter, packages.txt, flags from the environment, ZeroGPU.

ZeroGPU is tested under its real contract: the real `spaces` package (0.51.3) runs in its
ZeroGPU mode (`SPACES_ZERO_GPU=true`) inside the launched app, and forks, pickles and streams
exactly as on a Space. What a Space's ZeroGPU service does over HTTP (`spaces/zero/api.py`:
/startup-report, /schedule, /allow, /release) is answered by `ZeroGPUService` below, which
records every call. The only parts of `spaces` replaced are the worker's CUDA hand-over
(`spaces.zero.torch.init`: a tensor to CUDA; `.move`: the weights to the GPU), which need a GPU
this machine does not have: the model runs on the CPU in the forked worker (`--device cpu`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psutil
import pytest
import yaml
from gradio_client import handle_file

import app
from demo import flags
from tests.helpers import client_when_up, end_process, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_the_readme_front_matter_describes_a_gradio_space():
    meta = front_matter()
    for key in ("title", "sdk", "sdk_version", "app_file", "python_version", "models", "short_description", "suggested_hardware"):
        assert meta.get(key), key
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (ROOT / meta["app_file"]).exists()
    assert str(meta["python_version"]).startswith("3.12")  # ZeroGPU's (tests/test_requirements.py)
    from huggingface_hub import SpaceHardware

    assert meta["suggested_hardware"] in {h.value for h in SpaceHardware}  # "zero-a10g": ZeroGPU's flavour name
    assert flags.DEFAULT_MODEL in meta["models"]
    assert len(meta["short_description"]) <= 60  # the Hub's limit
    import gradio

    assert meta["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0]


def test_packages_txt_names_debian_packages():
    names = (ROOT / "packages.txt").read_text().split()
    assert names == ["fonts-noto-cjk"]


@pytest.mark.parametrize(
    "environment, dest, value",
    [
        ({"QWEN_CHAT_MODEL": "tiny-random"}, "model", "tiny-random"),  # a string flag
        ({"QWEN_CHAT_MAX_NEW_TOKENS": "64"}, "max_new_tokens", 64),  # a number goes through the flag's type
        ({"QWEN_CHAT_SHARE": "true"}, "share", True),  # a switch
        ({"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"}, "host", "0.0.0.0"),  # what Spaces set
        ({"QWEN_CHAT_BACKEND": "openai", "QWEN_CHAT_BASE_URL": "http://x:8000/v1"}, "concurrency", 16),  # a server's default
    ],
)
def test_flags_come_from_the_environment(monkeypatch, environment, dest, value):
    for key, text in environment.items():
        monkeypatch.setenv(key, text)
    assert getattr(app.parse_args([]), dest) == value


def test_the_command_line_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("QWEN_CHAT_MAX_NEW_TOKENS", "64")
    assert app.parse_args(["--max-new-tokens", "32"]).max_new_tokens == 32


def test_a_bad_value_in_the_environment_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("QWEN_CHAT_DTYPE", "int3")
    with pytest.raises(SystemExit):
        app.parse_args([])
    assert "QWEN_CHAT_DTYPE='int3': expected one of" in capsys.readouterr().err


def build_app() -> None:
    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.page.ui import build_ui

    build_ui(ChatHandlers(EngineSlot("x")))


def test_the_app_builds_without_spaces(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # as if not installed
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    from demo.engines.zerogpu import on_zero_gpu, zero_gpu_active

    build_app()
    assert not zero_gpu_active()
    engine = types.SimpleNamespace(stream=lambda *a: iter(()))
    assert on_zero_gpu(engine) is engine


def test_with_spaces_but_no_zero_gpu_the_engine_is_used_as_it_is(monkeypatch, engine):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    from demo.engines.zerogpu import on_zero_gpu

    assert on_zero_gpu(engine) is engine


def test_the_gpu_time_asked_for_grows_with_max_new_tokens_and_is_capped(monkeypatch):
    from demo.engines import zerogpu
    from demo.engines.base import GenerationSettings

    monkeypatch.setattr(zerogpu, "_max_seconds", 120)
    short, long = (zerogpu.gpu_seconds([], GenerationSettings(max_new_tokens=n)) for n in (64, 1024))
    assert zerogpu.START_SECONDS < short < long <= 120
    assert zerogpu.gpu_seconds([], GenerationSettings(max_new_tokens=100_000)) == 120
    assert zerogpu.deadline_seconds(120) == 115 and zerogpu.deadline_seconds(8) == pytest.approx(6.4)


# -- ZeroGPU under the real `spaces` package ----------------------------------------------------


class ZeroGPUService:
    """The ZeroGPU service a Space talks to (`spaces/zero/api.py`), on a local port; records calls.

    `/schedule` grants a GPU at once: `idle` says whether the last worker may be used again
    (`wrappers.py` keeps a worker only when the service says so).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.idle = True
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                service.calls.append((url.path, query))
                body = b""
                if url.path == "/schedule":
                    token = f"allow-{len(service.calls)}"
                    body = json.dumps({"idle": service.idle, "nvidiaIndex": 0, "nvidiaUUID": "GPU-0", "allowToken": token}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, path: str) -> list[dict]:
        return [query for p, query in self.calls if p == path]

    def worker_pids(self) -> list[int]:
        return [int(q["pid"]) for q in self.of("/allow")]

    def close(self) -> None:
        self.server.shutdown()


# Run in the app's process before `app` is imported: `spaces` in its ZeroGPU mode, minus the CUDA hand-over.
ZERO_GPU_PRELUDE = (
    "import spaces.zero.torch as zero_torch; "
    "zero_torch.init = lambda nvidia_uuid: None; "
    "zero_torch.move = lambda callback=None: None; "
)


def zero_gpu_environment(service: ZeroGPUService, tmp_path: Path) -> dict:
    return {
        **os.environ,
        "SPACES_ZERO_GPU": "true",
        "SPACES_ZERO_DEVICE_API_URL": service.url,
        "ZEROGPU_OFFLOAD_DIR": str(tmp_path / "offload"),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONPATH": str(ROOT),
    }


MAX_SECONDS = 8  # the app's --zerogpu-max-seconds here: answers end themselves after 6.4 s


@pytest.fixture(scope="module")
def zero_gpu_app(tmp_path_factory):
    """`python app.py --model tiny-random --device cpu` with `spaces` in ZeroGPU mode, and its service."""
    tmp_path = tmp_path_factory.mktemp("zerogpu")
    service = ZeroGPUService()
    port = free_port()
    code = ZERO_GPU_PRELUDE + "import sys, app; sys.exit(app.main(sys.argv[1:]))"
    log = open(tmp_path / "app.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--model", "tiny-random", "--device", "cpu", "--port", str(port),
         "--max-new-tokens", "48", "--zerogpu-max-seconds", str(MAX_SECONDS)],
        cwd=ROOT, env=zero_gpu_environment(service, tmp_path), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        client = client_when_up(f"http://127.0.0.1:{port}/")
        assert wait_until(lambda: "is ready" in (tmp_path / "app.log").read_text(), timeout=90), (tmp_path / "app.log").read_text()
        yield {"process": process, "service": service, "port": port, "client": client, "log": tmp_path / "app.log"}
    finally:
        end_process(process, timeout=20)
        log.close()
        service.close()


def new_client(zero_gpu_app, **kwargs):
    from gradio_client import Client

    return Client(f"http://127.0.0.1:{zero_gpu_app['port']}/", download_files=False, verbose=False, **kwargs)


def last_message(history: list[dict]) -> tuple[str, str]:
    part = history[-1]["content"][-1]
    return history[-1]["role"], part.get("text") or ""


def worker_is_idle(pid: int, seconds: float = 1.0) -> bool:
    """True when the process used almost no CPU over `seconds` (it is not generating)."""
    process = psutil.Process(pid)
    before = sum(process.cpu_times()[:2])
    time.sleep(seconds)
    return sum(process.cpu_times()[:2]) - before < 0.2 * seconds


def test_zero_gpu_start_up_finds_the_gpu_function(zero_gpu_app):
    """`spaces` reports start-up at the first launch only if a decorated function exists by then."""
    service = zero_gpu_app["service"]
    assert service.calls and service.calls[0][0] == "/startup-report"


def test_answers_stream_from_a_forked_worker_with_the_visitors_token_and_follow_ups_work(zero_gpu_app, photos):
    service, app_pid = zero_gpu_app["service"], zero_gpu_app["process"].pid
    service.idle = True
    chat = new_client(zero_gpu_app, headers={"X-IP-Token": "visitor-token"})
    scheduled = len(service.of("/schedule"))
    job = chat.submit({"text": "What is in Picture 1?", "files": [handle_file(str(photos["chelsea"]))]}, api_name="/chat")
    updates = list(job)
    history, _ = updates[-1]
    assert len(updates) >= 3  # streamed piece by piece across the process boundary
    role, answer = last_message(history)
    assert role == "assistant" and answer and not answer.startswith("⚠"), answer
    call = service.of("/schedule")[scheduled]
    assert call["durationSeconds"] == str(MAX_SECONDS)  # 48 tokens ask for 18 s, capped by --zerogpu-max-seconds
    assert call["token"] == "visitor-token"  # the visitor's quota, not the Space's
    worker = service.worker_pids()[-1]
    assert worker != app_pid and psutil.Process(worker).ppid() == app_pid  # forked from the app
    assert service.of("/release")[-1]["fail"] == "false"

    history, _ = chat.predict({"text": "And the colours?", "files": []}, api_name="/chat")
    assert [m["role"] for m in history].count("assistant") == 2
    assert not last_message(history)[1].startswith("⚠")
    assert service.worker_pids()[-1] == worker  # the idle worker answered again (its KV cache with it)


def test_stop_ends_the_generation_in_the_worker(zero_gpu_app):
    service = zero_gpu_app["service"]
    service.idle = True
    chat = new_client(zero_gpu_app)
    job = chat.submit({"text": "Talk for a long time.", "files": []}, 8192, api_name="/chat")
    assert wait_until(lambda: len(job.outputs()) >= 3, timeout=30)
    released = len(service.of("/release"))
    history = chat.predict(api_name="/stop")
    assert last_message(history)[1].endswith("*(Stopped.)*")
    assert wait_until(lambda: len(service.of("/release")) > released, timeout=5)  # the worker ended its task
    assert service.of("/release")[-1]["fail"] == "false"
    assert worker_is_idle(service.worker_pids()[-1])


def test_a_closed_connection_stops_the_worker_too(zero_gpu_app):
    service = zero_gpu_app["service"]
    chat = new_client(zero_gpu_app)
    job = chat.submit({"text": "Talk for a long time.", "files": []}, 8192, api_name="/chat")
    assert wait_until(lambda: len(job.outputs()) >= 3, timeout=30)
    released = len(service.of("/release"))
    job.cancel()
    assert wait_until(lambda: len(service.of("/release")) > released, timeout=10)
    assert worker_is_idle(service.worker_pids()[-1])


def test_an_answer_that_reaches_its_gpu_time_ends_itself_with_a_sentence(zero_gpu_app):
    chat = new_client(zero_gpu_app)
    started = time.monotonic()
    history, _ = chat.predict({"text": "Talk for a long time.", "files": []}, 8192, api_name="/chat")
    assert time.monotonic() - started < MAX_SECONDS + 5
    role, text = last_message(history)
    assert "reached the GPU time ZeroGPU lends one answer (8 s)" in text
    assert zero_gpu_app["service"].of("/release")[-1]["fail"] == "false"  # ended by the worker, not killed


def test_a_new_worker_answers_when_the_gpu_is_not_idle_and_a_killed_one_is_a_sentence(zero_gpu_app):
    service = zero_gpu_app["service"]
    chat = new_client(zero_gpu_app)
    service.idle = True
    chat.predict({"text": "Hello", "files": []}, api_name="/chat")
    first = service.worker_pids()[-1]
    service.idle = False  # ZeroGPU gives another GPU: a new worker, forked from the app as it is now
    history, _ = chat.predict({"text": "Hello again", "files": []}, api_name="/chat")
    second = service.worker_pids()[-1]
    assert second != first and not last_message(history)[1].startswith("⚠")

    service.idle = True
    job = chat.submit({"text": "Talk for a long time.", "files": []}, 8192, api_name="/chat")
    assert wait_until(lambda: len(job.outputs()) >= 3, timeout=30)
    os.kill(second, signal.SIGKILL)  # what ZeroGPU does to a task that overruns its duration
    history, _ = job.result(timeout=30)
    assert "ZeroGPU: GPU task aborted" in last_message(history)[1]
    history, _ = chat.predict({"text": "Still there?", "files": []}, api_name="/chat")
    assert not last_message(history)[1].startswith("⚠")
    assert service.worker_pids()[-1] not in (first, second)


def test_the_old_wiring_fails_under_the_real_contract_and_the_new_one_answers(tmp_path):
    """What every answer did before: `spaces.GPU(engine.stream)` called with the Stop event."""
    service = ZeroGPUService()
    code = ZERO_GPU_PRELUDE + """
import threading, spaces
from demo.engines.base import GenerationSettings
from demo.engines.local.engine import TransformersEngine
from demo.engines.tiny import ensure_tiny_checkpoint
from demo.engines import zerogpu
engine = TransformersEngine(str(ensure_tiny_checkpoint()), device="cpu")
messages = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
settings = GenerationSettings(max_new_tokens=4, min_new_tokens=4)
try:
    list(spaces.GPU(duration=60)(engine.stream)(messages, settings, threading.Event(), "s"))
except Exception as e:
    print("old:", type(e).__name__, e)
print("new:", len(list(zerogpu.on_zero_gpu(engine).stream(messages, settings, threading.Event(), "s"))))
"""
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=zero_gpu_environment(service, tmp_path),
            capture_output=True, text=True, timeout=120,
        )
    finally:
        service.close()
    assert "old: PicklingError cannot pickle '_thread.lock' object" in result.stdout, result.stdout + result.stderr
    assert "new: " in result.stdout and int(result.stdout.split("new: ")[1].split()[0]) >= 1
