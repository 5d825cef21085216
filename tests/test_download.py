"""The first start as most people meet it: the model comes from a Hub, with its progress shown.

A fake Hub (`tests/hub_server.py`) serves the tiny checkpoint on 127.0.0.1 with the routes and
headers huggingface_hub 2.4 uses, and `HF_ENDPOINT` points the real client at it. The app runs
as a person runs it (`python app.py --model some-org/tiny` in a subprocess: huggingface_hub reads
`HF_ENDPOINT` when it is imported), with `HF_HOME` in a temporary folder. Nothing leaves
127.0.0.1. Screenshots land in tests/artifacts/.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from demo.engines.base import ModelLoadError
from demo.engines.hub.download import ModelFile, fetch_model, is_hub_id, plan_download, wanted_files
from demo.engines.hub.progress import DownloadProgress, human_bytes, human_duration
from tests.helpers import client_when_up, end_process, free_port, wait_until
from tests.hub_server import FakeHub, ServedRepo
from tests.test_faults import outbound  # noqa: F401 - the fixture that records connections leaving this machine

ROOT = Path(__file__).resolve().parent.parent
REPO = "some-org/tiny"
WHAT_TO_DO = ("--model tiny-random", "local checkpoint directory", "network")
READY = "(qwen2-vl) is ready"


# -- the pieces --------------------------------------------------------------------------------


def test_the_files_transformers_loads_are_the_ones_downloaded():
    # Qwen/Qwen2-VL-2B-Instruct's files, as its Hub page lists them.
    listing = [
        ".gitattributes", "LICENSE", "README.md", "chat_template.json", "config.json", "generation_config.json",
        "merges.txt", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
        "vocab.json", "onnx/model.onnx", "onnx/config.json",
    ]
    chosen = {f.name for f in wanted_files([ModelFile(name, 1, "") for name in listing])}
    assert chosen == {
        "chat_template.json", "config.json", "generation_config.json", "merges.txt", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors", "model.safetensors.index.json", "preprocessor_config.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.json",
    }
    older = [ModelFile(n, 1, "") for n in ("config.json", "pytorch_model.bin", "tokenizer.json")]
    assert {f.name for f in wanted_files(older)} == {"config.json", "pytorch_model.bin", "tokenizer.json"}


def test_hub_ids_and_local_paths(tmp_path):
    assert is_hub_id("Qwen/Qwen2-VL-2B-Instruct") and is_hub_id("some-org/tiny")
    assert not is_hub_id(str(tmp_path))  # an existing directory is loaded as it is
    assert not is_hub_id(str(tmp_path / "no" / "such-model")) and not is_hub_id("./model")


def test_progress_in_words():
    assert [human_bytes(n) for n in (512, 640_000, 1_046_504, 4_430_000_000)] == ["512 B", "640 kB", "1.05 MB", "4.43 GB"]
    assert [human_duration(s) for s in (0.2, 42, 300, 7500)] == ["1 s", "42 s", "5 min", "2 h 05 min"]
    going = DownloadProgress(REPO, total=4_400_000_000, done=1_200_000_000, resumed=30_000_000, files=14, files_done=12,
                             files_resumed=12, rate=11_000_000, elapsed=100)
    assert going.summary() == "1.2 GB of 4.4 GB (27%) · 11 MB/s · about 5 min left"
    assert going.resumed_note() == "Resumed: 12 of 14 files (30 MB) were already in the cache."
    stalled = DownloadProgress(REPO, total=100, done=40, rate=0.0, idle=20)
    assert stalled.summary() == "40 B of 100 B (40%) · no data for 20 s"
    finished = DownloadProgress(REPO, total=2_000_000, done=2_000_000, files=3, files_done=3, elapsed=4, finished=True)
    assert finished.summary() == "2 MB in 4 s (500 kB/s)"


# -- the Hub's answers, in this process --------------------------------------------------------


@pytest.fixture
def hub_online(monkeypatch, outbound):  # noqa: F811 - the fixture imported above
    """huggingface_hub in this process, online (the suite sets HF_HUB_OFFLINE) and without a token.

    Any attempt to reach a host other than this machine fails the test.
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # its registry fetch would go to huggingface.co
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # no token file either
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", "/nonexistent-hf-home/token")
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", "/nonexistent-hf-home/stored_tokens")
    yield
    assert outbound == [], f"tried to reach {outbound}"


def test_a_download_in_this_process_reports_rising_progress_and_resumes_a_cut_file_with_a_range(tiny_checkpoint, tmp_path, hub_online):
    reports: list[DownloadProgress] = []
    served = ServedRepo.from_dir(REPO, tiny_checkpoint)
    weights = served.files["model.safetensors"]
    stale = tmp_path / "models--some-org--tiny" / "blobs" / f"{weights.sha256}.0badf00d.incomplete"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 700_000)  # left by a start that was killed: not progress
    with FakeHub([served], rate=1_500_000, drop_after=300_000) as hub:
        path = fetch_model(REPO, endpoint=hub.url, cache_dir=tmp_path, on_progress=reports.append)
    assert (path / "model.safetensors").read_bytes() == weights.data
    assert sorted(p.name for p in path.iterdir()) == sorted(f.name for f in wanted_files([ModelFile(n, 0, "") for n in served.files]))
    cdn = [r for r in hub.requests if r[1].startswith("/cdn/")]
    assert [r[0] for r in cdn] == ["GET", "GET"] and cdn[1][2].startswith("bytes=")  # cut once, resumed from where it was
    assert not any("README.md" in r[1] for r in hub.requests)  # only what transformers loads
    done = [p.done for p in reports]
    assert reports[0].done == 0 and reports[0].resumed == 0
    assert done == sorted(done) and len(set(done)) >= 3 and reports[-1].finished and reports[-1].done == reports[-1].total
    assert any(f.name == "model.safetensors" and 0 < f.done < f.size for p in reports for f in p.current)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", ["has no model some-org/nope", "check the model id", "HF_TOKEN"]),
        ("gated", ["some-org/gated is a gated model", "accept its conditions at http://127.0.0.1:", "HF_TOKEN", "hf auth login"]),
        ("gated with a token", ["has no access to the gated model some-org/gated yet", "accept its conditions"]),
        ("server error", ["server error (HTTP 500)", "try again in a few minutes", "--model tiny-random"]),
    ],
)
def test_hub_refusals_are_one_sentence_that_says_what_to_do(case, expected, tiny_checkpoint, tmp_path, hub_online, monkeypatch):
    repo = {"missing": "some-org/nope", "server error": "some-org/down"}.get(case, "some-org/gated")
    if case == "gated with a token":
        monkeypatch.setenv("HF_TOKEN", "hf_not_allowed")
    hub = FakeHub([ServedRepo.from_dir("some-org/gated", tiny_checkpoint, gated=True)], failing=("some-org/down",))
    started = time.monotonic()
    with hub, pytest.raises(ModelLoadError) as failure:
        fetch_model(repo, endpoint=hub.url, cache_dir=tmp_path)
    sentence = str(failure.value)
    assert time.monotonic() - started < 5  # no retries for minutes
    assert all(part in sentence for part in expected), sentence
    assert "\n" not in sentence and "Traceback" not in sentence
    if case != "gated with a token":
        assert all("/resolve/" not in path for _, path, _ in hub.requests)  # known from the model info alone
    else:
        assert any(f"/{repo}/resolve/" in path for _, path, _ in hub.requests)


def test_a_cached_model_is_used_when_the_hub_is_down(tiny_checkpoint, tmp_path, hub_online):
    with FakeHub([ServedRepo.from_dir(REPO, tiny_checkpoint)]) as hub:
        first = fetch_model(REPO, endpoint=hub.url, cache_dir=tmp_path)
    with FakeHub([], failing=(REPO,)) as down:
        assert fetch_model(REPO, endpoint=down.url, cache_dir=tmp_path) == first
    plan = plan_download(REPO, endpoint=f"http://127.0.0.1:{free_port()}", cache_dir=tmp_path)
    assert plan.cached == first


# -- the real command ----------------------------------------------------------------------------


class Process:
    """A subprocess whose output (stdout and stderr together) is collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        assert wait_until(lambda: any(text in line for line in self.lines) or self.popen.poll() is not None, timeout), self.output
        found = [line for line in self.lines if text in line]
        assert found, f"{text!r} never came:\n{self.output}"
        return found[0]

    def stop(self) -> None:
        end_process(self.popen, timeout=20)
        self._reader.join(timeout=5)


def start_hub(checkpoint: Path, *flags: str) -> tuple[Process, str]:
    hub = Process([sys.executable, "-m", "tests.hub_server", "--repo", f"{REPO}={checkpoint}", *flags], dict(os.environ))
    url = hub.wait_for("ready ", timeout=30).split()[1]
    return hub, url


def start_app(hf_home: Path, endpoint: str, *flags: str, model: str = REPO) -> tuple[Process, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=endpoint, GRADIO_ANALYTICS_ENABLED="False")
    port = free_port()
    argv = [sys.executable, "app.py", "--model", model, "--port", str(port), "--max-new-tokens", "8", *flags]
    return Process(argv, env), port


def error_lines(app: Process) -> list[str]:
    return [line for line in app.lines if line.startswith("error:")]


def silent_port() -> tuple[socket.socket, int]:
    """A port that accepts connections and never answers (a hung server or a blackholed proxy)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize("hub", ["closed port", "silent socket", "no such model"])
def test_a_start_that_cannot_download_fails_within_ten_seconds_with_one_line(hub, tiny_checkpoint, tmp_path):
    """The offline start used to retry for about 2.5 minutes (5 files × huggingface_hub's backoff)."""
    server = sock = None
    model = "some-org/nope" if hub == "no such model" else "Qwen/Qwen2-VL-2B-Instruct"
    if hub == "closed port":
        endpoint = f"http://127.0.0.1:{free_port()}"
    elif hub == "silent socket":
        sock, port = silent_port()
        endpoint = f"http://127.0.0.1:{port}"
    else:
        server, endpoint = start_hub(tiny_checkpoint)
    try:
        app, _ = start_app(tmp_path / "hf", endpoint, model=model)
        app.popen.wait(timeout=30)
        app.stop()
        seconds = time.monotonic() - app.started
    finally:
        if sock is not None:
            sock.close()
        if server is not None:
            server.stop()
    assert app.popen.returncode == 1
    assert seconds < 10, f"{seconds:.1f} s"
    assert "Traceback" not in app.output and "Retrying" not in app.output
    (line,) = error_lines(app)
    if hub == "no such model":
        assert "has no model some-org/nope" in line and "check the model id" in line
    else:
        assert "Cannot reach the Hugging Face Hub" in line and all(part in line for part in WHAT_TO_DO), line
        assert ("no answer within" in line) == (hub == "silent socket")


def test_a_second_start_uses_the_cache_without_the_network(tiny_checkpoint, tmp_path, hub_online):
    with FakeHub([ServedRepo.from_dir(REPO, tiny_checkpoint)]) as hub:
        fetch_model(REPO, endpoint=hub.url, cache_dir=tmp_path / "hf" / "hub")  # the first start's download
    app, port = start_app(tmp_path / "hf", hub.url)  # the same Hub, stopped: nothing listens there now
    try:
        client = client_when_up(f"http://127.0.0.1:{port}/")
        history, _ = client.predict({"text": "Hello", "files": []}, api_name="/chat")
        assert history[-1]["role"] == "assistant" and not history[-1]["content"][0]["text"].startswith("⚠")
        app.wait_for("is ready")
    finally:
        app.stop()
    assert "using the copy in the cache" in app.output and "downloading" not in app.output
    assert not error_lines(app) and "Traceback" not in app.output


def test_ctrl_c_during_a_download_ends_at_once_and_leaves_no_partial_file(tiny_checkpoint, tmp_path):
    hub, endpoint = start_hub(tiny_checkpoint, "--rate", "100000", "--hold")
    app, _ = start_app(tmp_path / "hf", endpoint)
    try:
        app.wait_for("downloading 8 files")
        blobs = tmp_path / "hf" / "hub" / "models--some-org--tiny" / "blobs"
        complete = lambda: [p for p in blobs.glob("*") if p.suffix != ".incomplete"]  # noqa: E731
        assert wait_until(lambda: len(complete()) == 7, timeout=30)  # every file but the held weights
        os.kill(hub.popen.pid, signal.SIGUSR1)
        assert wait_until(lambda: any(p.stat().st_size > 0 for p in blobs.glob("*.incomplete")), timeout=30)
        interrupted = time.monotonic()
        app.popen.send_signal(signal.SIGINT)
        app.popen.wait(timeout=30)
        app.stop()
    finally:
        app.stop()
        hub.stop()
    assert app.popen.returncode == 130 and time.monotonic() - interrupted < 5
    assert "stopped before some-org/tiny was ready; files already downloaded stay in the cache" in app.output
    assert "Traceback" not in app.output
    assert not list(blobs.glob("*.incomplete")) and len(complete()) == len(list(blobs.iterdir())) == 7  # the complete files stay


# -- what a person sees in the browser ------------------------------------------------------------


BYTES = re.compile(r"([\d.]+) (B|kB|MB|GB) of ([\d.]+) (B|kB|MB|GB) \((\d+)%\)")


def shown_bytes(text: str) -> int | None:
    match = BYTES.search(text)
    if not match:
        return None
    return round(float(match[1]) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[match[2]])


def open_page(browser, port: int):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    assert wait_until(lambda: _loads(page, port), timeout=60), "the page never opened"
    return page


def _loads(page, port: int) -> bool:
    try:
        page.goto(f"http://127.0.0.1:{port}/", timeout=5_000)
        page.locator("#model-status").wait_for(timeout=5_000)
        return True
    except Exception:  # noqa: BLE001 - not up yet
        time.sleep(0.3)
        return False


@pytest.mark.browser
def test_a_first_start_shows_the_download_in_every_tab_and_answers_a_question_asked_meanwhile(browser, tiny_checkpoint, tmp_path, artifacts):
    hub, endpoint = start_hub(tiny_checkpoint, "--rate", "250000", "--hold")
    app, port = start_app(tmp_path / "hf", endpoint)
    try:
        tabs = [open_page(browser, port), open_page(browser, port)]
        tabs[0].get_by_text("Downloading").wait_for(timeout=30_000)
        tabs[0].locator("#message textarea").fill("What do you see?")
        tabs[0].keyboard.press("Enter")  # asked while the model is still downloading
        tabs[0].get_by_text("still loading").wait_for(timeout=10_000)
        os.kill(hub.popen.pid, signal.SIGUSR1)  # the weights start flowing now, with both tabs watching
        seen: list[list[str]] = [[], []]
        shot = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            texts = [tab.locator("#model-status").inner_text() for tab in tabs]
            for mine, text in zip(seen, texts, strict=True):
                mine.append(text)
            if not shot and (shown_bytes(texts[0]) or 0) > 400_000:
                tabs[0].screenshot(path=str(artifacts / "first-start-download.png"))
                shot = True
            if all(READY in text for text in texts):
                break
            time.sleep(0.25)
        for tab_seen in seen:
            counts = [b for b in map(shown_bytes, tab_seen) if b is not None]
            assert len(set(counts)) >= 3 and counts == sorted(counts), counts  # rising byte counts in every tab
        downloading = [t for t in seen[0] if "Downloading" in t and "/s" in t]
        assert downloading and "left" in downloading[-1] and "of 8 files" in downloading[-1], seen[0]
        assert "model.safetensors:" in "\n".join(seen[0])  # the file being fetched, with its own bytes
        assert any("Loading the weights" in t for t in seen[0] + seen[1])
        assert tabs[0].locator("#model-status progress").count() == 0  # gone once ready
        assert shot
        # The question asked during the download is answered now.
        tabs[0].locator("#message button.stop-button").wait_for(state="hidden", timeout=30_000)
        answer = tabs[0].locator("#chatbot [data-testid='bot']").last.inner_text()
        assert answer.strip() and "still loading" not in answer and "⚠" not in answer
        tabs[0].screenshot(path=str(artifacts / "first-start-ready.png"))
        client = client_when_up(f"http://127.0.0.1:{port}/")
        history, _ = client.predict({"text": "Hello", "files": []}, api_name="/chat")
        assert history[-1]["role"] == "assistant"
    finally:
        app.stop()
        hub.stop()
    log = app.output
    assert "some-org/tiny: downloading 8 files (1.1 MB) from http://127.0.0.1:" in log
    progress_lines = [line for line in app.lines if "some-org/tiny: downloading: " in line]
    assert progress_lines and all(" of 1.1 MB (" in line for line in progress_lines)
    times = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in progress_lines]
    assert all((b - a).total_seconds() > 4.5 for a, b in itertools.pairwise(times))  # a line every 5 s, not a flood
    assert "some-org/tiny: downloaded 1.1 MB in" in log and "is ready" in log
    assert "HTTP Request" not in log and "Traceback" not in log
    assert not any("README.md" in line for line in hub.lines)  # only what transformers loads


@pytest.mark.browser
def test_a_download_cut_midway_is_one_sentence_and_the_next_start_resumes(browser, tiny_checkpoint, tmp_path, artifacts):
    hub, endpoint = start_hub(tiny_checkpoint, "--rate", "60000", "--hold")
    app, port = start_app(tmp_path / "hf", endpoint)
    try:
        page = open_page(browser, port)
        page.get_by_text("Downloading").wait_for(timeout=30_000)
        os.kill(hub.popen.pid, signal.SIGUSR1)
        page.get_by_text("model.safetensors:").wait_for(timeout=30_000)  # the weights are coming in
        assert wait_until(lambda: (shown_bytes(page.locator("#model-status").inner_text()) or 0) > 150_000, timeout=30)
        hub.popen.kill()  # the server dies mid-file
        hub.stop()
        page.get_by_text("could not be loaded").wait_for(timeout=30_000)
        status = page.locator("#model-status").inner_text()
        page.screenshot(path=str(artifacts / "first-start-cut.png"))
        app.popen.wait(timeout=30)
    finally:
        app.stop()
        hub.stop()
    assert app.popen.returncode == 1 and "Traceback" not in app.output
    (line,) = error_lines(app)
    assert line.startswith("error: The download of some-org/tiny stopped at ") and "of 1.1 MB" in line
    assert "start the app again when the network is back" in line and "7 complete files" in line
    assert line.removeprefix("error: ") in " ".join(status.split())  # the same sentence on the page

    hub, endpoint = start_hub(tiny_checkpoint)
    app, port = start_app(tmp_path / "hf", endpoint)
    try:
        resumed = app.wait_for("resuming the download")
        app.wait_for("some-org/tiny: downloaded 1.1 MB in")  # then it loads as in a first start
    finally:
        app.stop()
        hub.stop()
    assert "7 of 8 files" in resumed and "already in the cache" in resumed
    fetched = [line.split()[1] for line in hub.lines if line.startswith("GET /")]
    assert [path for path in fetched if "/resolve/" in path or path.startswith("/cdn/")] == [
        f"/cdn/{ServedRepo.from_dir(REPO, tiny_checkpoint).files['model.safetensors'].sha256}"
    ]  # only the file that was cut is downloaded again
    assert not error_lines(app)



def test_the_status_shows_a_bar_the_bytes_the_file_and_a_resume(tmp_path):
    from demo.engines.hub.progress import FileProgress
    from demo.engines.slot import EngineSlot

    slot = EngineSlot("Qwen/Qwen2-VL-2B-Instruct")
    slot.report_download(DownloadProgress(
        "Qwen/Qwen2-VL-2B-Instruct", total=4_430_000_000, done=1_200_000_000, resumed=30_000_000, files=14, files_done=12,
        files_resumed=12, rate=11_000_000, current=(FileProgress("model-<b>1</b>.safetensors", 1_170_000_000, 3_990_000_000),),
    ))
    status = slot.status_markdown()
    assert '<progress value="1200000000" max="4430000000"' in status
    assert "12 of 14 files" in status and "about 5 min left" in status
    assert "model\\-&lt;b&gt;1&lt;/b&gt;.safetensors: 1.17 GB of 3.99 GB" in status  # a file name is text, never markup
    assert "Resumed: 12 of 14 files (30 MB) were already in the cache." in status
    slot.report_loading()
    assert slot.status_markdown().startswith("Loading the weights of **Qwen/Qwen2\\-VL\\-2B\\-Instruct** (Qwen2-VL) into memory")
    assert "Downloaded 1.17 GB in" in slot.status_markdown()


def test_the_engine_downloads_a_hub_id_before_loading_it(tiny_checkpoint, tmp_path, hub_online, monkeypatch):
    from huggingface_hub import constants

    from demo.engines.local.engine import TransformersEngine

    with FakeHub([ServedRepo.from_dir(REPO, tiny_checkpoint)]) as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # as HF_ENDPOINT would have set them at import
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
        engine = TransformersEngine(REPO, device="cpu", dtype="float32")
    assert engine.model_name == REPO and engine.family == "qwen2-vl"
    assert engine.random_weights  # the marker came with the files
    assert any(path.startswith("/cdn/") for _, path, _ in hub.requests)
