"""Small helpers shared by the tests that drive a running app or server."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from gradio_client import Client

if TYPE_CHECKING:
    from demo.record.conversation import Attachment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def end_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """Terminate `process` and wait for it; kill it if it has not ended within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def generating() -> bool:
    """True while the local engine computes: in `TORCH_THREAD` (CPU), or a "generate" thread (GPU)."""
    from demo.engines.local.torch_thread import TORCH_THREAD

    return TORCH_THREAD.busy() or any(t.name == "generate" for t in threading.enumerate())


def client_when_up(url: str, timeout: float = 90) -> Client:
    """A gradio_client for the app at `url`, once it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Client(url, download_files=False, verbose=False)
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def shown(reply) -> list[dict]:
    """The chat a person sees for a handler's `Reply`: what the page renders from it."""
    from demo.views.chat import chatbot_messages

    return chatbot_messages(reply.conversation, reply.family, reply.waiting, reply.notice)


def parts(messages: list[dict], role: str | None = None) -> list:
    """Every part of the Chatbot messages (of `role`), in order: a message's content, or each item of
    its list (an answer with pictures is one message: demo/views/chat.py answer_message)."""
    return [
        part
        for m in messages
        if role is None or m["role"] == role
        for part in (m["content"] if isinstance(m["content"], list) else [m["content"]])
    ]


def near(expected: tuple, pixel: tuple, tolerance: int = 24) -> bool:
    """Whether a pixel of a JPEG (the chat's box drawings) is `expected`'s colour, within a few levels."""
    return max(abs(a - b) for a, b in zip(expected, pixel, strict=True)) <= tolerance


def noise_picture(seed: int, size: tuple[int, int]) -> Attachment:
    """A picture of noise (distinct per seed) as a sent attachment, for the engines' exactness tests."""
    from PIL import Image

    from demo.record.conversation import Attachment

    return Attachment(path=f"/up/{seed}.png", image=Image.effect_noise(size, 30 + seed).convert("RGB"), name=f"{seed}.png")


@contextmanager
def restored(engine) -> Iterator:
    """`engine` as it is now once the block ends: its prefill chunk size, and no session cached."""
    chunk = engine.prefill_chunk_tokens
    try:
        yield engine
    finally:
        engine.prefill_chunk_tokens = chunk
        for session in engine.caches.sessions():
            engine.forget(session)


@contextmanager
def ok_server(delay: float = 0.0) -> Iterator[tuple[str, list[dict]]]:
    """An OpenAI-compatible server on a free port that streams "ok" to every chat request, after
    `delay` seconds; yields its base URL and the list of request bodies it received."""
    with scripted_server(lambda _: [{"content": "ok"}], delay) as served:
        yield served


@contextmanager
def scripted_server(reply: Callable[[int], list[dict]], delay: float = 0.0) -> Iterator[tuple[str, list[dict]]]:
    """An OpenAI-compatible server on a free port that streams, to its n-th chat request (0-based),
    the deltas `reply(n)` gives (`{"content": ...}`, `{"tool_calls": [...]}`), then "stop", after
    `delay` seconds; yields its base URL and the list of request bodies it received."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies: list[dict] = []

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            time.sleep(delay)
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
            deltas = reply(len(bodies) - 1)
            events = [{**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
            events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", bodies
    finally:
        if thread.is_alive():  # shutdown() waits for a running serve_forever: never call it otherwise
            server.shutdown()
            thread.join(timeout=10)
        server.server_close()
