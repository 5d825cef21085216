"""The per-client share cannot be forged (issue 26): every way to name an event counts, and
X-Forwarded-For is believed from the configured proxies only.

Gradio 6.31 reads a join's `fn_index` with pydantic's lax rules (`"1"`, `1.0` and `true` are
all `1`), and the REST route `call/{api}` runs the event its path names whatever the body says
(demo/web/calls.py); the guard must count what Gradio runs.
"""

from __future__ import annotations

import httpx
import pytest

from demo.web import policy, proxies
from demo.web.guard import GuardSettings
from tests.guarded import SLOW, chat_data, events_of, launch
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def capped():
    """One answer at a time, two requests per client; 127.0.0.1 is a trusted proxy (X-Forwarded-For: clients)."""
    app = launch(guard={"max_pending": 2, "trusted_proxies": ("127.0.0.1",)})
    yield app
    app["demo"].close()


def body(app: dict, fn_index: object, session: str) -> dict:
    return {"data": chat_data("hi"), "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}


def spellings(app: dict) -> list:
    chat = app["fns"]["chat"]
    return [str(chat), float(chat), f" {chat} ", f"+{chat}"]


def test_every_spelling_of_an_event_counts_against_the_same_cap(capped):
    app = capped
    client = {"X-Forwarded-For": "198.51.100.60"}
    app["engine"].answers = [SLOW] * 8
    http = httpx.Client(timeout=10, headers=client)
    first = [http.post(app["url"] + "gradio_api/queue/join", json=body(app, app["fns"]["chat"], f"spell-{n}")) for n in range(2)]
    assert [r.status_code for r in first] == [200, 200]
    forged = [http.post(app["url"] + "gradio_api/queue/join", json=body(app, index, f"forged-{n}")) for n, index in enumerate(spellings(app))]
    # the REST route runs the event its path names: an fn_index in the body does not make it another
    rest = http.post(app["url"] + "gradio_api/call/chat", json={"data": chat_data("hi"), "fn_index": app["fns"]["clear"]})
    rest_v2 = http.post(app["url"] + "gradio_api/call/v2/chat", json={"fn_index": app["fns"]["clear"]})
    assert [r.status_code for r in [*forged, rest, rest_v2]] == [429] * (len(forged) + 2)
    assert len([e for n in range(len(spellings(app))) for e in events_of(app, f"forged-{n}")]) == 0
    for n in range(2):
        http.post(app["url"] + "gradio_api/cancel", json={"session_hash": f"spell-{n}", "fn_index": app["fns"]["chat"],
                                                           "event_id": first[n].json()["event_id"]})
    assert wait_until(lambda: not events_of(app, "spell-0") and not events_of(app, "spell-1"), timeout=15)


def test_an_event_that_does_not_exist_is_refused_before_gradio(capped):
    app = capped
    http = httpx.Client(timeout=10, headers={"X-Forwarded-For": "198.51.100.61"})
    stored = len(app["demo"].server_app.state_holder.session_data)
    for index in (9999, "9999", -1):
        answer = http.post(app["url"] + "gradio_api/queue/join", json=body(app, index, f"nowhere-{index}"))
        assert answer.status_code == 404
    assert http.post(app["url"] + "gradio_api/run/nothing", json={"data": [], "session_hash": "nowhere-run"}).status_code == 404
    assert len(app["demo"].server_app.state_holder.session_data) == stored  # no state made for them


def test_forwarded_for_is_believed_only_from_configured_proxies():
    """With no proxy configured, a local client that sends X-Forwarded-For is still one client."""
    app = launch(guard={"max_pending": 1})
    try:
        app["engine"].answers = [SLOW, SLOW, SLOW]
        http = httpx.Client(timeout=10)
        one = http.post(app["url"] + "gradio_api/queue/join", json=body(app, app["fns"]["chat"], "a"), headers={"X-Forwarded-For": "198.51.100.1"})
        assert one.status_code == 200
        other = http.post(app["url"] + "gradio_api/queue/join", json=body(app, app["fns"]["chat"], "b"), headers={"X-Forwarded-For": "198.51.100.2"})
        assert other.status_code == 429  # the same client: its forged address is not believed
        http.post(app["url"] + "gradio_api/cancel", json={"session_hash": "a", "fn_index": app["fns"]["chat"], "event_id": one.json()["event_id"]})
    finally:
        app["demo"].close()


def test_nobody_is_trusted_by_default_and_on_a_space_its_proxy_is(monkeypatch):
    for name in ("SYSTEM", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    assert GuardSettings().trusted_proxies == () and proxies.for_uvicorn(()) == ""
    monkeypatch.setenv("SPACE_ID", "someone/qwen-vl-chat")
    assert GuardSettings().trusted_proxies == ()  # SPACE_ID alone is not Gradio's test of a Space
    monkeypatch.setenv("SYSTEM", "spaces")
    assert GuardSettings().trusted_proxies == proxies.SPACES_PROXIES
    assert "10.0.0.0/8" in proxies.SPACES_PROXIES  # where a Space sees its proxy (10.16.3.80: see demo/web/proxies.py)
    assert policy.frame_ancestors() == ("'self'", "https://huggingface.co")


def test_the_trusted_proxies_flag(monkeypatch):
    from app import parse_args

    for name in ("SYSTEM", "SPACE_ID", "QWEN_CHAT_TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)
    args = parse_args(["--model", "tiny-random"])
    assert args.trusted_proxies is None
    assert (args.max_sessions_per_client, args.new_sessions_per_minute, args.max_sessions) == (64, 30, 5000)
    args = parse_args(["--model", "tiny-random", "--trusted-proxies", "10.1.0.0/16,127.0.0.1", "--max-sessions-per-client", "8"])
    assert args.trusted_proxies == "10.1.0.0/16,127.0.0.1" and args.max_sessions_per_client == 8
