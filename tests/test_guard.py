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

from demo.web import policy
from demo.web.clients import SessionLimits
from demo.web.guard import NO_SUCH_FILE, NOT_YOURS, QUEUED_ONLY
from demo.web.owners import Owners, identity
from tests import guarded
from tests.conftest import EXAMPLES
from tests.guarded import SLOW, chat_data, events_of, join
from tests.helpers import wait_until

#: Most tests here are many clients on one machine: a share of sessions they never reach.
ROOMY = SessionLimits(per_client=10_000, per_minute=10_000, invalid_per_minute=10_000)


def launch(*, max_pending: int = 2, max_answer_tokens: int = 64, auth=None, sessions: SessionLimits = ROOMY,
           trusted_proxies: tuple[str, ...] = ("127.0.0.1",), **launch_kwargs) -> dict:
    """The app on a scripted engine; `trusted_proxies` 127.0.0.1, so that the tests' `X-Forwarded-For`
    headers stand for other clients."""
    guard = {"max_pending": max_pending, "sessions": sessions, "trusted_proxies": trusted_proxies}
    return guarded.launch(guard=guard, max_answer_tokens=max_answer_tokens, auth=auth, **launch_kwargs)


@pytest.fixture(scope="module")
def scripted():
    app = launch()
    yield app
    app["demo"].close()


def test_a_stranger_with_the_session_hash_is_refused_everywhere(scripted):
    app = scripted
    victim = Client(app["url"], download_files=False, verbose=False)  # keeps the cookie /config sets
    assert policy.COOKIE in victim.cookies
    victim.predict({"text": "my secret question", "files": []}, api_name="/chat")
    app["engine"].answers = [SLOW]
    job = victim.submit({"text": "a long answer", "files": []}, api_name="/chat")
    session = victim.session_hash
    assert wait_until(lambda: session in app["handlers"].writing.sessions())
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
    assert wait_until(lambda: victim.session_hash in app["handlers"].writing.sessions())
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
    patient = Client(app["url"], download_files=False, verbose=False, headers=second)  # another client gets in
    waiting = patient.submit({"text": "me too", "files": []}, api_name="/chat")

    def told(job) -> str:
        return " ".join(str(history[-1]["content"]) for history, _ in job.outputs() if history)

    # behind the greedy one's answer being written and its second one waiting (demo/page/writing.py)
    assert wait_until(lambda: "Waiting for the model: 2 answers before yours." in told(waiting), timeout=15)
    # the model's group is full (one answer written, two more read and checked): the next waits in Gradio's queue
    late = join(http, app, "chat", chat_data("and me"), "latecomer", headers={"X-Forwarded-For": "203.0.113.3"})
    assert late.status_code == 200
    estimation = read_estimation(http, app, "latecomer", {"X-Forwarded-For": "203.0.113.3"})
    assert estimation["rank"] == 0 and estimation["queue_size"] >= 1  # first in Gradio's queue
    http.post(app["url"] + "gradio_api/cancel", json={"session_hash": "latecomer", "fn_index": app["fns"]["chat"],
                                                      "event_id": late.json()["event_id"]}, headers={"X-Forwarded-For": "203.0.113.3"})
    for job in [waiting, *reversed(jobs)]:  # the waiting ones first, so that nothing else starts
        job.cancel()
    assert wait_until(lambda: not events_of(app, greedy[0].session_hash) and not events_of(app, greedy[1].session_hash), timeout=15)
    assert join(http, app, "clear", [], "greedy-3", headers=first).status_code == 200  # not capped: clearing is free
    assert wait_until(lambda: not events_of(app, patient.session_hash), timeout=15)
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


def test_owners_bind_on_first_sight_and_forget_nobody_for_others_traffic():
    owners = Owners()
    me, you = identity("a" * 43, "1.2.3.4"), identity(None, "1.2.3.4")
    owners.bind("s1", me, "1.2.3.4", now=0.0)
    for n in range(1000):  # others' sessions: no capacity to push s1 out
        owners.bind(f"other-{n}", you, "5.6.7.8", now=1.0)
    assert owners.owner("s1") == me and len(owners) == 1001
    owners.seen("other-0", now=2.0)
    assert owners.unseen_since(1.5)[0] == "s1" and "other-0" not in owners.unseen_since(1.5)


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


# -- files: a session's to its owner, an upload to its uploader, the examples to anyone -----------

BOX = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(100,100),(500,500)<|box_end|>"


def file_urls(history: list[dict]) -> list[str]:
    """The URLs of the files a chat shows (the pictures sent, the annotated ones), in order."""
    return [part["file"]["url"] for message in history for part in message["content"] if part.get("type") == "file"]


def route_of(url: str) -> str:
    """`url`'s path after the host (`/gradio_api/file=…`), decoded as the server decodes it."""
    return httpx.URL(url).path


def fetch(http: httpx.Client, app: dict, route: str, **kwargs) -> httpx.Response:
    """GET `route` exactly as given (percent-escapes and dot segments kept): what an attacker can send."""
    base = httpx.URL(app["url"])
    return http.get(base.copy_with(raw_path=route.encode()), **kwargs)


def test_a_sessions_pictures_are_served_to_its_owner_only(scripted, photos):
    from gradio_client import handle_file

    app = scripted
    app["engine"].answers = [[BOX]]
    owner = Client(app["url"], download_files=False, verbose=False)
    history, _ = owner.predict({"text": "where is the cat?", "files": [handle_file(str(photos["chelsea"]))]}, api_name="/chat")
    sent, annotated = file_urls(history)
    folder = app["handlers"].sessions.folder(owner.session_hash)
    assert all(Path(httpx.URL(u).path.split("file=", 1)[1]).is_relative_to(folder) for u in (sent, annotated))
    mine = httpx.Client(timeout=10, cookies=owner.cookies)
    assert mine.get(sent).content == photos["chelsea"].read_bytes()
    assert mine.get(annotated).content.startswith(b"\xff\xd8\xff")  # the boxes drawn: a JPEG in the chat
    other_browser = httpx.Client(timeout=10)
    other_browser.get(app["url"])  # a cookie of its own
    assert policy.COOKIE in other_browser.cookies
    for url in (sent, annotated):
        for stranger in (httpx.Client(timeout=10), other_browser):
            answer = stranger.get(url)
            assert answer.status_code == 404 and answer.json() == {"detail": "Not Found"}  # as for a file that is not there
        assert httpx.head(url).status_code == 404
    # The same file by other spellings of its path: each escaped, the old route, dot segments, a symlink.
    route = route_of(sent)
    path = route.split("file=", 1)[1]
    escaped = "/gradio_api/file=" + "".join(f"%{b:02X}" if chr(b) in "/." else chr(b) for b in path.encode())
    dotted = "/gradio_api/file=" + str(folder.parent) + "/x/%2E%2E/" + str(Path(path).relative_to(folder.parent))
    link = Path(app["demo"].GRADIO_CACHE) / f"link-{owner.session_hash}.png"
    link.symlink_to(path)
    try:
        spellings = [escaped, "/gradio_api/file/" + path, dotted, f"/gradio_api/file={link}"]
        for spelling in spellings:
            assert fetch(mine, app, spelling).content == photos["chelsea"].read_bytes(), spelling
            assert fetch(other_browser, app, spelling).status_code == 404, spelling
            assert fetch(httpx.Client(timeout=10), app, spelling).status_code == 404, spelling
    finally:
        link.unlink()
    assert mine.get(sent, headers={"Range": "bytes=0-7"}).content == photos["chelsea"].read_bytes()[:8]  # videos seek
    owner.predict(api_name="/clear")  # kept for the page's Undo: still the owner's alone
    assert mine.get(sent).status_code == 200 and other_browser.get(sent).status_code == 404
    owner.predict(api_name="/clear")  # cleared again (nothing to undo): the session's files end
    assert mine.get(sent).status_code in (403, 404)


def test_an_upload_is_shown_to_its_uploader_only_until_it_is_sent(scripted, photos):
    app = scripted
    uploader = httpx.Client(timeout=10)
    uploader.get(app["url"])  # the page: its cookie
    picture = photos["coffee"].read_bytes()
    answer = uploader.post(app["url"] + "gradio_api/upload", files=[("files", ("mine.png", picture, "image/png"))])
    [path] = answer.json()
    url = app["url"] + "gradio_api/file=" + path
    assert uploader.get(url).content == picture  # the textbox's preview
    stranger = httpx.Client(timeout=10)
    stranger.get(app["url"])
    assert stranger.get(url).status_code == 404 and httpx.get(url).status_code == 404
    # Whoever sends the same bytes under the same name gets the same path: they have the file already.
    again = stranger.post(app["url"] + "gradio_api/upload", files=[("files", ("mine.png", picture, "image/png"))])
    assert again.json() == [path] and stranger.get(url).content == picture
    # Without a cookie an upload is its address's, as a session is.
    here, there = {"X-Forwarded-For": "198.51.100.20"}, {"X-Forwarded-For": "198.51.100.21"}
    cookieless = httpx.Client(timeout=10)
    [other] = cookieless.post(app["url"] + "gradio_api/upload", files=[("files", ("x.png", picture[::-1], "image/png"))], headers=here).json()
    assert cookieless.get(app["url"] + "gradio_api/file=" + other, headers=here).status_code == 200
    assert cookieless.get(app["url"] + "gradio_api/file=" + other, headers=there).status_code == 404


def test_the_examples_are_anyones_and_nothing_else_in_gradios_folder_is(scripted):
    app = scripted
    config = httpx.get(app["url"] + "config").json()
    examples = next(c["props"]["examples"] for c in config["components"] if c.get("props", {}).get("elem_id") == "chatbot")
    files = [f for example in examples for f in example["files"]]
    assert len(files) == 5
    for file in files:  # the tests' apps share /tmp/gradio, and one that closes deletes the copies it made
        if not Path(file["path"]).exists():
            Path(file["path"]).parent.mkdir(parents=True, exist_ok=True)
            Path(file["path"]).write_bytes((EXAMPLES / Path(file["path"]).name).read_bytes())
    urls = [f["url"] for f in files]
    for url in urls:
        full = url if url.startswith("http") else app["url"].rstrip("/") + url
        assert httpx.get(full).status_code == 200  # no cookie, no session
    cache = Path(app["demo"].GRADIO_CACHE)
    stray = cache / "not-an-upload" / "left.png"  # a file Gradio's folder holds that nobody uploaded here
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"\x89PNG stray")
    try:
        assert httpx.get(app["url"] + f"gradio_api/file={stray}").status_code == 404
    finally:
        stray.unlink()
        stray.parent.rmdir()
    assert httpx.get(app["url"] + "gradio_api/file=http://127.0.0.1:9/x.png").status_code == 404  # not a proxy either


def test_a_stranger_cannot_take_anothers_file_by_sending_its_path(scripted, photos):
    """The app copies a message's files into the sender's folder: naming another's path in a
    message would hand the stranger a copy of it, so such a request is refused, and nothing runs."""
    from gradio_client import handle_file

    app = scripted
    owner = Client(app["url"], download_files=False, verbose=False)
    app["engine"].answers = [["ok"]]
    history, _ = owner.predict({"text": "mine", "files": [handle_file(str(photos["astronaut"]))]}, api_name="/chat")
    [sent] = [httpx.URL(u).path.split("file=", 1)[1] for u in file_urls(history)]
    mine = httpx.Client(timeout=10, cookies=owner.cookies)
    [unsent] = mine.post(app["url"] + "gradio_api/upload", files=[("files", ("draft.png", b"\x89PNG draft"))]).json()
    stranger = httpx.Client(timeout=10)
    stranger.get(app["url"])
    calls = len(app["engine"].calls)
    chat = app["demo"].fns[app["fns"]["chat"]]
    for path in (sent, unsent, str(Path(unsent).parent / "x" / ".." / Path(unsent).name)):
        data = [{"text": "whose?", "files": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}, None]
        data += [block.value for block in chat.inputs[2:]]
        refused = join(stranger, app, "chat", data, "strangers-session")
        assert refused.status_code == 404 and refused.json()["detail"] == NO_SUCH_FILE
        by_rest = stranger.post(app["url"] + "gradio_api/call/chat", json={"data": data})
        assert by_rest.status_code == 404
    time.sleep(0.3)
    assert len(app["engine"].calls) == calls
    assert "strangers-session" not in app["handlers"].sessions.live()


def test_gradio_client_downloads_its_own_files(scripted, photos):
    from gradio_client import handle_file

    app = scripted
    app["engine"].answers = [[BOX]]
    client = Client(app["url"], verbose=False)  # download_files=True: fetches the files with its cookie
    history, _ = client.predict({"text": "where?", "files": [handle_file(str(photos["chelsea"]))]}, api_name="/chat")
    files = [part["file"] for message in history for part in message["content"] if part.get("type") == "file"]
    assert len(files) == 2
    assert Path(files[0]).read_bytes() == photos["chelsea"].read_bytes()
    assert Path(files[1]).read_bytes().startswith(b"\xff\xd8\xff")  # the annotated picture, a JPEG


def test_the_rest_api_fetches_its_files_from_its_address(scripted, photos):
    """A REST caller (curl) has no cookie: its files are its address's."""
    app = scripted
    here, there = {"X-Forwarded-For": "198.51.100.30"}, {"X-Forwarded-For": "198.51.100.31"}
    http = httpx.Client(timeout=30)
    [path] = http.post(app["url"] + "gradio_api/upload", files=[("files", ("c.png", photos["chelsea"].read_bytes()))], headers=here).json()
    chat = app["demo"].fns[app["fns"]["chat"]]
    data = [{"text": "where?", "files": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}, None]
    data += [block.value for block in chat.inputs[2:]]  # the settings as the page starts them
    app["engine"].answers = [[BOX]]
    event = http.post(app["url"] + "gradio_api/call/chat", json={"data": data}, headers=here).json()["event_id"]
    stream = http.get(app["url"] + f"gradio_api/call/chat/{event}", headers=here).text
    last = [line for line in stream.splitlines() if line.startswith("data:")][-1]
    urls = file_urls(json.loads(last[5:])[0])
    assert len(urls) == 2
    for url in urls:
        assert http.get(url, headers=here).status_code == 200
        assert http.get(url, headers=there).status_code == 404


def test_a_file_route_is_read_as_gradio_reads_it(tmp_path, monkeypatch):
    from demo.web.files import Uploads, named_paths, public_files, requested

    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    assert requested("/gradio_api/file=/a/b/../c.png") == Path("/a/c.png")
    assert requested("/gradio_api/file//a/./c.png") == Path("/a/c.png")  # the old route keeps the path's own slash
    assert requested("/gradio_api/file=rel.png") == tmp_path.resolve() / "rel.png"  # from the working directory, as Gradio
    assert requested(f"/gradio_api/file={tmp_path}/link.png") == (tmp_path / "real.png").resolve()
    assert requested("/gradio_api/file=https://example.com/x.png") is None
    assert requested("/gradio_api/file=/a/\x00b") is None
    with pytest.raises(ValueError):
        requested("/gradio_api/upload")
    uploads = Uploads(capacity=2)
    uploads.add(tmp_path / "a" / ".." / "one", "me")
    uploads.add(tmp_path / "two", "you")
    uploads.add(tmp_path / "two", "me")
    uploads.add(tmp_path / "three", "me")  # the oldest, "one", is forgotten
    assert not uploads.uploaded((tmp_path / "one").resolve(), "me") and len(uploads) == 2
    assert uploads.uploaded((tmp_path / "two").resolve(), "you") and uploads.uploaded((tmp_path / "two").resolve(), "me")
    config = {"components": [{"props": {"value": {"path": str(tmp_path / "link.png"), "meta": {"_type": "gradio.FileData"}}}},
                             {"props": {"examples": [{"path": "https://example.com/a.png", "meta": {"_type": "gradio.FileData"}}]}},
                             {"props": {"value": {"path": "/not/a/file/data"}}}]}
    assert public_files(config) == {(tmp_path / "real.png").resolve()}
    body = {"data": [{"text": "t", "files": [{"path": "/a.png"}, {"path": "https://x/b.png"}]}, {"path": 3}],
            "event_data": {"value": {"file": {"path": "rel.png", "meta": {"_type": "gradio.FileData"}}}}}
    assert sorted(named_paths(body)) == ["/a.png", "rel.png"]  # every dict with a string path, as Gradio takes it
