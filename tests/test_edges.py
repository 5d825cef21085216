"""Locked at the edges (issue 26): who may frame the page, and `--auth` on every route.

Gradio 6.31 checks its login on most routes but not on `cancel`, `heartbeat` or `stream`, and
answers wrong passwords as fast as they come (a probe: 60 in 0.1 s). With `--auth` the guard
lets through without a login only the login page and static files, and slows guessing per
client (demo/web/auth.py).
"""

from __future__ import annotations

import concurrent.futures
import re
import time

import httpx
import pytest
from gradio_client import Client

from demo.web import auth, policy
from demo.web.guard import GuardSettings
from tests.guarded import launch

USER, PASSWORD = "ann", "secret words"


def test_the_page_may_be_framed_by_the_app_itself_only(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    app = launch(guard={})
    try:
        csp = httpx.get(app["url"]).headers["content-security-policy"]
        assert "frame-ancestors 'self'" in csp.split("; ")
    finally:
        app["demo"].close()


def test_on_a_space_the_spaces_page_may_frame_it(monkeypatch):
    """hub-docs: huggingface.co/spaces/<user>/<app> embeds the app (https://*.hf.space) in an iframe."""
    monkeypatch.setenv("SPACE_ID", "someone/qwen-vl-chat")
    assert GuardSettings().framed_by == ("'self'", "https://huggingface.co")
    assert "frame-ancestors 'self' https://huggingface.co" in policy.page_policy("n", framed_by=GuardSettings().framed_by)
    monkeypatch.delenv("SPACE_ID")
    assert GuardSettings().framed_by == ("'self'",)


@pytest.fixture(scope="module")
def locked():
    """The app with a password; 127.0.0.1 is a trusted proxy, so X-Forwarded-For stands for clients."""
    app = launch(guard={"trusted_proxies": ("127.0.0.1",)}, auth=(USER, PASSWORD))
    yield app
    app["demo"].close()


def login(app: dict, password: str, client: str, http: httpx.Client | None = None) -> httpx.Response:
    http = http or httpx.Client(timeout=30)
    return http.post(app["url"] + "login", data={"username": USER, "password": password}, headers={"X-Forwarded-For": client})


def test_auth_covers_every_route_but_the_login_page_and_static_files(locked):
    app = locked
    url = app["url"] + "gradio_api/"
    anonymous = httpx.Client(timeout=10)
    refused = [
        anonymous.post(url + "cancel", json={"session_hash": "s", "fn_index": 0, "event_id": "e"}),
        anonymous.get(url + "heartbeat/some-session"),
        anonymous.post(url + "stream/some-event", json={"data": []}),
        anonymous.get(url + "stream/s/run/1/playlist.m3u8"),
        anonymous.post(url + "reset", json={"event_id": "e"}),
        anonymous.get(url + "queue/data", params={"session_hash": "s"}),
        anonymous.get(app["url"] + "config"),
        anonymous.get(url + "info"),
        anonymous.get(app["url"] + "token"),
    ]
    assert [r.status_code for r in refused] == [401] * len(refused)
    assert refused[0].json()["detail"] == auth.LOG_IN_FIRST
    page = anonymous.get(app["url"])  # the login page, and what it loads
    assert page.status_code == 200 and "frame-ancestors 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="\./?([^"]+\.(?:js|css))"', page.text)
    assert assets, "the page names its scripts and styles"
    for asset in assets[:5]:
        assert anonymous.get(app["url"] + asset).status_code == 200, asset
    client = Client(app["url"], auth=(USER, PASSWORD), download_files=False, verbose=False)  # heartbeat included
    history, _ = client.predict({"text": "hi", "files": []}, api_name="/chat")
    assert history[-1]["role"] == "assistant"
    logged_in = httpx.Client(timeout=10, cookies=client.cookies)
    assert logged_in.post(url + "cancel", json={"session_hash": client.session_hash, "fn_index": 0, "event_id": "e"}).status_code == 200


def test_wrong_passwords_are_slowed_per_client(locked):
    app = locked
    guesser = "198.51.100.90"
    http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=12))
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda n: login(app, f"guess {n}", guesser, http), range(60)))
    seconds = time.monotonic() - start
    statuses = [r.status_code for r in answers]
    print(f"60 wrong passwords in {seconds:.1f} s: {statuses.count(400)} checked, {statuses.count(429)} refused")
    # five at once, then one after 2 s, 4 s, 8 s...: on a loaded machine the 60 may take a few seconds
    assert 5 <= statuses.count(400) <= 5 + int(seconds / 2) and statuses.count(400) + statuses.count(429) == 60
    slow_down = next(r for r in answers if r.status_code == 429).json()["detail"]
    assert slow_down.startswith("Too many wrong passwords") and slow_down.count(".") == 1
    right = login(app, PASSWORD, guesser)
    assert right.status_code == 429  # even the right password, while it must wait
    assert login(app, PASSWORD, "198.51.100.91").status_code == 200  # another client is not slowed
    time.sleep(int(right.json()["detail"].split(" in ")[1].split()[0]) + 0.2)
    assert login(app, PASSWORD, guesser).status_code == 200


def test_the_login_throttle_doubles_its_wait():
    clock = [0.0]
    logins = auth.Logins(free=2, first_wait=2.0, longest=10.0, clock=lambda: clock[0])
    assert logins.attempt("a") == 0 and logins.attempt("a") == 0
    assert logins.attempt("a") == pytest.approx(2.0)  # must wait after the second failure
    clock[0] = 2.0
    assert logins.attempt("a") == 0
    assert logins.attempt("a") == pytest.approx(4.0)
    clock[0] = 6.0
    assert logins.attempt("a") == 0
    clock[0] = 14.0
    assert logins.attempt("a") == 0  # 8 s, then at most 10 s
    assert logins.attempt("a") == pytest.approx(10.0)
    logins.succeeded("a")
    assert logins.attempt("a") == 0
