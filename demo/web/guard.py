"""ASGI middleware in front of Gradio's routes: owners, fair shares, no queue bypass, CSP.

Gradio 6.31 (gradio/routes.py) takes a session hash on these routes and trusts it:
`queue/join`, `queue/data`, `cancel`, `heartbeat/{session}`, `run/…` and `api/…` (direct
calls), `call/…` (the REST API, and its `call/{api}/{event}` reads), `stream/…`,
`component_server` and `/gradio_api/deep_link`. The guard

- binds each session to the browser that first used it (`owners.py`) and refuses any other
  with 403 on every one of those routes (a `cancel` must also name an event of that session);
- refuses the routes this app has no use for and that would run work outside the queue or
  dump a session (`component_server`, `process_recording`, `deep_link`), and direct `run/`
  / `api/` calls of any queued event (the queue is the only way in for the model and files);
- serves a session's files (`/gradio_api/file=…`) to the owner of that session only, an upload
  not yet sent to whoever uploaded it (it records the paths Gradio's upload route answers with),
  the app's own files (the examples) to anyone, and answers anyone else 404 (`files.py`); a
  request that names as input a file its sender may not fetch is refused with 404 too;
- bounds the bytes each client (and all) keep uploaded but not yet sent, by an upload's
  Content-Length before Gradio reads it (413/429, 411 without one), and expires them (`upload_bytes.py`);
- caps the requests each client may have waiting or running in the capped concurrency groups
  (the model's, the files'): one over is answered 429 with one sentence, which Gradio's page
  shows as an error notice (the message stays in the textbox);
- sets the owner cookie on the page and on `/config` (gradio_client keeps cookies from there),
  the page's Content-Security-Policy with a fresh nonce written into its scripts, a policy
  that runs nothing on served files, `nosniff` and `Referrer-Policy` on everything;
- gives each client a share of sessions: one that may open a session (a heartbeat, a join, a
  direct or REST call naming a new one) is refused 429 with one sentence when its client has
  too many open, opens them too fast, or the app is full (`clients.py`); a request naming a
  session that does not exist, is not the sender's, or an event that does not exist opens
  nothing and costs its client (past a budget: 429); a closed session's Gradio state is dropped;
- with `--auth`, refuses every route but the login page and static files without a login, and
  slows password guessing (`auth.py`).

A client is its address as uvicorn reports it: `X-Forwarded-For` counts only from the proxies
named in `GuardSettings.trusted_proxies` (`serve.launch` gives them to uvicorn as
`FORWARDED_ALLOW_IPS`; none by default, on a Space its proxy's networks: `proxies.py`), as for
Gradio's own `request.client`. What it reads of Gradio: the queue's events (`blocks._queue`),
the functions' `queue` and `concurrency_id`, the login's tokens (`app.tokens`), and its session
store (`app.state_holder`), from which it drops closed sessions.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from demo.web import asgi, auth, calls, files, gradio_view, policy, proxies, upload_bytes
from demo.web.asgi import Message, Receive, Scope, Send
from demo.web.clients import MINE, REFUSED, THEIRS, TOO_MANY_INVALID, Ledger, SessionLimits, client_key
from demo.web.owners import identity

log = logging.getLogger(__name__)

NOT_YOURS = "This conversation belongs to another browser: reload the page to start your own."
NO_SUCH_SESSION = "This conversation does not exist (any more): reload the page to start one."
NO_SUCH_EVENT = "This app has no such event."
MALFORMED = "This request is not one the app understands."
NO_SUCH_ROUTE = "This app does not serve that route."
QUEUED_ONLY = "This event only runs through the queue: use /gradio_api/queue/join or /gradio_api/call."
NO_SUCH_FILE = "A file this request names is not here: attach it again."
TOO_MANY = "You already have {n} requests waiting or running; wait for one to finish before sending another."

_CLOSED = re.compile(r"/gradio_api/(?:component_server|process_recording|deep_link)/?")
_PAGE = re.compile(r"/(?:config/?)?")
_HEARTBEAT = re.compile(r"/gradio_api/heartbeat/(?P<session>[^/]+)/?")
_STREAM_OUT = re.compile(r"/gradio_api/stream/(?P<session>[^/]+)/[^/]+/[^/]+/[^/]+")
_STREAM_IN = re.compile(r"/gradio_api/stream/(?P<event>[^/]+)(?:/close)?/?")
_CALL_READ = re.compile(r"/gradio_api/call/(?:v2/)?[^/]+/(?P<event>[^/]+)/?")
_FILE = re.compile(r"/gradio_api/file[=/]")
_UPLOAD = "/gradio_api/upload"
MAX_UPLOAD_ANSWER = 4 * 2**20  # the JSON list of paths Gradio's upload route answers with (at most 1000 files)


@dataclass(frozen=True)
class GuardSettings:
    """`max_pending` requests per client in the `capped` concurrency groups; `sessions`: each client's
    share of sessions; `trusted_proxies`: whose X-Forwarded-For names the client; `framed_by`: who may
    frame the page; `share_cdn` for --share; `uploads_capacity`: uploads whose uploader is remembered."""

    max_pending: int = 4
    capped: frozenset[str] = frozenset({"model", "files"})
    share_cdn: str | None = None
    uploads_capacity: int = 100_000
    unsent_per_client: int = int(upload_bytes.DEFAULT_PER_CLIENT_MB * upload_bytes.MB)  # bytes uploaded, not yet sent
    unsent_total: int = int(8 * upload_bytes.DEFAULT_PER_CLIENT_MB * upload_bytes.MB)  # the same, all clients
    unsent_expiry: float = 1800.0  # seconds an unsent upload is kept: time to write a long question
    sessions: SessionLimits = SessionLimits()
    trusted_proxies: tuple[str, ...] = field(default_factory=proxies.default_trusted)
    framed_by: tuple[str, ...] = field(default_factory=policy.frame_ancestors)

    def __post_init__(self) -> None:
        if self.max_pending < 1:
            raise ValueError(f"max_pending must be positive, got {self.max_pending}")


@dataclass
class _Asking:
    """What the guard knows of one request."""

    method: str
    path: str
    client: str  # what the caps count: the address, an IPv6 one by its /64
    who: str  # whose sessions it may use: the owner cookie, else the address
    token: str | None
    https: bool
    headers: dict[str, str] = field(default_factory=dict)


class Guard:
    """The middleware: `Guard(app, settings)`, or `Middleware(Guard, settings=…)` in FastAPI's list."""

    def __init__(self, app: Callable, settings: GuardSettings | None = None) -> None:
        self.app = app
        self.settings = settings or GuardSettings()
        self.ledger = Ledger(self.settings.sessions)
        self.owners = self.ledger.owners
        self.files = files.FileRules(self.owners, files.Uploads(self.settings.uploads_capacity))
        s = self.settings
        self.unsent = upload_bytes.UnsentUploads(s.unsent_per_client, s.unsent_total, s.unsent_expiry, keep=self.files.is_public)
        self.logins = auth.Logins()
        self._joining: Counter[str] = Counter()  # joins between the cap's check and Gradio's answer
        self._warned_proxy = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asking = self._asking(scope)
        path, method = asking.path, asking.method
        gradio = scope.get("app")
        if hooks := gradio_view.store_hooks(gradio):
            held, busy, drop = hooks
            ended: list[str] = []
            self.ledger.sweep(held, busy, ended.append)
            if ended:  # the app's end of each (its files deleted) off the event loop, which serves everyone
                threading.Thread(target=lambda: [drop(session) for session in ended], name="end-sessions", daemon=True).start()
        if auth.asks_password(gradio):
            if method == "POST" and path.rstrip("/") == "/login":
                return await self._login(scope, receive, send, asking)
            if not auth.public(method, path) and not auth.logged_in(gradio, asking.headers.get("cookie")):
                return await asgi.refuse(send, 401, auth.LOG_IN_FIRST)
        if _CLOSED.fullmatch(path):
            return await asgi.refuse(send, 404, NO_SUCH_ROUTE)
        if method in ("GET", "HEAD") and _PAGE.fullmatch(path):
            return await self._page(scope, receive, send, asking)
        if _FILE.match(path):
            return await self._file(scope, receive, send, asking)
        if method == "POST" and path.rstrip("/") == _UPLOAD:
            return await self._upload(scope, receive, send, asking)
        if route := calls.route_of(method, path):
            return await self._with_body(scope, receive, send, asking, route)
        if m := _HEARTBEAT.fullmatch(path):
            return await self._heartbeat(scope, receive, send, asking, m["session"])
        session = self._session_of_path(asking, scope)
        if session is not None and not await self._claim(send, session, asking, opens=False):
            return
        await self.app(scope, receive, asgi.with_headers(send))

    # -- requests --------------------------------------------------------------------------------

    def _asking(self, scope: Scope) -> _Asking:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        root = scope.get("root_path", "") or ""
        path = scope["path"][len(root) :] if root and scope["path"].startswith(root) else scope["path"]
        address = (scope.get("client") or ("unknown", 0))[0]
        if "x-forwarded-for" in headers and not self._warned_proxy and not _was_forwarded(scope, headers):
            self._warned_proxy = True
            log.warning(
                "requests come through a proxy at %s that is not trusted, so every client behind it counts as one "
                "(per-client limits and owner addresses): pass --trusted-proxies %s if it is yours", address, address,
            )
        token = policy.owner_token(headers.get("cookie"))
        https = scope.get("scheme") == "https" or headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"
        return _Asking(scope["method"], path or "/", client_key(address), identity(token, address), token, https, headers)

    def _session_of_path(self, asking: _Asking, scope: Scope) -> str | None:
        """The session a GET-style request names (in its path, its query, or through its event)."""
        path = asking.path
        if path.rstrip("/") == "/gradio_api/queue/data":
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [])
            return values[0] if values else ""
        if asking.method == "GET" and (m := _STREAM_OUT.fullmatch(path)):
            return m["session"]
        if asking.method == "POST" and (m := _STREAM_IN.fullmatch(path)):
            return gradio_view.event_session(scope.get("app"), m["event"]) or m["event"]
        if asking.method == "GET" and (m := _CALL_READ.fullmatch(path)):
            return gradio_view.event_session(scope.get("app"), m["event"]) or m["event"]
        return None

    async def _claim(self, send: Send, session: object, asking: _Asking, *, opens: bool) -> bool:
        """Whether the request may go on for `session`; if not, the refusal is sent."""
        outcome, why = "unknown", None
        if isinstance(session, str) and 0 < len(session) <= 256:
            outcome, why = self.ledger.claim(session, asking.who, asking.client, opens=opens)
        if outcome == MINE:
            return True
        if outcome == REFUSED:
            await asgi.refuse(send, 429, why or TOO_MANY_INVALID)
        else:
            await self._invalid(send, asking, 403 if outcome == THEIRS else 404, NOT_YOURS if outcome == THEIRS else NO_SUCH_SESSION)
        return False

    async def _invalid(self, send: Send, asking: _Asking, status: int, sentence: str) -> None:
        """Refuse an invalid call: it costs its client, and past the budget it is 429."""
        if self.ledger.invalid(asking.client):
            await asgi.refuse(send, status, sentence)
        else:
            await asgi.refuse(send, 429, TOO_MANY_INVALID)

    async def _heartbeat(self, scope: Scope, receive: Receive, send: Send, asking: _Asking, session: str) -> None:
        """A page's (or gradio_client's) heartbeat: it may open its session; when the last one ends, the session closes."""
        if not await self._claim(send, session, asking, opens=True):
            return
        self.ledger.heartbeat(session, opened=True)
        try:
            await self.app(scope, receive, asgi.with_headers(send))
        finally:
            self.ledger.heartbeat(session, opened=False)  # closed: its Gradio state is dropped a few seconds on (`Ledger.sweep`)

    async def _login(self, scope: Scope, receive: Receive, send: Send, asking: _Asking) -> None:
        wait = self.logins.attempt(asking.client)
        if wait:
            return await asgi.refuse(send, 429, auth.SLOW_DOWN.format(s=math.ceil(wait)))
        inner = asgi.with_headers(send)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.logins.succeeded(asking.client)
            await inner(message)

        await self.app(scope, receive, sending)

    async def _with_body(self, scope: Scope, receive: Receive, send: Send, asking: _Asking, route: str) -> None:
        body = await asgi.read_body(receive)
        if body is None:
            return await asgi.refuse(send, 413, "The request is too large.")
        blocks = gradio_view.blocks_of(scope.get("app"))
        call = calls.read(route, asking.path, body, blocks.fns if blocks is not None else {})
        if call.malformed:
            return await self._invalid(send, asking, 422, MALFORMED)
        if call.fn is None and route != calls.CANCEL:
            return await self._invalid(send, asking, 404, NO_SUCH_EVENT)
        if route == calls.DIRECT and getattr(call.fn, "queue", False):
            return await asgi.refuse(send, 404, QUEUED_ONLY)
        context = self._file_context(scope)
        if not all(self.files.may_fetch(files.resolved(p), asking.who, **context) for p in files.named_paths(call.data)):
            return await asgi.refuse(send, 404, NO_SUCH_FILE)
        capped = call.route in (calls.JOIN, calls.CALL, calls.CALL_V2) and getattr(call.fn, "concurrency_id", None) in self.settings.capped
        if capped and (pending := gradio_view.pending(scope.get("app"), asking.client, self.settings.capped) + self._joining[asking.client]) >= self.settings.max_pending:
            return await asgi.refuse(send, 429, TOO_MANY.format(n=pending))
        if route == calls.CANCEL:
            if not await self._claim(send, call.session, asking, opens=False):
                return
            owner = gradio_view.event_session(scope.get("app"), call.event_id)
            if owner is not None and owner != call.session:
                return await self._invalid(send, asking, 403, NOT_YOURS)
            if owner is None and not self.ledger.invalid(asking.client):  # an event that has ended, or never was
                return await asgi.refuse(send, 429, TOO_MANY_INVALID)
        elif call.session is not None and not await self._claim(send, call.session, asking, opens=True):
            return
        reserved = None
        if call.opens_own_session:
            reserved, why = self.ledger.reserve(asking.who, asking.client)
            if reserved is None:
                return await asgi.refuse(send, 429, why)
        self.unsent.sent(asking.client, files.named_paths(call.data))  # no longer counted as unsent
        sending = self._binding_call(send, reserved) if reserved is not None else asgi.with_headers(send)
        self._joining[asking.client] += capped  # between the cap's check and Gradio's answer
        try:
            await self.app(scope, asgi.replay(body, receive), sending)
        finally:
            if reserved is not None:
                self.ledger.named(reserved, None)  # no-op once the answer named it
            self._joining[asking.client] -= capped
            if self._joining[asking.client] <= 0:
                del self._joining[asking.client]

    def _binding_call(self, send: Send, reserved: str) -> Send:
        """For a REST `call/…` that opens its own session: the event id it answers with names the reserved place."""
        chunks: list[bytes] = []
        inner = asgi.with_headers(send)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        event = json.loads(b"".join(chunks)).get("event_id")
                    except (ValueError, AttributeError):
                        event = None
                    self.ledger.named(reserved, event if isinstance(event, str) and event else None)
            await inner(message)

        return sending

    # -- files ---------------------------------------------------------------------------------------

    async def _file(self, scope: Scope, receive: Receive, send: Send, asking: _Asking) -> None:
        if not self.files.may_fetch(files.requested(asking.path), asking.who, **self._file_context(scope)):
            return await asgi.not_found(send)
        await self.app(scope, receive, asgi.with_headers(send, policy.FILE_POLICY))

    def _file_context(self, scope: Scope) -> dict[str, Any]:
        """What the file rules read of Gradio: the Blocks' config (the examples) and the upload folder."""
        return {"config": getattr(gradio_view.blocks_of(scope.get("app")), "config", None), "upload_dir": getattr(scope.get("app"), "uploaded_file_dir", None)}

    async def _upload(self, scope: Scope, receive: Receive, send: Send, asking: _Asking) -> None:
        """Gradio's upload route, within the client's (and everyone's) bytes not yet sent (`upload_bytes`)."""
        length = upload_bytes.content_length(asking.headers)
        if length is None:  # browsers and gradio_client (httpx) always send it
            return await asgi.refuse(send, 411, upload_bytes.NO_LENGTH)
        ticket, why = self.unsent.admit(asking.client, length)
        if ticket is None:
            return await asgi.refuse(send, 429 if why == upload_bytes.OVER_TOTAL else 413, why)
        paths: list[str] = []
        try:
            await self.app(scope, receive, self._recording_uploads(send, asking, paths))
        finally:
            self.unsent.settle(ticket, paths)

    def _recording_uploads(self, send: Send, asking: _Asking, recorded: list[str]) -> Send:
        """Record who uploaded the files Gradio's upload route answers with, before the answer ends."""
        chunks: list[bytes] = []
        status, size = 0, 0
        inner = asgi.with_headers(send)

        async def sending(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                body = message.get("body", b"")
                size += len(body)
                chunks.append(body if size <= MAX_UPLOAD_ANSWER else b"")
                if not message.get("more_body") and size <= MAX_UPLOAD_ANSWER:
                    try:
                        paths = json.loads(b"".join(chunks))
                    except ValueError:
                        paths = []
                    for path in paths if isinstance(paths, list) else []:
                        if isinstance(path, str):
                            self.files.uploads.add(path, asking.who)
                            recorded.append(path)
            await inner(message)

        return sending

    # -- the page --------------------------------------------------------------------------------

    async def _page(self, scope: Scope, receive: Receive, send: Send, asking: _Asking) -> None:
        extra: list[tuple[bytes, bytes]] = []
        if asking.token is None:
            extra.append((b"set-cookie", policy.set_cookie(policy.new_token(), https=asking.https).encode()))
        nonce = policy.new_nonce()
        start: Message | None = None
        chunks: list[bytes] = []

        async def sending(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            body = b"".join(chunks)
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                body = policy.add_nonce(body, nonce)
                csp = policy.page_policy(nonce, share_cdn=self.settings.share_cdn, framed_by=self.settings.framed_by)
                headers.append((b"content-security-policy", csp.encode()))
            headers += extra + asgi.common()
            if asking.method != "HEAD" or body:
                headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, sending)


def _was_forwarded(scope: Scope, headers: dict[str, str]) -> bool:
    """Whether uvicorn took the client from X-Forwarded-For (it trusted the proxy)."""
    client = (scope.get("client") or ("",))[0]
    return client in [h.strip().split(":")[0].strip("[]") for h in headers.get("x-forwarded-for", "").split(",")]
