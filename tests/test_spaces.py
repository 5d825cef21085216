"""Hugging Face Spaces: the README's front matter, packages.txt, flags from the environment, ZeroGPU."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import yaml

import app

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
    assert str(meta["python_version"]) == "3.11"
    assert app.DEFAULT_MODEL in meta["models"]
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


def fake_spaces(monkeypatch) -> list:
    """A stand-in `spaces` package whose GPU decorator records its uses."""
    decorated = []
    module = types.ModuleType("spaces")
    module.__spec__ = types.SimpleNamespace(name="spaces")

    def gpu(duration=60):
        def wrap(fn):
            decorated.append((fn, duration))
            return fn

        return wrap

    module.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", module)
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: module.__spec__ if name == "spaces" else real_find_spec(name, *a))
    return decorated


def build_app() -> None:
    from demo.engines.slot import EngineSlot
    from demo.handlers import ChatHandlers
    from demo.ui import build_ui

    build_ui(ChatHandlers(EngineSlot("x")))


def test_the_app_builds_without_spaces(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # as if not installed
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    from demo.engines.zerogpu import on_zero_gpu, zero_gpu_active

    build_app()
    assert not zero_gpu_active()
    engine = types.SimpleNamespace(stream=lambda *a: iter(()))
    assert on_zero_gpu(engine).stream is engine.stream


def test_with_spaces_but_no_zero_gpu_nothing_is_decorated(monkeypatch, engine):
    decorated = fake_spaces(monkeypatch)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    from demo.engines.zerogpu import on_zero_gpu

    build_app()
    stream = engine.stream
    assert on_zero_gpu(engine).stream == stream and decorated == []


def test_on_zero_gpu_the_generation_runs_under_spaces_gpu(monkeypatch):
    decorated = fake_spaces(monkeypatch)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    from demo.engines.zerogpu import GPU_SECONDS, on_zero_gpu

    engine = types.SimpleNamespace(stream=lambda *a: iter(("a", "b")))
    original = engine.stream
    on_zero_gpu(engine)
    assert decorated == [(original, GPU_SECONDS)]
