"""OpenAIEngine against a real OpenAI-compatible server: `transformers serve` on the tiny checkpoint.

The server runs in its own process group on a free local port, offline, on the CPU. It is
pinned to the checkpoint directory (`transformers serve DIR`), so the model id of every
request is that directory path, exactly as given. Asked with `stream_options={"include_usage":
True}` (OpenAI's contract, which transformers serve follows since 5.25), it ends a streamed answer
with a usage chunk, whose `prompt_tokens` is how the tests see what the server made of the images.
Failures a real server cannot be made to show on demand (a silent server, a stream cut short
cleanly, a read blocked while Stop is pressed) are played by a small socket server here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from demo.engines.base import EngineError, GenerationSettings
from demo.engines.server import OpenAIEngine, infer_family
from demo.media.resize import smart_resize
from demo.record.conversation import Attachment, Conversation, Turn, to_model_messages
from tests.helpers import client_when_up, free_port

# The tiny checkpoint's own processor bound (64 visual tokens): within it, the server keeps the
# app's resize as it is, so its token counts are those of the app's resize.
SERVER_MAX_PIXELS = 50176
SMALL = GenerationSettings(max_new_tokens=5, max_pixels=SERVER_MAX_PIXELS)


def assert_one_sentence(error: EngineError, url: str) -> None:
    text = str(error)
    assert url in text
    assert "\n" not in text and "Traceback" not in text and ". " not in text


# -- the real server -------------------------------------------------------------------------------


class Server:
    """`transformers serve CHECKPOINT` on a fixed free port; start() waits until /v1/models answers.

    Without a checkpoint it is not pinned: it loads the model each request names (a directory).
    """

    def __init__(self, checkpoint: Path | None, workdir: Path) -> None:
        self.model = str(checkpoint) if checkpoint else None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = workdir / "serve.log"
        self.hub_cache = workdir / "hub"  # empty: /v1/models lists this cache and fails if it is missing
        self.hub_cache.mkdir(exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    def start(self, deadline_seconds: float = 120) -> None:
        script = Path(sys.executable).with_name("transformers")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_CACHE": str(self.hub_cache)}
        command = [str(script), "serve", *([self.model] if self.model else []), "--device", "cpu", "--host", "127.0.0.1", "--port", str(self.port)]
        started = time.monotonic()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited with {self.process.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - started > deadline_seconds:
                self.stop()
                raise RuntimeError(
                    f"transformers serve was not ready after {deadline_seconds} s: {self.log.read_text()[-2000:]}"
                )
            time.sleep(0.1)
        self.startup_seconds = time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the whole process group: the server dies without closing anything."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory) -> Iterator[Server]:
    running = Server(tiny_checkpoint, tmp_path_factory.mktemp("serve"))
    running.start()
    print(f"transformers serve ready in {running.startup_seconds:.1f} s")
    yield running
    running.stop()


def at_least(checkpoint: Path, tokens: int) -> dict:
    """Request fields that make transformers serve answer with at least `tokens` tokens.

    Its `generation_config` field replaces the model's generation config: the checkpoint's own
    one plus `min_new_tokens`, since a random model may end its answer at once.
    """
    config = json.loads((checkpoint / "generation_config.json").read_text())
    return {"generation_config": json.dumps({**config, "min_new_tokens": tokens})}


@pytest.fixture(scope="module")
def engine(server) -> OpenAIEngine:
    return OpenAIEngine(server.url, server.model)


@pytest.fixture(scope="module")
def long_engine(server, tiny_checkpoint) -> OpenAIEngine:
    """An engine whose answers are at least 2000 tokens long (over a minute on this machine)."""
    return OpenAIEngine(server.url, server.model, extra_body=at_least(tiny_checkpoint, 2000))


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    image = Image.new("RGB", (width, height), (40 * seed % 256, 120, 200))
    image.paste((255, 255, 0), (width // 4, height // 4, width // 2, height // 2))
    return image


def question(text: str, *images: Image.Image) -> list[dict]:
    return [
        {"role": "user", "content": [*({"type": "image", "image": i} for i in images), {"type": "text", "text": text}]}
    ]


def prompt_tokens(engine: OpenAIEngine, request: dict) -> int:
    """The prompt length the server reports for `request` (in the usage chunk that ends the stream).

    transformers 5.25.0 sends that chunk only when asked (cli/serving/chat_completion.py:140, `_streaming`:
    `include_usage = bool(stream_options and stream_options.get("include_usage"))`); 5.23 always did.
    """
    stream = engine.client.chat.completions.create(
        **{**request, "max_tokens": 1}, stream=True, stream_options={"include_usage": True}
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert usage, "the server reported no usage"
    return usage[-1].prompt_tokens


def finished_within(pieces: Iterator[str], seconds: float) -> bool:
    """Whether the rest of `pieces` is consumed within `seconds` (the consumer is a thread)."""
    thread = threading.Thread(target=lambda: list(pieces), daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


# -- no server needed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl"),  # the hub id: the 2.5 must win over "2"
        ("qwen3-vl-8b", "qwen3-vl"),  # lower case, no organisation
        ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3-vl"),  # a MoE name with more dashes
        ("Qwen2-VL-2B", "qwen2-vl"),
        ("Qwen-VL-Chat", "qwen-vl"),  # the 2023 generation
        ("qwen2_5_vl", "qwen2.5-vl"),  # underscores, as in model_type
        ("/models/qwen2-vl-cache/Qwen2.5-VL-3B", "qwen2.5-vl"),  # the last path part decides
        ("/tmp/x/tiny-random-qwen2-vl-bc20aba47d6c/", "qwen2-vl"),  # the tiny checkpoint's directory
        ("QWEN2-VL-72B-INSTRUCT-AWQ", "qwen2-vl"),  # case does not matter
        ("Qwen/Qwen3.6-35B-A3B", "qwen3.5"),  # Qwen3.6 is model_type qwen3_5: no -VL in its name
        ("unsloth/Qwen3.8-27B-GGUF", "qwen3.5"),  # a later Qwen3.x re-upload
    ],
)
def test_infer_family(name, family):
    assert infer_family(name) == family


@pytest.mark.parametrize("name", ["meta-llama/Llama-3.2-11B-Vision", "tiny-random", "Qwen/Qwen2.5-7B-Instruct"])
def test_infer_family_refuses_names_it_cannot_read(name):
    with pytest.raises(ValueError, match="--family"):
        infer_family(name)


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("Qwen/Qwen3-VL-8B-Thinking", ("always", True)),  # Qwen3-VL's Thinking checkpoint
        ("Qwen/Qwen3-VL-8B-Instruct", ("none", False)),  # its Instruct checkpoint never thinks
        ("Qwen/Qwen3.5-35B-A3B", ("switch", True)),  # the template's enable_thinking switch, on by default
        ("Qwen/Qwen3.6-35B-A3B", ("switch", True)),  # a later Qwen3.x: the same generation, the same switch
        ("Qwen/Qwen3.6-35B-A3B-Thinking", ("always", True)),  # a Thinking checkpoint reasons whatever the switch says
        ("Qwen/Qwen2.5-VL-7B-Instruct", ("none", False)),  # no thinking in this generation
        ("someone/Qwen2-VL-2B-Thinking-LoRA", ("none", False)),  # a name cannot add thinking to a generation without it
    ],
)
def test_thinking_mode_from_the_registry_and_the_name(name, mode):
    from demo.engines.server import thinking_mode

    assert thinking_mode(infer_family(name), name) == mode


def test_defaults_and_vision_cost():
    qwen2 = OpenAIEngine("http://127.0.0.1:9/v1", "Qwen/Qwen2-VL-2B-Instruct")
    qwen3 = OpenAIEngine("http://127.0.0.1:9/v1", "Qwen/Qwen3-VL-8B-Instruct", max_pixels=512 * 512)
    # The least is llama.cpp's: 8 visual tokens of the family's 28 or 32 pixels square.
    assert (qwen2.default_min_pixels, qwen2.default_max_pixels) == (8 * 28 * 28, 1280 * 28 * 28)
    assert (qwen3.default_min_pixels, qwen3.default_max_pixels) == (8 * 32 * 32, 512 * 512)
    assert qwen2.model_name == "Qwen/Qwen2-VL-2B-Instruct" and not qwen2.random_weights
    cost = qwen2.vision_cost((451, 300), GenerationSettings(max_pixels=SERVER_MAX_PIXELS))
    assert (cost.input_wh, cost.tokens) == ((252, 168), 54)
    cost = qwen3.vision_cost((1920, 1080), GenerationSettings())
    assert cost.input_wh == (672, 384) and cost.input_wh == smart_resize(1080, 1920, 32, 8 * 32 * 32, 512 * 512)[::-1]
    assert cost.tokens == (672 // 16) * (384 // 16) // 4
    with pytest.raises(EngineError, match="aspect ratio") as refused:
        qwen2.vision_cost((4000, 10), GenerationSettings())
    assert "\n" not in str(refused.value)


def test_request_sends_app_resized_png_data_urls_after_picture_labels():
    engine = OpenAIEngine("http://127.0.0.1:9/v1", "Qwen/Qwen2.5-VL-7B-Instruct")
    settings = GenerationSettings(max_new_tokens=77, max_pixels=SERVER_MAX_PIXELS)
    images = [picture(451, 300), picture(90, 400, 1), picture(1000, 1000, 2)]
    conversation = Conversation(
        [
            Turn(
                "Compare them.",
                [Attachment("a.png", images[0]), Attachment("b.png", images[1])],
                "They differ.",
                "done",
            ),
            Turn("And this one?", [Attachment("c.png", images[2])]),
        ]
    )
    request = engine.build_request(to_model_messages(conversation, "Be brief."), settings)

    assert request["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and request["max_tokens"] == 77
    assert request["temperature"] == 0 and "top_p" not in request  # greedy
    system, first, answer, second = request["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    assert answer == {"role": "assistant", "content": "They differ."}
    parts = first["content"] + second["content"]
    labels = [p["text"] for p in parts if p["type"] == "text" and p["text"].startswith("Picture")]
    assert labels == ["Picture 1: ", "Picture 2: ", "Picture 3: "]
    sent = [(index, p["image_url"]["url"]) for index, p in enumerate(parts) if p["type"] == "image_url"]
    assert len(sent) == 3
    for (index, url), image, label in zip(sent, images, labels, strict=True):
        assert parts[index - 1] == {"type": "text", "text": label}  # each label right before its image
        assert url.startswith("data:image/png;base64,")
        decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert decoded.format == "PNG"
        assert decoded.size == engine.vision_cost(image.size, settings).input_wh
        assert decoded.width % 28 == 0 and decoded.height % 28 == 0
        assert decoded.width * decoded.height <= SERVER_MAX_PIXELS

    sampled = engine.build_request(question("Hi"), GenerationSettings(temperature=0.7, top_p=0.8))
    assert (sampled["temperature"], sampled["top_p"]) == (0.7, 0.8)
    assert "min_new_tokens" not in json.dumps({k: v for k, v in sampled.items() if k != "messages"})


def test_request_sends_a_video_as_labelled_frames():
    engine = OpenAIEngine("http://127.0.0.1:9/v1", "Qwen/Qwen3-VL-8B-Instruct")
    frames = [picture(320, 240, i) for i in range(3)]
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": picture(64, 64)},
                {"type": "video", "video": frames},
                {"type": "text", "text": "?"},
            ],
        }
    ]
    parts = engine.build_request(messages, GenerationSettings())["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "image_url", "image_url", "text"]
    assert (parts[0]["text"], parts[2]["text"]) == ("Picture 1: ", "Video 1: ")
    sizes = {Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"].split(",", 1)[1]))).size for p in parts[3:6]}
    assert sizes == {engine.vision_cost((320, 240), GenerationSettings()).input_wh}  # multiples of 32


def test_paths_and_urls_are_never_forwarded():
    engine = OpenAIEngine("http://127.0.0.1:9/v1", "Qwen2-VL-2B")
    for image in ("/etc/passwd", "http://example.com/cat.png"):
        with pytest.raises(EngineError):
            engine.build_request(question("?", image), GenerationSettings())
    with pytest.raises(EngineError):
        engine.build_request(
            [{"role": "user", "content": [{"type": "video", "video": "/tmp/clip.mp4"}]}], GenerationSettings()
        )


# -- a scripted socket server, for what a real server will not do on demand ---------------------------

CHUNK = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def sse(content: str | None = None, finish_reason: str | None = None, **extra) -> bytes:
    choice = {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish_reason}
    return b"data: " + json.dumps({**CHUNK, "choices": [choice], **extra}).encode() + b"\n\n"


def read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    while len(body) < length:
        body += conn.recv(65536)


@contextmanager
def scripted_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A local HTTP server whose every connection is given to `handle` after the request is read."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            read_request(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        listener.close()
        for conn in connections:
            conn.close()


def test_a_silent_server_times_out_with_one_sentence():
    with scripted_server(lambda conn: None) as url:  # reads the request, never answers
        engine = OpenAIEngine(url, "Qwen2-VL-2B", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(EngineError, match="did not answer within 0.5 s") as failed:
            list(engine.stream(question("Hi"), SMALL, threading.Event()))
        assert time.monotonic() - started < 3
        assert_one_sentence(failed.value, url)


def test_a_stream_cut_short_or_failing_mid_answer_is_one_sentence():
    def cut(conn: socket.socket) -> None:  # a clean end of the body, but no finish_reason
        conn.sendall(HEADERS + sse("Hel") + sse("lo"))
        conn.close()

    def failing(conn: socket.socket) -> None:  # transformers serve's way of reporting a failed generate
        conn.sendall(HEADERS + sse("Hel") + b'data: {"error": "CUDA out of memory"}\n\n')
        conn.close()

    def complete(conn: socket.socket) -> None:  # with grounding markers and an end-of-turn token
        box = "<|box_start|>(1,2),(3,4)<|box_end|>"
        conn.sendall(
            HEADERS + sse("Hel") + sse(box) + sse("<|im_end|>") + sse(finish_reason="stop") + b"data: [DONE]\n\n"
        )
        conn.close()

    for handle, message in ((cut, "closed the stream mid-answer"), (failing, "CUDA out of memory")):
        with scripted_server(handle) as url:
            pieces: list[str] = []
            with pytest.raises(EngineError, match=message) as failed:
                for piece in OpenAIEngine(url, "Qwen2-VL-2B").stream(question("Hi"), SMALL, threading.Event()):
                    pieces.append(piece)
            assert pieces == (["Hel", "lo"] if handle is cut else ["Hel"])
            assert_one_sentence(failed.value, url)
    with scripted_server(complete) as url:
        pieces = list(OpenAIEngine(url, "Qwen2-VL-2B").stream(question("Hi"), SMALL, threading.Event()))
        assert pieces == ["Hel", "<|box_start|>(1,2),(3,4)<|box_end|>"]


@pytest.mark.parametrize("how", ["stop", "close"])
def test_stop_or_close_ends_a_blocked_read_and_hangs_up(how):
    """The server sends one piece, then nothing: Stop (or closing the iterator) must not wait for it."""
    hung_up = threading.Event()

    def one_piece_then_silence(conn: socket.socket) -> None:
        conn.sendall(HEADERS + sse("Hel"))
        try:
            while conn.recv(1024):  # returns b"" once the client shuts the connection down
                pass
        except OSError:
            pass
        hung_up.set()

    with scripted_server(one_piece_then_silence) as url:
        stop = threading.Event()
        pieces = OpenAIEngine(url, "Qwen2-VL-2B").stream(question("Hi"), SMALL, stop)
        assert next(pieces) == "Hel"
        started = time.monotonic()
        if how == "stop":
            threading.Timer(0.2, stop.set).start()
            assert list(pieces) == []  # blocked until the stop, then ends normally
            latency = time.monotonic() - started - 0.2
        else:
            pieces.close()
            latency = time.monotonic() - started
        print(f"{how} on a blocked read: {latency * 1000:.0f} ms")
        assert latency < 0.3, f"{how} took {latency:.3f} s"
        assert hung_up.wait(2), "the connection stayed open"


# -- against transformers serve ---------------------------------------------------------------------


def test_a_two_turn_chat_with_pictures_streams(server, tiny_checkpoint):
    engine = OpenAIEngine(server.url, server.model, extra_body=at_least(tiny_checkpoint, 12))
    assert engine.family == "qwen2-vl" and engine.random_weights
    settings = GenerationSettings(max_new_tokens=12, max_pixels=SERVER_MAX_PIXELS)
    conversation = Conversation(
        [Turn("What is in Picture 1?", [Attachment("a.png", picture(451, 300))], status="streaming")]
    )
    first = list(
        engine.stream(to_model_messages(conversation, "You are a helpful assistant."), settings, threading.Event())
    )
    assert len(first) > 1 and all(isinstance(p, str) and p for p in first)

    conversation.turns[0].answer, conversation.turns[0].status = "".join(first), "done"
    conversation.turns.append(Turn("And Picture 2?", [Attachment("b.png", picture(200, 300, 1))], status="streaming"))
    messages = to_model_messages(conversation, "You are a helpful assistant.")
    request = engine.build_request(messages, settings)
    assert request["messages"][2] == {"role": "assistant", "content": "".join(first)}
    texts = [p["text"] for m in request["messages"] if m["role"] == "user" for p in m["content"] if p["type"] == "text"]
    assert texts == ["Picture 1: ", "What is in Picture 1?", "Picture 2: ", "And Picture 2?"]
    second = list(engine.stream(messages, settings, threading.Event()))
    assert len(second) > 1


def test_the_server_sees_each_picture_at_the_apps_size(engine):
    """The prompt grows by exactly each image's visual tokens, computed from the app's resize.

    The chat template renders an image as `<|vision_start|><|image_pad|><|vision_end|>` and the
    server's processor repeats the pad once per visual token. The same request with the image
    replaced by the text `<|vision_start|><|vision_end|>` renders the same prompt without the
    pads, so the difference in prompt tokens is the image's visual tokens and nothing else.
    """
    images = [picture(451, 300), picture(90, 400, 1)]
    costs = [engine.vision_cost(i.size, SMALL) for i in images]
    assert [c.tokens for c in costs] == [54, 42] and costs[0].tokens != costs[1].tokens
    request = engine.build_request(question("Compare Picture 1 and Picture 2.", *images), SMALL)
    parts = request["messages"][0]["content"]
    slots = [i for i, p in enumerate(parts) if p["type"] == "image_url"]

    def without(*dropped: int) -> dict:
        kept = [
            {"type": "text", "text": "<|vision_start|><|vision_end|>"} if i in dropped else p
            for i, p in enumerate(parts)
        ]
        return {**request, "messages": [{"role": "user", "content": kept}]}

    none, first_only, both = (
        prompt_tokens(engine, without(*slots)),
        prompt_tokens(engine, without(slots[1])),
        prompt_tokens(engine, request),
    )
    assert first_only - none == costs[0].tokens
    assert both - first_only == costs[1].tokens


def test_stop_ends_a_long_answer_within_a_second_and_the_server_stops_too(long_engine, engine):
    stop = threading.Event()
    received: list[str] = []
    ended_at: list[float] = []

    def consume() -> None:
        for piece in long_engine.stream(
            question("Tell me a long story."), GenerationSettings(max_new_tokens=2000), stop
        ):
            received.append(piece)
        ended_at.append(time.monotonic())

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    deadline = time.monotonic() + 30
    while len(received) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(received) >= 10, "the answer did not start streaming"
    stop.set()
    stopped_at = time.monotonic()
    consumer.join(5)
    assert ended_at, "the stream did not end after Stop"
    latency = ended_at[0] - stopped_at
    print(f"Stop latency: {latency * 1000:.1f} ms after {len(received)} pieces")
    assert latency < 1.0
    assert len(received) < 1500  # it ended by the stop, long before its 2000 tokens
    # The server generates one answer at a time: had it gone on with the 2000 tokens (a minute
    # here), this short one would wait for it.
    started = time.monotonic()
    assert list(engine.stream(question("Hi"), SMALL, threading.Event()))
    assert time.monotonic() - started < 10


def test_closing_the_iterator_closes_the_stream(long_engine, engine):
    pieces = long_engine.stream(
        question("Tell me a long story."), GenerationSettings(max_new_tokens=2000), threading.Event()
    )
    for _ in range(5):
        next(pieces)
    pieces.close()
    started = time.monotonic()
    assert finished_within(engine.stream(question("Hi"), SMALL, threading.Event()), 10)
    print(f"next answer after close: {time.monotonic() - started:.2f} s")


def test_http_errors_are_one_sentence_and_the_engine_stays_usable(server, engine):
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineError, match="cannot connect") as failed:
        list(OpenAIEngine(down, server.model).stream(question("Hi"), SMALL, threading.Event()))
    assert_one_sentence(failed.value, down)

    no_v1 = server.url.removesuffix("/v1")  # a URL the server has no route for: 404
    with pytest.raises(EngineError, match="404 Not Found") as failed:
        list(OpenAIEngine(no_v1, server.model).stream(question("Hi"), SMALL, threading.Event()))
    assert_one_sentence(failed.value, no_v1)

    # A model the server does not serve: transformers serve pinned to one model answers 400
    # (vLLM answers 404); the message names both.
    with pytest.raises(EngineError, match="400.*no-such-model") as failed:
        list(
            OpenAIEngine(server.url, "no-such-model", family="qwen2-vl").stream(
                question("Hi"), SMALL, threading.Event()
            )
        )
    assert_one_sentence(failed.value, server.url)

    # A request the server cannot read: transformers 5.25 answers every ValueError with 400 and its
    # message as `detail` (5.25.0 cli/serving/server.py:74-76), here json.loads' error on a malformed
    # `generation_config` (cli/serving/utils.py:1328, `_build_generation_kwargs`). 5.23 answered 500.
    malformed = OpenAIEngine(server.url, server.model, extra_body={"generation_config": "{not json"})
    with pytest.raises(EngineError, match=r"answered 400: Expecting property name enclosed in double quotes") as failed:
        list(malformed.stream(question("Hi"), SMALL, threading.Event()))
    assert_one_sentence(failed.value, server.url)

    # A request the server fails on: valid JSON that is not an object makes its
    # `"trust_remote_code" in requested` (cli/serving/utils.py:1330) raise a TypeError, which nothing catches: 500.
    broken = OpenAIEngine(server.url, server.model, extra_body={"generation_config": "1"})
    with pytest.raises(EngineError, match="answered 500") as failed:
        list(broken.stream(question("Hi"), SMALL, threading.Event()))
    assert_one_sentence(failed.value, server.url)

    assert list(engine.stream(question("Hi"), SMALL, threading.Event()))  # the server and engines still work


def test_killing_the_server_mid_answer_then_restarting_it(server, long_engine):
    """Runs last: it kills the module's server and starts it again on the same port."""
    pieces: list[str] = []
    with pytest.raises(EngineError, match="broke off in the middle of the answer") as failed:
        for piece in long_engine.stream(
            question("Tell me a long story."), GenerationSettings(max_new_tokens=2000), threading.Event()
        ):
            pieces.append(piece)
            if len(pieces) == 10:
                server.kill()
    assert_one_sentence(failed.value, server.url)

    with pytest.raises(EngineError, match="cannot connect") as failed:  # the same engine, the server down
        list(long_engine.stream(question("Hi"), SMALL, threading.Event()))
    assert_one_sentence(failed.value, server.url)

    server.start()
    print(f"transformers serve restarted in {server.startup_seconds:.1f} s")
    again = list(
        long_engine.stream(
            question("Hi"), GenerationSettings(max_new_tokens=8, max_pixels=SERVER_MAX_PIXELS), threading.Event()
        )
    )
    assert len(again) > 1


def test_the_app_serves_the_same_ui_from_a_server(server, tiny_checkpoint, photos):
    """`python app.py --backend openai --base-url … --model …`: a chat with a picture, through the page's API."""
    from gradio_client import handle_file

    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": "not-needed"}
    command = [sys.executable, "app.py", "--backend", "openai", "--base-url", server.url, "--model", server.model,
               "--port", str(port), "--max-pixels", "50176"]
    app = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        client = client_when_up(f"http://127.0.0.1:{port}/")
        question = {"text": "What is in Picture 1?", "files": [handle_file(str(photos["chelsea"]))]}
        updates = list(client.submit(question, 16, api_name="/chat"))
        history = updates[-1][0]
        assert history[0]["content"][0]["text"].startswith("**Picture 1** · chelsea.png")
        assert history[-1]["role"] == "assistant" and not history[-1]["content"][0]["text"].startswith("⚠")
        history, _ = client.predict({"text": "And again?", "files": []}, 16, api_name="/chat")
        assert [m["role"] for m in history].count("assistant") == 2
    finally:
        app.terminate()
        output = app.communicate(timeout=30)[0]
    assert "is ready" in output and "Traceback" not in output
