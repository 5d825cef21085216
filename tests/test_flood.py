"""Floods of cheap calls against the launched app (issue 26): nobody's conversation is lost to them.

Gradio 6.31 keeps each session's state in a store of bounded size that forgets the least
recently used session (gradio/state_holder.py), and creates that state for any session hash a
request names, queued or not. The guard makes a new session cost its sender (`clients.py`)
and keeps the sessions open in all below the store's size; invalid calls (naming a session or
an event that does not exist) open nothing and cost their sender too. The store is made small
here (`state_session_capacity`) so that a flood of a few hundred calls would reach its bound.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
import uuid

import httpx
import psutil
import pytest
from gradio_client import Client

from demo.web.clients import SessionLimits
from tests.guarded import chat_data, events_of, join, launch, store
from tests.helpers import wait_until

LIMITS = SessionLimits(per_client=8, per_minute=8, invalid_per_minute=20)
CAPACITY = 40  # Gradio's store: 40 sessions (its default: 10,000)


@pytest.fixture
def small():
    """The app with a store of 40 sessions; 127.0.0.1 is a trusted proxy, so X-Forwarded-For stands for clients."""
    app = launch(guard={"sessions": LIMITS, "trusted_proxies": ("127.0.0.1",)}, state_session_capacity=CAPACITY)
    yield app
    app["demo"].close()


def conversation_of(app: dict, n: int) -> Client:
    """A person (gradio_client keeps its cookie) who asked `n` questions."""
    person = Client(app["url"], download_files=False, verbose=False)
    for i in range(n):
        person.predict({"text": f"question {i + 1}", "files": []}, api_name="/chat")
    return person


def questions(history: list[dict]) -> list[str]:
    return [m["content"][0]["text"] for m in history if m["role"] == "user"]


def glue_call(http: httpx.Client, app: dict, session: str, **kwargs) -> httpx.Response:
    """The page's own non-queued event (`busy`: no input), called directly with `session`."""
    body = {"data": [], "fn_index": app["fns"]["busy"], "session_hash": session}
    return http.post(app["url"] + "gradio_api/run/predict", json=body, **kwargs)


def test_a_flood_of_new_sessions_from_one_client_cannot_push_out_a_conversation(small):
    app = small
    person = conversation_of(app, 4)
    flooder = httpx.Client(timeout=10)
    answers = [glue_call(flooder, app, f"flood-{n}").status_code for n in range(10 * CAPACITY)]
    assert answers.count(200) <= LIMITS.per_client  # the rest refused before Gradio saw them
    assert set(answers) == {200, 429}
    assert len(store(app)) <= CAPACITY
    history, _ = person.predict({"text": "question 5", "files": []}, api_name="/chat")
    assert questions(history) == [f"question {i}" for i in range(1, 6)]  # all there: nothing pushed out


def test_refusals_of_new_sessions_are_one_sentence_each(small):
    app = small
    flooder = httpx.Client(timeout=10)
    refused = [r for r in (glue_call(flooder, app, f"s-{n}") for n in range(3 * LIMITS.per_client)) if r.status_code == 429]
    sentences = {r.json()["detail"] for r in refused}
    assert sentences and all(s.endswith(".") and s.count(".") == 1 for s in sentences), sentences
    assert any("conversations" in s for s in sentences)


def test_many_clients_cannot_fill_the_store_either(small):
    """Each client within its share, together more than the store holds: the app refuses before."""
    app = small
    person = conversation_of(app, 4)
    http = httpx.Client(timeout=10)
    answers = []
    for client in range(CAPACITY):
        headers = {"X-Forwarded-For": f"198.51.100.{client + 1}"}
        answers += [glue_call(http, app, f"c{client}-{n}", headers=headers).status_code for n in range(3)]
    assert 429 in answers and len(store(app)) <= CAPACITY
    refusal = glue_call(http, app, "one-more", headers={"X-Forwarded-For": "203.0.113.9"})
    assert refusal.status_code == 429 and "try again" in refusal.json()["detail"]
    history, _ = person.predict({"text": "question 5", "files": []}, api_name="/chat")
    assert questions(history) == [f"question {i}" for i in range(1, 6)]


def test_a_closed_tab_leaves_the_store_and_its_clients_count(small):
    """A closed session (its heartbeat ended; Gradio ran the unload event) is dropped from Gradio's
    store, where Gradio would keep it an hour, and no longer counts against its client."""
    app = small
    person = conversation_of(app, 1)
    session = person.session_hash
    assert session in store(app)
    person.close()  # as a closed tab

    def dropped() -> bool:
        httpx.get(app["url"] + "config")  # the guard sweeps when requests come
        return session not in store(app)

    assert wait_until(dropped, timeout=20)
    assert app["guard"].ledger.open_of("127.0.0.1") == 0
    again = [conversation_of(app, 1) for _ in range(LIMITS.per_client)]  # its place is free again
    assert all(c.session_hash in store(app) for c in again)


def test_cheap_calls_naming_unknown_sessions_bind_nothing_and_evict_no_owner(small):
    """Issue 26: 100,400 `cancel` calls pushed a victim out of the owner table; a stranger then read
    the conversation with the victim's hash, and the victim was locked out."""
    app = small
    person = conversation_of(app, 2)
    flooder = httpx.Client(timeout=10)
    url = app["url"] + "gradio_api/"
    before = len(app["guard"].owners)
    statuses = []
    for n in range(300):
        fresh = f"x-{n}"
        statuses.append(flooder.post(url + "cancel", json={"session_hash": fresh, "fn_index": 0, "event_id": fresh}).status_code)
    stranger = httpx.Client(timeout=10, headers={"X-Forwarded-For": "198.51.100.77"})  # not the flooder: its budget is spent
    stolen = join(stranger, app, "save", [None], person.session_hash)
    assert stolen.status_code == 403
    saved = person.predict(api_name="/save")  # the owner still saves, with both questions
    assert "question 2" in open(saved["path"]).read()
    for n in range(20):  # the other routes that name a session without opening one
        statuses.append(flooder.get(url + "queue/data", params={"session_hash": f"y-{n}"}).status_code)
        statuses.append(flooder.get(url + f"call/chat/z-{n}").status_code)
        statuses.append(flooder.get(url + f"stream/w-{n}/run/1/playlist.m3u8").status_code)
    assert set(statuses) <= {404, 429} and statuses.count(429) >= len(statuses) - LIMITS.invalid_per_minute
    assert len(app["guard"].owners) == before  # nothing bound


def test_invalid_calls_cost_their_sender_only(small):
    app = small
    here, there = {"X-Forwarded-For": "198.51.100.40"}, {"X-Forwarded-For": "198.51.100.41"}
    http = httpx.Client(timeout=10)
    for n in range(LIMITS.invalid_per_minute + 1):
        http.post(app["url"] + "gradio_api/cancel", json={"session_hash": f"u-{n}", "fn_index": 0, "event_id": "e"}, headers=here)
    spent = glue_call(http, app, "after-the-budget", headers=here)
    assert spent.status_code == 429 and "wait a minute" in spent.json()["detail"]  # no new session either
    assert glue_call(http, app, "someone-else", headers=there).status_code == 200


def test_a_bounded_real_flood_is_refused_fast_and_costs_no_memory():
    """2,000 calls of the page's own non-queued event, each with a fresh session hash, from one
    client, 8 at a time, against the default settings (Gradio's default store)."""
    app = launch(guard={"sessions": SessionLimits()})
    try:
        process = psutil.Process(os.getpid())
        flooder = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=8))
        glue_call(flooder, app, "warm-up")
        stored, rss = len(store(app)), process.memory_info().rss
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: glue_call(flooder, app, uuid.uuid4().hex).status_code, range(2000)))
        seconds = time.monotonic() - start
        grown = process.memory_info().rss - rss
        print(f"2,000 calls in {seconds:.1f} s: {answers.count(200)} accepted, {answers.count(429)} refused; "
              f"store +{len(store(app)) - stored} sessions; RSS {grown / 2**20:+.0f} MB")
        assert answers.count(200) <= SessionLimits().per_client and len(store(app)) - stored <= SessionLimits().per_client
        assert grown < 40 * 2**20
        assert seconds < 60
    finally:
        app["demo"].close()


# -- the ledger alone, on a clock of its own -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ledger(**limits) -> tuple:
    from demo.web.clients import Ledger

    clock = Clock()
    return Ledger(SessionLimits(**limits), clock=clock), clock


def test_the_ledger_caps_each_clients_open_sessions_its_rate_and_the_total():
    from demo.web.clients import APP_FULL, MINE, REFUSED, TOO_FAST, TOO_MANY_SESSIONS

    book, clock = ledger(per_client=3, per_minute=5, total=5, invalid_per_minute=10)
    assert [book.claim(f"a{n}", "cookie:a", "1.1.1.1", opens=True)[0] for n in range(3)] == [MINE] * 3
    assert book.claim("a3", "cookie:a", "1.1.1.1", opens=True) == (REFUSED, TOO_MANY_SESSIONS.format(n=3))
    assert book.claim("b0", "cookie:b", "2.2.2.2", opens=True)[0] == MINE
    assert book.claim("b1", "cookie:b", "2.2.2.2", opens=True)[0] == MINE
    assert book.claim("c0", "cookie:c", "3.3.3.3", opens=True) == (REFUSED, APP_FULL)  # 5 open in all
    assert book.claim("a0", "cookie:a", "1.1.1.1", opens=True)[0] == MINE  # its own: always
    for n in range(3):  # a's tabs close: its places are free, and the total's once their state is dropped
        book.heartbeat(f"a{n}", opened=True)
        book.heartbeat(f"a{n}", opened=False)
    assert book.open_of("1.1.1.1") == 0 and book.total == 5
    dropped = []
    clock.now = 10.0
    book.sweep(held=lambda s: False, busy=lambda s: False, drop=dropped.append)
    assert sorted(dropped) == ["a0", "a1", "a2"] and book.total == 2
    assert [book.claim(f"d{n}", "cookie:d", "4.4.4.4", opens=True)[0] for n in range(3)] == [MINE, MINE, MINE]
    assert book.claim("e0", "cookie:e", "4.4.4.4", opens=True)[0] == REFUSED  # 4.4.4.4: three open already
    book2, _ = ledger(per_client=100, per_minute=5, total=100)
    answers = [book2.claim(f"s{n}", "address:x", "9.9.9.9", opens=True)[1] for n in range(7)]
    assert answers == [None] * 5 + [TOO_FAST] * 2


def test_the_ledger_never_evicts_and_forgets_only_ended_sessions_gradio_no_longer_holds():
    from demo.web.clients import MINE, THEIRS, UNKNOWN

    book, clock = ledger(per_client=10, per_minute=10, total=10, idle=60.0)
    assert book.claim("mine", "cookie:me", "1.1.1.1", opens=True)[0] == MINE
    book.owners.get("mine").attended = True  # a tab's (it had a heartbeat, whose end was never seen)
    assert book.claim("nobody", "cookie:x", "2.2.2.2", opens=False)[0] == UNKNOWN and "nobody" not in book.owners
    assert book.claim("mine", "cookie:x", "2.2.2.2", opens=True)[0] == THEIRS
    clock.now = 61.0
    held = {"mine"}
    book.sweep(held=lambda s: s in held, busy=lambda s: False, drop=lambda s: None)
    assert book.open_of("1.1.1.1") == 0 and book.owners.owner("mine") == "cookie:me"  # idle, but Gradio holds it: still bound
    assert book.claim("mine", "cookie:x", "2.2.2.2", opens=True)[0] == THEIRS
    held.clear()
    clock.now = 63.0
    book.sweep(held=lambda s: s in held, busy=lambda s: False, drop=lambda s: None)
    assert "mine" not in book.owners  # ended, and nothing left of it in Gradio


def test_a_busy_session_stays_open_and_a_reserved_place_takes_its_event_id():
    from demo.web.clients import REFUSED

    book, clock = ledger(per_client=1, per_minute=10, total=10, idle=60.0)
    key, why = book.reserve("address:1.1.1.1", "1.1.1.1")
    assert key is not None and why is None
    assert book.reserve("address:1.1.1.1", "1.1.1.1")[0] is None  # one place a client
    book.named(key, "event-1")
    assert book.owners.owner("event-1") == "address:1.1.1.1" and key not in book.owners
    clock.now = 100.0
    book.sweep(held=lambda s: True, busy=lambda s: s == "event-1", drop=lambda s: None)
    assert book.open_of("1.1.1.1") == 1  # its event is still queued: it stays open
    assert book.claim("other", "address:1.1.1.1", "1.1.1.1", opens=True)[0] == REFUSED
    failed, _ = book.reserve("address:2.2.2.2", "2.2.2.2")
    book.named(failed, None)  # the call opened nothing
    assert book.open_of("2.2.2.2") == 0 and book.total == 1


def test_a_session_without_a_heartbeat_ends_after_the_unattended_time_not_the_idle_one():
    """Issue 26: sessions of REST calls and scripts (no heartbeat: nothing announces their end) lived
    the whole idle time, an hour, holding their state and files; now `unattended` seconds."""
    from demo.web.clients import MINE

    book, clock = ledger(per_client=2, per_minute=10, total=10, idle=3600.0, unattended=600.0)
    assert book.claim("script", "address:1.1.1.1", "1.1.1.1", opens=True)[0] == MINE
    assert book.claim("tab", "cookie:t", "1.1.1.1", opens=True)[0] == MINE
    book.heartbeat("tab", opened=True)
    dropped = []
    clock.now = 599.0
    book.sweep(held=lambda s: True, busy=lambda s: False, drop=dropped.append)
    assert dropped == [] and book.open_of("1.1.1.1") == 2
    clock.now = 601.0
    book.sweep(held=lambda s: True, busy=lambda s: s == "tab", drop=dropped.append)
    assert dropped == ["script"] and "script" not in book.owners  # ended with its Gradio state
    assert book.open_of("1.1.1.1") == 1 and book.total == 1  # its place is free at once
    clock.now = 3000.0  # a tab keeps the full idle time
    book.sweep(held=lambda s: True, busy=lambda s: False, drop=dropped.append)
    assert dropped == ["script"] and book.owners.owner("tab") == "cookie:t"


def test_an_unattended_session_is_ended_with_its_files_and_state(tmp_path):
    """End to end: a conversation opened with plain HTTP (no heartbeat) and a picture; after the
    unattended time its Gradio state and its files are gone, and its client's place is free."""
    from PIL import Image

    app = launch(guard={"sessions": SessionLimits(per_client=1, per_minute=10, unattended=2.0)})
    try:
        http = httpx.Client(timeout=30)
        picture = tmp_path / "p.png"
        Image.new("RGB", (64, 48), "red").save(picture)
        uploaded = http.post(app["url"] + "gradio_api/upload", files={"files": picture.open("rb")}).json()[0]
        data = chat_data("what is this?")
        data[0] = {"text": "what is this?", "files": [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}]}
        assert join(http, app, "chat", data, "script-1").status_code == 200
        folders = app["handlers"].sessions
        assert wait_until(lambda: "script-1" in folders.live() and not events_of(app, "script-1"), timeout=20)
        folder = folders.folder("script-1")
        assert any(folder.rglob("*.png"))
        assert glue_call(http, app, "script-2").status_code == 429  # one session a client here

        def ended() -> bool:
            httpx.get(app["url"] + "config")  # the guard sweeps when requests come
            return "script-1" not in store(app)

        assert wait_until(ended, timeout=20)
        assert not folder.exists() and "script-1" not in folders.live()
        assert glue_call(http, app, "script-2").status_code == 200  # its place is free again
    finally:
        app["demo"].close()
