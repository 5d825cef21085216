"""Shared fixtures: the tiny random Qwen2-VL checkpoint (built once per run), engines, photos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EXAMPLES = Path(__file__).resolve().parent.parent / "demo" / "examples"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots kept for a person to look at


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from demo.engines.tiny_model import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="session")
def engine(tiny_checkpoint):
    """The real transformers engine on the tiny checkpoint, in float32 for exact comparisons."""
    from demo.engines.local import TransformersEngine

    return TransformersEngine(str(tiny_checkpoint), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    return {p.stem: p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg")}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def app(engine):
    """The real app on the tiny checkpoint, served on a free local port.

    Its engine is the real one, wrapped so that answers are at least `min_new_tokens` long
    (tests that stop a long answer raise it, then put it back).
    """
    from demo.engines.slot import EngineSlot
    from demo.handlers import ChatHandlers
    from demo.ui import CSS, build_ui
    from demo.web import serve
    from demo.web.guard import GuardSettings
    from tests.fakes import AtLeast

    longer = AtLeast(engine, min_new_tokens=150)
    slot = EngineSlot("tiny-random")
    slot.fill(longer)
    handlers = ChatHandlers(slot)
    demo = build_ui(handlers, concurrency=2)
    # Served as app.py serves it: behind the guard (demo/web), the queue the only way in. Every
    # client of the tests comes from 127.0.0.1, so the per-client cap is set high here (the cap
    # itself is tried in tests/test_guard.py, with clients at different addresses).
    guard = GuardSettings(max_pending=64)
    _, url, _ = serve.launch(
        demo, guard, max_queue=None, prevent_thread_lock=True, css=CSS, server_name="127.0.0.1", server_port=None, quiet=True
    )
    yield {"url": url, "handlers": handlers, "engine": longer}
    demo.close()
