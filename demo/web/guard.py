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
- caps the requests each client may have waiting or running in the capped concurrency groups
  (the model's, the files'): one over is answered 429 with one sentence, which Gradio's page
  shows as an error notice (the message stays in the textbox);
- sets the owner cookie on the page and on `/config` (gradio_client keeps cookies from there),
  the page's Content-Security-Policy with a fresh nonce written into its scripts, a policy
  that runs nothing on served files, `nosniff` and `Referrer-Policy` on everything.

A client is its address as uvicorn reports it: `X-Forwarded-For` counts only from the
proxies in uvicorn's `FORWARDED_ALLOW_IPS` (app.py `--trusted-proxies`), as for Gradio's own
`request.client`. What it reads of Gradio: the queue's events (`blocks._queue`) and the
functions' `queue` and `concurrency_id`.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from demo.web import files, policy
from demo.web.owners import Owners, identity

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 8 * 2**20  # a join's JSON: the message text and settings, never file contents
NOT_YOURS = "This conversation belongs to another browser: reload the page to start your own."
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
_DIRECT = re.compile(r"/gradio_api/(?:run|api)/(?P<api>[^/]+)/?")
_CALL = re.compile(r"/gradio_api/call/(?:v2/)?(?P<api>[^/]+)/?")
_FILE = re.compile(r"/gradio_api/file[=/]")
_UPLOAD = "/gradio_api/upload"
MAX_UPLOAD_ANSWER = 4 * 2**20  # the JSON list of paths Gradio's upload route answers with (at most 1000 files)


@dataclass(frozen=True)
class GuardSettings:
    """`max_pending` requests per client in the `capped` concurrency groups; `share_cdn` for --share."""

    max_pending: int = 4
    capped: frozenset[str] = frozenset({"model", "files"})
    share_cdn: str | None = None
    owners_capacity: int = 100_000

    def __post_init__(self) -> None:
        if self.max_pending < 1:
            raise ValueError(f"max_pending must be positive, got {self.max_pending}")


@dataclass
class _Asking:
    """What the guard knows of one request."""

    method: str
    path: str
    client: str
    who: str
    token: str | None
    https: bool
    headers: dict[str, str] = field(default_factory=dict)


class Guard:
    """The middleware: `Guard(app, settings)`, or `Middleware(Guard, settings=…)` in FastAPI's list."""

    def __init__(self, app: Callable, settings: GuardSettings | None = None) -> None:
        self.app = app
        self.settings = settings or GuardSettings()
        self.owners = Owners(self.settings.owners_capacity)
        self.files = files.FileRules(self.owners, files.Uploads(self.settings.owners_capacity))
        self._joining: Counter[str] = Counter()  # joins between the cap's check and Gradio's answer
        self._warned_proxy = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asking = self._asking(scope)
        path, method = asking.path, asking.method
        if _CLOSED.fullmatch(path):
            return await _refuse(send, 404, NO_SUCH_ROUTE)
        if method in ("GET", "HEAD") and _PAGE.fullmatch(path):
            return await self._page(scope, receive, send, asking)
        if _FILE.match(path):
            return await self._file(scope, receive, send, asking)
        if method == "POST" and path.rstrip("/") == _UPLOAD:
            return await self.app(scope, receive, self._recording_uploads(send, asking))
        if method == "POST" and (_DIRECT.fullmatch(path) or _CALL.fullmatch(path) or path.rstrip("/") in ("/gradio_api/queue/join", "/gradio_api/cancel")):
            return await self._with_body(scope, receive, send, asking)
        session = self._session_of_path(asking, scope)
        if session is not None and not self._claim(session, asking):
            return await _refuse(send, 403, NOT_YOURS)
        await self.app(scope, receive, _with_headers(send))

    # -- requests --------------------------------------------------------------------------------

    def _asking(self, scope: Scope) -> _Asking:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        root = scope.get("root_path", "") or ""
        path = scope["path"][len(root) :] if root and scope["path"].startswith(root) else scope["path"]
        client = (scope.get("client") or ("unknown", 0))[0]
        if "x-forwarded-for" in headers and not self._warned_proxy and not _was_forwarded(scope, headers):
            self._warned_proxy = True
            log.warning(
                "requests come through a proxy at %s that is not trusted, so every client behind it counts as one "
                "(per-client limits and owner addresses): pass --trusted-proxies %s if it is yours", client, client,
            )
        token = policy.owner_token(headers.get("cookie"))
        https = scope.get("scheme") == "https" or headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"
        return _Asking(scope["method"], path or "/", client, identity(token, client), token, https, headers)

    def _session_of_path(self, asking: _Asking, scope: Scope) -> str | None:
        """The session a GET-style request names (in its path, its query, or through its event)."""
        path = asking.path
        if m := _HEARTBEAT.fullmatch(path):
            return m["session"]
        if path.rstrip("/") == "/gradio_api/queue/data":
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [])
            return values[0] if values else ""
        if asking.method == "GET" and (m := _STREAM_OUT.fullmatch(path)):
            return m["session"]
        if asking.method == "POST" and (m := _STREAM_IN.fullmatch(path)):
            return self._event_session(scope, m["event"]) or m["event"]
        if asking.method == "GET" and (m := _CALL_READ.fullmatch(path)):
            return self._event_session(scope, m["event"]) or m["event"]
        return None

    def _claim(self, session: str, asking: _Asking) -> bool:
        if not session or len(session) > 256:
            return False
        return self.owners.claim(session, asking.who)

    async def _with_body(self, scope: Scope, receive: Receive, send: Send, asking: _Asking) -> None:
        body = await _read_body(receive)
        if body is None:
            return await _refuse(send, 413, "The request is too large.")
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        session = data.get("session_hash")
        path = asking.path
        fn = self._fn(scope, data.get("fn_index"), _api_name(path))
        if _DIRECT.fullmatch(path) and fn is not None and getattr(fn, "queue", False):
            return await _refuse(send, 404, QUEUED_ONLY)
        if session is not None:
            if not isinstance(session, str) or not self._claim(session, asking):
                return await _refuse(send, 403, NOT_YOURS)
        if path.rstrip("/") == "/gradio_api/cancel":
            owner = self._event_session(scope, data.get("event_id"))
            if owner is not None and owner != session:
                return await _refuse(send, 403, NOT_YOURS)
        context = self._file_context(scope)
        if not all(self.files.may_fetch(files.resolved(p), asking.who, **context) for p in files.named_paths(data)):
            return await _refuse(send, 404, NO_SUCH_FILE)
        replay = _replay(body, receive)
        is_join = path.rstrip("/") == "/gradio_api/queue/join" or bool(_CALL.fullmatch(path))
        if not (is_join and fn is not None and getattr(fn, "concurrency_id", None) in self.settings.capped):
            return await self.app(scope, replay, self._binding_call(send, asking) if session is None else _with_headers(send))
        pending = self._pending(scope, asking.client) + self._joining[asking.client]
        if pending >= self.settings.max_pending:
            return await _refuse(send, 429, TOO_MANY.format(n=pending))
        self._joining[asking.client] += 1
        try:
            await self.app(scope, replay, self._binding_call(send, asking) if session is None else _with_headers(send))
        finally:
            self._joining[asking.client] -= 1
            if self._joining[asking.client] <= 0:
                del self._joining[asking.client]

    def _binding_call(self, send: Send, asking: _Asking) -> Send:
        """For a REST `call/…` with no session: bind the event id it answers with (its session)."""
        chunks: list[bytes] = []
        inner = _with_headers(send)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        event = json.loads(b"".join(chunks)).get("event_id")
                    except (ValueError, AttributeError):
                        event = None
                    if isinstance(event, str):
                        self.owners.claim(event, asking.who)
            await inner(message)

        return sending

    # -- files ---------------------------------------------------------------------------------------

    async def _file(self, scope: Scope, receive: Receive, send: Send, asking: _Asking) -> None:
        if not self.files.may_fetch(files.requested(asking.path), asking.who, **self._file_context(scope)):
            return await _not_found(send)
        await self.app(scope, receive, _with_headers(send, policy.FILE_POLICY))

    def _file_context(self, scope: Scope) -> dict[str, Any]:
        """What the file rules read of Gradio: the Blocks' config (the examples) and the upload folder."""
        return {"config": getattr(self._blocks(scope), "config", None), "upload_dir": getattr(scope.get("app"), "uploaded_file_dir", None)}

    def _recording_uploads(self, send: Send, asking: _Asking) -> Send:
        """Record who uploaded the files Gradio's upload route answers with, before the answer ends."""
        chunks: list[bytes] = []
        status, size = 0, 0
        inner = _with_headers(send)

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
                headers.append((b"content-security-policy", policy.page_policy(nonce, share_cdn=self.settings.share_cdn).encode()))
            headers += extra + _common()
            if asking.method != "HEAD" or body:
                headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, sending)

    # -- Gradio's queue --------------------------------------------------------------------------

    @staticmethod
    def _blocks(scope: Scope):
        app = scope.get("app")
        return app.get_blocks() if app is not None and hasattr(app, "get_blocks") else None

    def _fn(self, scope: Scope, fn_index: object, api_name: str | None):
        blocks = self._blocks(scope)
        if blocks is None:
            return None
        if isinstance(fn_index, int) and not isinstance(fn_index, bool):
            return blocks.fns.get(fn_index)
        if api_name:
            return next((fn for fn in blocks.fns.values() if fn.api_name == api_name), None)
        return None

    def _event_session(self, scope: Scope, event_id: object) -> str | None:
        """The session of a queued or running event (None once it has ended)."""
        blocks = self._blocks(scope)
        if blocks is None or not isinstance(event_id, str) or getattr(blocks, "_queue", None) is None:
            return None
        queue = blocks._queue
        event = queue.event_ids_to_events.get(event_id)
        if event is not None:
            return event.session_hash
        return next((s for s, ids in list(queue.pending_event_ids_session.items()) if event_id in ids), None)

    def _pending(self, scope: Scope, client: str) -> int:
        """Events of `client` waiting or running in the capped concurrency groups."""
        blocks = self._blocks(scope)
        if blocks is None or getattr(blocks, "_queue", None) is None:
            return 0
        events = list(blocks._queue.event_ids_to_events.values())
        return sum(1 for e in events if e.fn.concurrency_id in self.settings.capped and _client_of(e.request) == client)


def _client_of(request: object) -> str | None:
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def _was_forwarded(scope: Scope, headers: dict[str, str]) -> bool:
    """Whether uvicorn took the client from X-Forwarded-For (it trusted the proxy)."""
    client = (scope.get("client") or ("",))[0]
    return client in [h.strip().split(":")[0].strip("[]") for h in headers.get("x-forwarded-for", "").split(",")]


def _api_name(path: str) -> str | None:
    m = _DIRECT.fullmatch(path) or _CALL.fullmatch(path)
    return m["api"] if m else None


def _common() -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in policy.COMMON_HEADERS.items()]


def _with_headers(send: Send, csp: str | None = None) -> Send:
    extra = _common() + ([(b"content-security-policy", csp.encode())] if csp else [])

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


async def _refuse(send: Send, status: int, sentence: str) -> None:
    body = json.dumps({"detail": sentence, "error": sentence}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *_common()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _not_found(send: Send) -> None:
    """The answer of a route that does not exist (FastAPI's own), so a refused file is not told from a missing one."""
    body = b'{"detail":"Not Found"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *_common()]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when it is over MAX_BODY."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replaying() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying
