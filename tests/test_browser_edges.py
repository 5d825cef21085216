"""The edges in Chromium (issue 26): another site cannot frame the page; the login page works behind `--auth`.

A page served from another origin (a local server on another port) embeds the app in an
iframe: the browser must refuse to show it (the page's `frame-ancestors 'self'`). With a
password, the login page loads everything it needs without a login, and logging in opens the app.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.guarded import launch
from tests.helpers import free_port

pytestmark = pytest.mark.browser


def embedding_site(app_url: str):
    """A server on another port whose page frames `app_url`."""
    page = f'<!doctype html><title>elsewhere</title><iframe id="victim" src="{app_url}" width="900" height="700"></iframe>'.encode()

    class Embed(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Embed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_another_site_cannot_frame_the_page(browser, monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    app = launch(guard={})
    site = embedding_site(app["url"])
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{site.server_port}/")
        page.wait_for_timeout(3000)
        frame = page.frame_locator("#victim")
        assert frame.get_by_text("is ready").count() == 0  # the app never rendered inside the frame
        app_frames = [f for f in page.frames if f.url.startswith(app["url"]) and f != page.main_frame]
        assert not any(f.evaluate("() => !!document.querySelector('#chatbot')") for f in app_frames if not f.is_detached())
    finally:
        page.close()
        site.shutdown()
        app["demo"].close()


def test_the_login_page_works_behind_auth(browser):
    app = launch(guard={}, auth=("ann", "secret words"))
    page = browser.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page.goto(app["url"])
        page.get_by_label("username").fill("ann")
        page.get_by_label("password").fill("secret words")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("is ready").wait_for(timeout=20_000)
        assert not [f for f in failed if "/login" not in f], failed  # nothing the login page or the app needed was refused
    finally:
        page.close()
        app["demo"].close()
