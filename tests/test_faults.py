"""Faults and load: nothing fetched from the network, failures contained, many sessions at once."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from gradio_client import Client, handle_file

from demo.engines.slot import EngineSlot
from demo.page.handlers import ChatHandlers
from demo.page.settings import Settings
from tests.fakes import AtLeast
from tests.helpers import shown

URLS = (
    "Look at http://example.com/cat.png and https://203.0.113.7/x.jpg, also file:///etc/passwd, "
    "//cdn.example.org/a.webp and ![img](http://198.51.100.2/t.png) <img src='http://192.0.2.1/p.png'>"
)


@pytest.fixture
def outbound(monkeypatch):
    """Record every attempt to reach a host that is not this machine."""
    attempts: list[object] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def local(host) -> bool:
        return str(host) in ("localhost", "::1", "") or str(host).startswith("127.")

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not local(address[0]):
            attempts.append(address)
            raise ConnectionRefusedError("outbound connections are not allowed in this test")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not local(host):
            attempts.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def test_a_prompt_full_of_urls_fetches_nothing(engine, photos, tmp_path, outbound):
    slot = EngineSlot("tiny")
    slot.fill(AtLeast(engine, min_new_tokens=4))
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    named_like_a_url = tmp_path / "http:__example.com_cat.png"
    named_like_a_url.write_bytes(photos["chelsea"].read_bytes())
    short = Settings(max_new_tokens=8)
    conversation = list(handlers.chat({"text": URLS, "files": [str(named_like_a_url)]}, None, short))[-1].conversation
    conversation.turns[0].answer = URLS  # a model answer full of URLs, sent back next turn
    reply = list(handlers.chat(URLS, conversation, short))[-1]
    conversation = reply.conversation
    shown(reply)  # drawing the chat fetches nothing either
    handlers.export(conversation)
    assert [t.status for t in conversation.turns] == ["done", "done"]
    assert outbound == []


def test_a_crash_in_one_session_leaves_the_other_alone(app, engine, photos, monkeypatch):
    """One person's request makes generate fail (out of memory, then a crash); another's goes on."""
    original = engine.model.generate
    failures = iter([RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"), ValueError("kernel exploded")])

    def sometimes_failing_generate(**kwargs):
        prompt = engine.tokenizer.decode(kwargs["input_ids"][0])
        if "BREAK" in prompt.rsplit("<|im_start|>user", 1)[-1]:
            raise next(failures)
        return original(**kwargs)

    monkeypatch.setattr(engine.model, "generate", sometimes_failing_generate)
    unlucky, other = (Client(app["url"], download_files=False, verbose=False) for _ in range(2))
    job = other.submit({"text": "Tell me about this picture.", "files": [handle_file(str(photos["coffee"]))]}, 48, api_name="/chat")
    history, _ = unlucky.predict({"text": "BREAK it", "files": []}, 48, api_name="/chat")
    assert history[-1]["content"][0]["text"].startswith("⚠ the model ran out of memory")
    history, _ = unlucky.predict({"text": "BREAK it again", "files": []}, 48, api_name="/chat")
    assert history[-1]["content"][0]["text"] == "⚠ generation failed: kernel exploded"
    other_history, _ = job.result(timeout=60)
    history, _ = unlucky.predict({"text": "Fine now?", "files": []}, 48, api_name="/chat")
    answers = [m["content"][0]["text"] for m in history if m["role"] == "assistant"]
    assert len(answers) == 3 and not answers[-1].startswith("⚠")
    assert "Tell me about this picture." not in str(history)
    assert "BREAK" not in str(other_history) and not other_history[-1]["content"][0]["text"].startswith("⚠")


def test_soak_eight_clients_five_turns_with_cancels(app, photos, capfd):
    """8 clients × 5 turns at once; every third client cancels its third turn mid-answer."""
    app["engine"].min_new_tokens = 12
    process = psutil.Process()
    try:
        def conversation(client_index: int) -> list[str]:
            client = Client(app["url"], download_files=False, verbose=False)
            outcomes = []
            for turn in range(5):
                text = f"client {client_index} turn {turn}"
                files = [handle_file(str(photos["chelsea"]))] if turn in (0, 2) else []
                if turn == 2 and client_index % 3 == 0:
                    job = client.submit({"text": text, "files": files}, 4096, api_name="/chat")
                    deadline = time.monotonic() + 30
                    while len(job.outputs()) < 2 and time.monotonic() < deadline:
                        time.sleep(0.02)
                    job.cancel()
                    outcomes.append("cancelled")
                    continue
                history, _ = client.predict({"text": text, "files": files}, 16, api_name="/chat")
                mine = [m for m in history if m["role"] == "user" and m["content"][0].get("text", "").startswith("client ")]
                assert all(m["content"][0]["text"].startswith(f"client {client_index} ") for m in mine), history
                assert history[-1]["role"] == "assistant"
                outcomes.append("answered")
            return outcomes

        conversation(99)  # warm-up
        warm_rss = process.memory_info().rss
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(conversation, range(8)))
        deadline = time.monotonic() + 10
        while (app["handlers"].writing.sessions() or any(t.name == "generate" for t in threading.enumerate())) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not app["handlers"].writing.sessions()
        assert [r.count("answered") for r in results] == [4 if i % 3 == 0 else 5 for i in range(8)]
        grown_mb = (process.memory_info().rss - warm_rss) / 2**20
        assert grown_mb < 300, f"resident memory grew by {grown_mb:.0f} MB over the soak"
        log = capfd.readouterr()
        assert "Traceback" not in log.out + log.err
    finally:
        app["engine"].min_new_tokens = 150
