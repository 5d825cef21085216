"""The guard's ASGI plumbing: reading a body, replaying it, answering with one sentence, adding headers.

Pure ASGI (no Starlette, no Gradio); the guard (`demo/web/guard.py`) uses it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from demo.web import policy

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 8 * 2**20  # a join's JSON: the message text and settings, never file contents


def common() -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in policy.COMMON_HEADERS.items()]


def with_headers(send: Send, csp: str | None = None) -> Send:
    extra = common() + ([(b"content-security-policy", csp.encode())] if csp else [])

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


async def refuse(send: Send, status: int, sentence: str) -> None:
    body = json.dumps({"detail": sentence, "error": sentence}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *common()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def not_found(send: Send) -> None:
    """The answer of a route that does not exist (FastAPI's own), so a refused file is not told from a missing one."""
    body = b'{"detail":"Not Found"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *common()]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def read_body(receive: Receive) -> bytes | None:
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


def replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replaying() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying
