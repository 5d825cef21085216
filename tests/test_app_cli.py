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
        "--max-new-tokens", "--min-pixels", "--max-pixels", "--concurrency", "--quantize", "--extra-body",
        "--zerogpu-max-seconds", "--no-quantized-cache",
    ):
        assert flag in result.stdout


def test_the_quantize_help_gives_the_measured_figures():
    """Every figure --help states is the one bench.quantize measured (its JSON beside the README's table)."""
    import json

    measured = json.loads((ROOT / "bench" / "results" / "cpu-2b.json").read_text())
    ratios = {(t["variant"], t["figure"]): t["ratio"] for t in measured["targets"]}
    help_text = " ".join(run_app("--help", timeout=30).stdout.split())
    assert measured["machine"]["cpu"].startswith("Intel(R) Xeon(R) Processor @ 2.80GHz") and "Intel Xeon @ 2.80GHz" in help_text
    int8 = f"int8 answers a new picture in {ratios['int8', 'first_token_s']:.2f}x the time, decodes {ratios['int8', 'decode_tok_s']:.1f}x faster, "
    int8 += f"in {ratios['int8', 'peak_rss_bytes']:.2f}x the memory"
    int4 = f"int4 {ratios['int4', 'first_token_s']:.2f}x, {ratios['int4', 'decode_tok_s']:.1f}x, {ratios['int4', 'peak_rss_bytes']:.2f}x"
    assert int8 in help_text and int4 in help_text
    variants, gib = measured["variants"], lambda x: f"{x / 2**30:.1f}"
    kept = f"3.6 GiB at most in int8 instead of {gib(variants['int8']['vm_hwm_bytes'])}, "
    kept += f"{gib(variants['int4']['later_start']['load_peak_bytes'])} in int4 instead of {gib(variants['int4']['vm_hwm_bytes'])}; "
    kept += f"{gib(variants['int8']['stored_bytes'])} and {gib(variants['int4']['stored_bytes'])} GiB on disk"
    assert gib(variants["int8"]["later_start"]["load_peak_bytes"]) == "3.6" and kept in help_text  # --no-quantized-cache's
    assert " 3x" not in help_text  # the old, unmeasured claim


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["--device", "tpu"], "invalid choice: 'tpu'"),  # unknown device
        (["--dtype", "int3"], "invalid choice: 'int3'"),  # unknown dtype
        (["--max-new-tokens", "0"], "must be a positive integer"),  # nothing to generate
        (["--min-pixels", "5000", "--max-pixels", "100"], "--min-pixels is larger than --max-pixels"),  # bounds upside down
        (["--port", "http"], "invalid positive_int value"),  # not a number
        (["--quantize", "int2"], "invalid choice: 'int2'"),  # no such quantization
        (["--backend", "openai", "--base-url", "http://x/v1", "--quantize", "int8"], "--quantize int8 is for --backend local"),
        (["--backend", "openai", "--base-url", "http://x/v1", "--extra-body", "[1]"], "must be a JSON object"),
        (["--backend", "openai", "--base-url", "http://x/v1", "--extra-body", "{skip: 1}"], "not valid JSON"),
        (["--extra-body", '{"skip_special_tokens": false}'], "--extra-body is for --backend openai"),
        (["--zerogpu-max-seconds", "0"], "must be a positive integer"),
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

    from demo.engines.local.engine import ModelLoadError, TransformersEngine

    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", no_memory)
    with pytest.raises(ModelLoadError, match="not enough memory to load"):
        TransformersEngine(str(tiny_checkpoint), device="cpu")


def test_a_gpu_asked_for_on_a_machine_without_one_is_one_sentence(tiny_checkpoint):
    import torch

    from demo.engines.local.engine import ModelLoadError, TransformersEngine

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


def test_extra_body_from_the_environment_is_validated_too(monkeypatch, capsys):
    monkeypatch.setenv("QWEN_CHAT_BACKEND", "openai")
    monkeypatch.setenv("QWEN_CHAT_BASE_URL", "http://x/v1")
    monkeypatch.setenv("QWEN_CHAT_EXTRA_BODY", '{"skip_special_tokens": false}')
    assert app.parse_args([]).extra_body == {"skip_special_tokens": False}
    monkeypatch.setenv("QWEN_CHAT_EXTRA_BODY", "skip_special_tokens=false")
    with pytest.raises(SystemExit):
        app.parse_args([])
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "QWEN_CHAT_EXTRA_BODY='skip_special_tokens=false': not valid JSON" in lines[0]


class RecordingServer:
    """An OpenAI-compatible endpoint that records each request's JSON body and streams a fixed answer."""

    ANSWER = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(10,20),(300,400)<|box_end|>"

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                server.bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                chunk = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": "m"}
                events = [
                    {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": server.ANSWER}, "finish_reason": None}]},
                    {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                ]
                body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_extra_body_reaches_every_server_request(tmp_path):
    """`python app.py --backend openai --extra-body '{"skip_special_tokens": false}'`: the field is in the
    request the server receives (what vLLM needs to keep Qwen2-VL's grounding tokens)."""
    import os

    server = RecordingServer()
    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": "not-needed"}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--backend", "openai", "--base-url", server.url, "--model", "Qwen/Qwen2-VL-2B-Instruct",
         "--port", str(port), "--extra-body", '{"skip_special_tokens": false, "top_k": 20}'],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        client = client_when_up(f"http://127.0.0.1:{port}/")
        history, _ = client.predict({"text": "Where is the cat?", "files": []}, api_name="/chat")
    finally:
        process.terminate()
        process.communicate(timeout=30)
        server.server.shutdown()
    assert server.bodies and all(b["skip_special_tokens"] is False and b["top_k"] == 20 for b in server.bodies)
    assert server.bodies[0]["messages"][-1]["content"][-1]["text"] == "Where is the cat?"
    answer = history[-1]["content"][0]["text"]
    assert "the cat" in answer and "<|box_start|>" not in answer  # the markers arrived: the box is drawn, not shown raw


def test_a_max_new_tokens_flag_above_the_slider_works_for_every_message():
    """--max-new-tokens 10000 under --max-answer-tokens 10000: the page's setting reaches it, and a
    message with it is answered; one token more is refused by Gradio's own check."""
    from gradio_client import Client

    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.page.ui import CSS, build_ui
    from tests.fakes import ScriptedEngine

    args = app.parse_args(["--max-new-tokens", "10000", "--max-answer-tokens", "10000"])
    engine = ScriptedEngine([["fine"]])
    slot = EngineSlot("scripted")
    slot.fill(engine)
    handlers = ChatHandlers(slot, limits=app.limits_from(args))
    demo = build_ui(handlers, max_new_tokens=args.max_new_tokens, max_answer_tokens=args.max_answer_tokens)
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, css=CSS, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        client = Client(url, download_files=False, verbose=False)
        history, _ = client.predict({"text": "Hello", "files": []}, api_name="/chat")  # the setting at its default
        assert history[-1]["content"][0]["text"] == "fine"
        assert engine.calls[-1][1].max_new_tokens == 10000
        with pytest.raises(Exception, match="10001"):  # beyond the slider's end: Gradio refuses it
            client.predict({"text": "Hello", "files": []}, 10001, api_name="/chat")
    finally:
        demo.close()
