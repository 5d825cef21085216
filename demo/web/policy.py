"""The browser-side policy of the page: its Content-Security-Policy and the owner cookie.

Pure: strings and small parsers, no ASGI and no Gradio. `demo/web/guard.py` applies them.

The page policy lets the browser load scripts, styles, fonts, images, media and connections
from the app's own origin only (plus `data:`/`blob:` images and media, which Gradio's upload
previews use), and no frame, object or form target anywhere; only the app itself (and, on a
Space, the Space's page on huggingface.co) may show it in a frame (`frame-ancestors`), so no
other site can frame it to trick a click. Gradio 6.31's page needs inline
styles (Svelte sets them) and four inline scripts (its config): scripts run only with the
nonce the guard writes into the page's own `<script>` tags, and what those load
(`'strict-dynamic'`). `'unsafe-eval'` is there because Gradio compiles the page's own code from
strings: every event's `js=` and an HTML component's `js_on_load` (demo/page/page.js, the inspector)
go through `new Function` (6.31's frontend), and without it the page does not even render. The
strings it compiles are the app's own, from the server's config; text a person or the model
writes never reaches them (demo/views/markup.py makes it inert, and no script element can be added
without the nonce), so the nonce still decides what runs. Files served from `/gradio_api/file=` get a policy of their own that runs
nothing, so an uploaded SVG or HTML opened in a tab is inert too.
"""

from __future__ import annotations

import os
import re
import secrets

COOKIE = "qwen_chat_owner"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")

#: Where a Space's page is: https://huggingface.co/spaces/<user>/<app> embeds the app (https://*.hf.space)
#: in an iframe (hub-docs: docs/hub/spaces-handle-url-parameters.md, spaces-cookie-limitations.md).
SPACES_EMBEDDER = "https://huggingface.co"

#: With `--share` the page loads Gradio's frontend from this CDN (gradio/templates/frontend/share.html).
SHARE_CDN = "https://gradio.s3-us-west-2.amazonaws.com"


def frame_ancestors(environ: dict | None = None) -> tuple[str, ...]:
    """Who may show the page in a frame: the app itself, and on a Space (`SPACE_ID` set) the Space's page."""
    environ = os.environ if environ is None else environ
    return ("'self'", SPACES_EMBEDDER) if environ.get("SPACE_ID") else ("'self'",)


def page_policy(nonce: str, *, share_cdn: str | None = None, framed_by: tuple[str, ...] = ("'self'",)) -> str:
    """The Content-Security-Policy of the HTML page (`nonce` is this response's; `framed_by`: `frame_ancestors`)."""
    cdn = f" {share_cdn}" if share_cdn else ""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'nonce-{nonce}' 'strict-dynamic' 'unsafe-eval' 'self'{cdn}",
            f"style-src 'self' 'unsafe-inline'{cdn}",
            "img-src 'self' data: blob:",
            "media-src 'self' data: blob:",
            f"font-src 'self' data:{cdn}",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "frame-src 'none'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            f"frame-ancestors {' '.join(framed_by)}",
        ]
    )


#: For files the app serves (uploads, pictures, exports): shown as images or media, never run.
FILE_POLICY = "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; sandbox"

#: On every response.
COMMON_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "same-origin"}


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def new_token() -> str:
    """A fresh owner token: 256 random bits."""
    return secrets.token_urlsafe(32)


def owner_token(cookie_header: str | None) -> str | None:
    """The owner token in a Cookie header, if it holds a well-formed one."""
    for part in (cookie_header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and _TOKEN.fullmatch(value):
            return value
    return None


def set_cookie(token: str, *, https: bool) -> str:
    """The Set-Cookie value for `token`: HttpOnly, for the whole site, never sent cross-site.

    Over https it is `SameSite=None; Secure; Partitioned`, so that a Space embedded in
    huggingface.co (a cross-site frame) keeps it, in a jar of that embedding only; over http
    (a local or LAN app) it is `SameSite=Strict`.
    """
    same_site = "SameSite=None; Secure; Partitioned" if https else "SameSite=Strict"
    return f"{COOKIE}={token}; Path=/; HttpOnly; {same_site}"


def add_nonce(page: bytes, nonce: str) -> bytes:
    """`page` with `nonce` on each of its `<script` tags (Gradio's page holds no user text)."""
    return re.sub(rb"<script(?=[\s>])", b'<script nonce="' + nonce.encode() + b'"', page)
