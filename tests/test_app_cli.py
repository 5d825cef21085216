"""`python app.py`: its flags, and the one-line errors a person gets instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import app
from tests.helpers import client_when_up, free_port

ROOT = Path(__file__).resolve().parent.parent


def run_app(*flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "app.py", *flags], cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_help_lists_every_flag():
    result = run_app("--help", timeout=30)
    assert result.returncode == 0
    for flag in (
        "--model", "--device", "--dtype", "--attn-implementation", "--host", "--port", "--share",
        "--max-new-tokens", "--min-pixels", "--max-pixels", "--concurrency",
    ):
        assert flag in result.stdout


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["--device", "tpu"], "invalid choice: 'tpu'"),  # unknown device
        (["--dtype", "int3"], "invalid choice: 'int3'"),  # unknown dtype
        (["--max-new-tokens", "0"], "must be a positive integer"),  # nothing to generate
        (["--min-pixels", "5000", "--max-pixels", "100"], "--min-pixels is larger than --max-pixels"),  # bounds upside down
        (["--port", "http"], "invalid positive_int value"),  # not a number
    ],
)
def test_bad_flag_values_end_with_one_clear_line(argv, complaint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.parse_args(argv)
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and complaint in error_lines[0]


def test_defaults():
    args = app.parse_args([])
    assert (args.model, args.device, args.dtype, args.attn_implementation) == ("Qwen/Qwen2-VL-2B-Instruct", "auto", "auto", "sdpa")
    assert (args.host, args.port, args.concurrency, args.max_new_tokens) == ("127.0.0.1", 7860, 1, 512)


def test_a_missing_model_ends_with_one_line_and_no_traceback(tmp_path):
    result = run_app("--model", str(tmp_path / "no-such-model"), "--port", str(free_port()))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot load model") and "no-such-model" in last


def test_an_out_of_memory_load_is_one_sentence(tiny_checkpoint, monkeypatch):
    import transformers

    from demo.engines.local import ModelLoadError, TransformersEngine

    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", no_memory)
    with pytest.raises(ModelLoadError, match="not enough memory to load"):
        TransformersEngine(str(tiny_checkpoint), device="cpu")


def test_a_gpu_asked_for_on_a_machine_without_one_is_one_sentence(tiny_checkpoint):
    import torch

    from demo.engines.local import ModelLoadError, TransformersEngine

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        TransformersEngine(str(tiny_checkpoint), device="cuda")


def test_tiny_random_starts_and_serves(tmp_path):
    """The real command a newcomer runs offline: the page answers once the model is ready."""
    import os


    port = free_port()
    env = {**os.environ, "QWEN_CHAT_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--model", "tiny-random", "--port", str(port), "--max-new-tokens", "8"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        client = client_when_up(f"http://127.0.0.1:{port}/")
        history, _ = client.predict({"text": "Hello", "files": []}, api_name="/chat")
        assert history[-1]["role"] == "assistant"
        assert list(tmp_path.glob("tiny-random-qwen2-vl-*/config.json"))  # built into the cache
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "is ready" in output
