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
    from demo.tiny_model import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="session")
def engine(tiny_checkpoint):
    """The real transformers engine on the tiny checkpoint, in float32 for exact comparisons."""
    from demo.transformers_engine import TransformersEngine

    return TransformersEngine(str(tiny_checkpoint), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    return {p.stem: p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg")}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
