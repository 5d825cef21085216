"""Shared fixtures: the tiny random checkpoints (each built once per run), engines, apps, photos."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EXAMPLES = Path(__file__).resolve().parent.parent / "demo" / "examples"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots kept for a person to look at


class TinyCheckpoints:
    """The tiny checkpoints by `--model` name, each built on first use, once per run, in one cache.

    `engine(name)` is the real transformers engine on it (float32, for exact comparisons), also made once.
    """

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self._engines: dict = {}

    def __getitem__(self, name: str) -> Path:
        from demo.engines.tiny import ensure_tiny_checkpoint

        return ensure_tiny_checkpoint(name, self.cache)

    def engine(self, name: str):
        from demo.engines.local.engine import TransformersEngine

        if name not in self._engines:
            self._engines[name] = TransformersEngine(str(self[name]), device="cpu", dtype="float32", name=name)
        return self._engines[name]


@pytest.fixture(scope="session", autouse=True)
def own_cache_root(tmp_path_factory) -> Iterator[Path]:
    """$QWEN_CHAT_CACHE for the whole run: what the app keeps there (the quantized weights of every
    int8/int4 engine, keyed by the tiny checkpoints' new files) stays out of ~/.cache."""
    root = tmp_path_factory.mktemp("qwen-chat-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QWEN_CHAT_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> TinyCheckpoints:
    return TinyCheckpoints(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_checkpoints) -> Path:
    """The Qwen2-VL one (`--model tiny-random`)."""
    return tiny_checkpoints["tiny-random"]


@pytest.fixture(scope="session")
def engine(tiny_checkpoint):
    """The real transformers engine on the tiny Qwen2-VL checkpoint, in float32 for exact comparisons."""
    from demo.engines.local.engine import TransformersEngine

    return TransformersEngine(str(tiny_checkpoint), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    return {p.stem: p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg")}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@contextmanager
def serve_app(engine, name: str, min_new_tokens: int = 150, max_new_tokens: int = 512) -> Iterator[dict]:
    """The real app on `engine`, served on a free local port, while the context lasts.

    Its engine is the real one, wrapped so that answers are at least `min_new_tokens` long
    (tests that stop a long answer raise it, then put it back); `max_new_tokens` is the
    setting's default on the page.
    """
    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.page.ui import CSS, build_ui
    from demo.web import serve
    from demo.web.clients import SessionLimits
    from demo.web.guard import GuardSettings
    from tests.fakes import AtLeast

    longer = AtLeast(engine, min_new_tokens=min_new_tokens)
    slot = EngineSlot(name, engine.family)
    slot.fill(longer)
    handlers = ChatHandlers(slot)
    demo = build_ui(handlers, max_new_tokens=max_new_tokens, concurrency=2)
    # Served as app.py serves it: behind the guard (demo/web), the queue the only way in. Every
    # client of the tests comes from 127.0.0.1, so the per-client cap is set high here (the cap
    # itself is tried in tests/test_guard.py, with clients at different addresses).
    # The suite's clients all come from 127.0.0.1 and open many sessions a minute: the per-client
    # session caps are lifted here; tests/test_flood.py and tests/test_shares.py test them on apps of their own.
    guard = GuardSettings(max_pending=64, sessions=SessionLimits(per_client=None, per_minute=None, invalid_per_minute=100_000))
    _, url, _ = serve.launch(
        demo, guard, max_queue=None, prevent_thread_lock=True, css=CSS, server_name="127.0.0.1", server_port=None, quiet=True
    )
    try:
        yield {"url": url, "handlers": handlers, "engine": longer}
    finally:
        demo.close()


@pytest.fixture(scope="session")
def app(engine):
    """The real app on the tiny Qwen2-VL checkpoint (see `serve_app`)."""
    with serve_app(engine, "tiny-random") as served:
        yield served


# -- Debian's Chromium, for the browser tests (one per test module) --------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: CI must run the README's install step (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from two threads, and lose much when other processes share the cores.

    Set in the thread the engine computes in too: torch's OpenMP reads it per thread."""
    import torch

    from demo.engines.local.torch_thread import TORCH_THREAD

    def set_threads(n: int) -> None:
        torch.set_num_threads(n)
        TORCH_THREAD.call(torch.set_num_threads, n)

    threads = torch.get_num_threads()
    set_threads(1)
    yield
    set_threads(threads)
