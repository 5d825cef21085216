"""The guard in front of the launched app (demo/web), tried with real HTTP requests.

A stranger who knows a session's hash is refused on every route that takes one; the owner
(a browser, or gradio_client, which keeps the cookie from /config) is not. The queue is the
only way to the model and to files. Each client address has a cap of pending requests and
sees its place in the queue. The app runs a scripted engine (tests/fakes.py): slow answers
on demand, no model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError

from demo.engines.slot import EngineSlot
from demo.handlers import ChatHandlers
from demo.web import policy
from demo.web.guard import NOT_YOURS, QUEUED_ONLY, GuardSettings
from demo.web.owners import Owners, identity
from tests.fakes import ScriptedEngine
from tests.helpers import wait_until

SLOW = ["word "] * 150  # 150 pieces, 0.02 s apart: 3 s


def launch(*, max_pending: int = 2, max_answer_tokens: int = 64, auth=None) -> dict:
    from demo.ui import build_ui
    from demo.web import serve

    engine = ScriptedEngine([], delay=0.02)
    slot = EngineSlot("scripted")
    slot.fill(engine)
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    demo = build_ui(handlers, concurrency=1, max_new_tokens=32, max_answer_tokens=max_answer_tokens)
    _, url, _ = serve.launch(
        demo, GuardSettings(max_pending=max_pending), max_queue=None, prevent_thread_lock=True,
        server_name="127.0.0.1", server_port=None, quiet=True, auth=auth,
    )
    fns = {fn.api_name: index for index, fn in demo.fns.items()}
    return {"url": url, "demo": demo, "engine": engine, "handlers": handlers, "fns": fns}


@pytest.fixture(scope="module")
def scripted():
    app = launch()
    yield app
    app["demo"].close()


def chat_data(text: str, max_new_tokens: int = 32) -> list:
    return [{"text": text, "files": []}, None, max_new_tokens, 0.0, 0.9, "", None, None, 2.0, 64]


def join(http: httpx.Client, app: dict, api: str, data: list, session: str, **kwargs) -> httpx.Response:
    body = {"data": data, "fn_index": app["fns"][api], "session_hash": session, "event_data": None, "trigger_id": None}
    return http.post(app["url"] + "gradio_api/queue/join", json=body, **kwargs)


def events_of(app: dict, session: str) -> list[str]:
    queue = app["demo"]._queue
    return [event_id for event_id, event in list(queue.event_ids_to_events.items()) if event.session_hash == session]


def test_a_stranger_with_the_session_hash_is_refused_everywhere(scripted):
    app = scripted
    victim = Client(app["url"], download_files=False, verbose=False)  # keeps the cookie /config sets
    assert policy.COOKIE in victim.cookies
    victim.predict({"text": "my secret question", "files": []}, api_name="/chat")
    app["engine"].answers = [SLOW]
    job = victim.submit({"text": "a long answer", "files": []}, api_name="/chat")
    session = victim.session_hash
    assert wait_until(lambda: session in app["handlers"]._running)
    event_id = events_of(app, session)[0]
    url = app["url"] + "gradio_api/"
    browser = httpx.Client(timeout=10)
    browser.get(app["url"])  # another browser: it has a cookie of its own
    for stranger in (httpx.Client(timeout=10), browser):
        refused = [
            join(stranger, app, "save", [None], session),  # read the conversation
            join(stranger, app, "undo", [None], session),  # change it
            stranger.post(url + "cancel", json={"session_hash": session, "fn_index": app["fns"]["chat"], "event_id": event_id}),
            stranger.post(url + "call/save", json={"data": [None], "session_hash": session}),
            stranger.post(url + "run/predict", json={"data": [], "fn_index": app["fns"]["busy"], "session_hash": session}),
            stranger.get(url + "queue/data", params={"session_hash": session}),
            stranger.get(url + f"heartbeat/{session}"),
            stranger.get(url + f"stream/{session}/run/1/playlist.m3u8"),
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)
        assert {r.json()["detail"] for r in refused} == {NOT_YOURS}
    *_, (history, _) = list(job)  # the owner's answer ran to its end, unharmed
    assert history[-1]["content"][0]["text"] == "".join(SLOW).strip()
    assert len([m for m in history if m["role"] == "user"]) == 2
    saved = victim.predict(api_name="/save")  # the owner still saves
    assert "my secret question" in Path(saved["path"]).read_text()


def test_a_cancel_must_name_an_event_of_its_own_session(scripted):
    app = scripted
    victim = Client(app["url"], download_files=False, verbose=False)
    app["engine"].answers = [SLOW]
    job = victim.submit({"text": "long", "files": []}, api_name="/chat")
    assert wait_until(lambda: victim.session_hash in app["handlers"]._running)
    event_id = events_of(app, victim.session_hash)[0]
    stranger = httpx.Client(timeout=10)
    assert join(stranger, app, "clear", [], "strangers-own").status_code == 200  # their own session works
    cancel = {"session_hash": "strangers-own", "fn_index": app["fns"]["chat"], "event_id": event_id}
    assert stranger.post(app["url"] + "gradio_api/cancel", json=cancel).status_code == 403
    *_, (history, _) = list(job)
    assert history[-1]["content"][0]["text"] == "".join(SLOW).strip()


def test_a_session_without_cookie_belongs_to_its_address(scripted):
    app = scripted
    here, there = {"X-Forwarded-For": "198.51.100.7"}, {"X-Forwarded-For": "198.51.100.8"}  # uvicorn trusts 127.0.0.1
    http = httpx.Client(timeout=10)
    assert join(http, app, "clear", [], "cookieless", headers=here).status_code == 200
    assert join(http, app, "clear", [], "cookieless", headers=here).status_code == 200
    assert join(http, app, "clear", [], "cookieless", headers=there).status_code == 403
    with_cookie = httpx.Client(timeout=10, cookies={policy.COOKIE: policy.new_token()})
    assert join(with_cookie, app, "clear", [], "cookieless", headers=here).status_code == 403  # a cookie is someone else


def test_the_owner_cookie_and_the_page_policy(scripted):
    page = httpx.get(scripted["url"])
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{policy.COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    csp = page.headers["content-security-policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert "default-src 'self'" in csp and "img-src 'self' data: blob:" in csp and "frame-src 'none'" in csp
    assert page.text.count("<script") == page.text.count(f'<script nonce="{nonce}"')
    assert page.headers["x-content-type-options"] == "nosniff"
    behind_https = httpx.get(scripted["url"] + "config", headers={"X-Forwarded-Proto": "https"})
    assert "Secure; Partitioned" in behind_https.headers["set-cookie"] and "SameSite=None" in behind_https.headers["set-cookie"]
    kept = httpx.get(scripted["url"], cookies={policy.COOKIE: policy.new_token()})
    assert "set-cookie" not in kept.headers  # a browser that has one keeps it


def test_the_queue_is_the_only_way_to_the_model_and_to_files(scripted, photos):
    app = scripted
    http = httpx.Client(timeout=10)
    calls = len(app["engine"].calls)
    picture = {"path": str(photos["chelsea"]), "meta": {"_type": "gradio.FileData"}}
    direct = [
        http.post(app["url"] + "gradio_api/run/chat", json={"data": chat_data("hi"), "session_hash": "d1"}),
        http.post(app["url"] + "gradio_api/api/chat", json={"data": chat_data("hi"), "session_hash": "d2"}),
        http.post(app["url"] + "gradio_api/run/predict", json={"data": chat_data("hi"), "fn_index": app["fns"]["chat"]}),
        http.post(app["url"] + "gradio_api/run/load", json={"data": [picture, None], "session_hash": "d3"}),
        http.post(app["url"] + "gradio_api/run/regenerate", json={"data": [None, 32, 0, 0.9, "", None, None]}),
    ]
    assert [r.status_code for r in direct] == [404] * len(direct)
    assert direct[0].json()["detail"] == QUEUED_ONLY
    closed = [
        http.post(app["url"] + "gradio_api/component_server", json={"session_hash": "d4", "component_id": 1, "fn_name": "x", "data": None}),
        http.post(app["url"] + "gradio_api/process_recording"),
        http.get(app["url"] + "gradio_api/deep_link", params={"session_hash": "d5"}),
    ]
    assert [r.status_code for r in closed] == [404] * len(closed)
    time.sleep(0.3)
    assert len(app["engine"].calls) == calls  # nothing reached the engine
    # The page's own glue (no input, not queued) still answers directly.
    glue = http.post(app["url"] + "gradio_api/run/predict", json={"data": [], "fn_index": app["fns"]["busy"], "session_hash": "d6"})
    assert glue.status_code == 200


def read_estimation(http: httpx.Client, app: dict, session: str, headers: dict) -> dict:
    """The first queue estimate Gradio sends this session (its place in the queue)."""
    with http.stream("GET", app["url"] + "gradio_api/queue/data", params={"session_hash": session}, headers=headers) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and (message := json.loads(line[5:]))["msg"] == "estimation":
                return message
    raise AssertionError("no estimation")


def test_each_client_has_a_cap_and_sees_its_place_in_the_queue(scripted):
    app = scripted
    first, second = {"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2"}
    app["engine"].answers = [SLOW, SLOW, ["ok"], ["ok"]]
    greedy = [Client(app["url"], download_files=False, verbose=False, headers=first) for _ in range(2)]
    jobs = [c.submit({"text": "long", "files": []}, api_name="/chat") for c in greedy]
    assert wait_until(lambda: sum(len(events_of(app, c.session_hash)) for c in greedy) == 2)
    http = httpx.Client(timeout=30)
    over = join(http, app, "chat", chat_data("one more"), "greedy-3", headers=first)
    assert over.status_code == 429
    assert over.json()["detail"] == "You already have 2 requests waiting or running; wait for one to finish before sending another."
    with pytest.raises(httpx.HTTPStatusError, match="429"):  # gradio_client raises on the status
        Client(app["url"], download_files=False, verbose=False, headers=first).predict({"text": "x", "files": []}, api_name="/chat")
    other = join(http, app, "chat", chat_data("me too"), "patient", headers=second)  # another client gets in
    assert other.status_code == 200
    estimation = read_estimation(http, app, "patient", second)
    assert estimation["rank"] >= 1 and estimation["queue_size"] >= 2  # behind the greedy one's second answer
    for job in reversed(jobs):  # the waiting one first, so that nothing else starts
        job.cancel()
    assert wait_until(lambda: not events_of(app, greedy[0].session_hash) and not events_of(app, greedy[1].session_hash), timeout=15)
    assert join(http, app, "clear", [], "greedy-3", headers=first).status_code == 200  # not capped: clearing is free
    assert wait_until(lambda: not events_of(app, "patient"), timeout=15)
    app["engine"].answers = [["ok"]]
    again = join(http, app, "chat", chat_data("now?"), "greedy-4", headers=first)
    assert again.status_code == 200  # its turns ended: it may ask again


def test_the_answer_ceiling_caps_the_setting_and_the_api(scripted):
    app = scripted
    client = Client(app["url"], download_files=False, verbose=False)
    slider = next(c for c in client.config["components"] if c.get("props", {}).get("label") == "Max new tokens")
    assert slider["props"]["maximum"] == 64
    with pytest.raises(Exception, match="maximum"):
        client.predict({"text": "hi", "files": []}, 65, api_name="/chat")
    client.predict({"text": "hi", "files": []}, 64, api_name="/chat")


def test_auth_asks_for_the_password_and_gradio_client_can_give_it():
    app = launch(auth=("ann", "secret words"))
    try:
        assert httpx.get(app["url"] + "config").status_code == 401
        with pytest.raises(AuthenticationError):
            Client(app["url"], download_files=False, verbose=False)
        client = Client(app["url"], auth=("ann", "secret words"), download_files=False, verbose=False)
        assert policy.COOKIE in client.cookies  # the owner cookie comes on top of the login's
        history, _ = client.predict({"text": "hi", "files": []}, api_name="/chat")
        assert history[-1]["role"] == "assistant"
    finally:
        app["demo"].close()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-new-tokens", "600", "--max-answer-tokens", "512"], "above --max-answer-tokens"),  # default over the ceiling
        (["--trusted-proxies", "*"], "would believe any client"),  # '*' trusts every X-Forwarded-For
        (["--trusted-proxies", "10.0.0.0/8,nonsense"], "not an IP address"),
        (["--auth", "nopassword"], "USER:PASSWORD"),
        (["--max-pending-per-client", "0"], "positive"),
    ],
)
def test_bad_sharing_flags_end_the_program_with_a_line(argv, message, capsys):
    from app import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--model", "tiny-random", *argv])
    assert message in capsys.readouterr().err


def test_sharing_flags_from_the_environment(monkeypatch):
    from app import parse_args

    monkeypatch.setenv("QWEN_CHAT_MAX_ANSWER_TOKENS", "1024")
    monkeypatch.setenv("QWEN_CHAT_AUTH", "ann:pw:with:colons")
    monkeypatch.setenv("QWEN_CHAT_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    args = parse_args(["--model", "tiny-random"])
    assert (args.max_answer_tokens, args.auth, args.trusted_proxies) == (1024, ("ann", "pw:with:colons"), "10.0.0.0/8,127.0.0.1")


def test_owners_bind_on_first_sight_and_forget_the_oldest():
    owners = Owners(capacity=2)
    me, you = identity("a" * 43, "1.2.3.4"), identity(None, "1.2.3.4")
    assert owners.claim("s1", me) and owners.claim("s1", me) and not owners.claim("s1", you)
    assert owners.claim("s2", you)
    owners.claim("s1", me)  # s1 used again: s2 is now the oldest
    owners.claim("s3", me)
    assert owners.owner("s2") is None and owners.owner("s1") == me and len(owners) == 2


@pytest.mark.parametrize(
    "header, token",
    [
        (f"{policy.COOKIE}={'x' * 43}", "x" * 43),  # ours
        (f"other=1; {policy.COOKIE}={'y' * 43}; more=2", "y" * 43),  # among others
        (f"{policy.COOKIE}=short", None),  # malformed: a new one is set
        (f"{policy.COOKIE}={'z' * 43}<script>", None),  # not a token
        (None, None),  # none at all
    ],
)
def test_owner_token_parsing(header, token):
    assert policy.owner_token(header) == token


def test_only_page_glue_skips_the_queue():
    """`queue_only` refuses a non-queued event that takes what a client sends (it could carry a
    file path), and lets through a State (the server's value), an Examples index and a js-only event."""
    import gradio as gr

    from demo.web.serve import queue_only

    with gr.Blocks() as glue:
        state, box = gr.State(None), gr.Textbox()
        box.change(None, [box], None, js="(v) => v", queue=False)  # runs in the browser only
        box.submit(lambda s: s, [state], [box], queue=False)  # State: read from the session
    queue_only(glue)
    with gr.Blocks() as hole:
        box = gr.Textbox()
        box.submit(lambda text: text, [box], [box], queue=False)
    with pytest.raises(ValueError, match="skips the queue but takes Textbox"):
        queue_only(hole)
