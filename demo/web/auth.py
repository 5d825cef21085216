"""`--auth`: every route behind the login but the login page and static files; wrong passwords slowed.

Gradio 6.31 checks its login (`Depends(login_check)`) on most routes, not on `cancel`,
`heartbeat`, `stream`, `reset`, `startup-events`, `user`, `token` or `app_id`
(gradio/routes.py), and answers wrong passwords as fast as they come. When the app asks for a
password (`app.auth`, set by `launch(auth=…)`), the guard lets through without a login only
what the login page needs (`public`); anything else is answered 401 with one sentence. Logged
in means Gradio's own cookie (`access-token-{cookie_id}`, or its `-unsecure-` twin) holds a
token Gradio handed out (`app.tokens`), read as Starlette reads cookies.

`Logins` slows guessing, per client: `free` attempts at once, then each further one waits twice as
long as the one before (2 s after the `free`-th, then 4 s, 8 s, … at most `longest`); an attempt while waiting is answered
429 with one sentence, whatever the password. Attempts count when they start, so parallel ones
cannot slip through before the first answer; a success forgets the client's failures, and
they are forgotten too after `forget_after` seconds without an attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import cookie_parser

LOG_IN_FIRST = "Log in first: this app asks for a user name and password."
SLOW_DOWN = "Too many wrong passwords from your address; try again in {s} seconds."

_STATIC = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
_PUBLIC = {"/", "/login", "/login/", "/logout", "/favicon.ico", "/theme.css", "/gradio_api/theme.css", "/manifest.json", "/robots.txt",
           "/gradio_api/startup-events"}  # Gradio's launch calls it, once, with no login: it runs the startup events only once


def asks_password(app: Any) -> bool:
    """Whether Gradio's app asks for a login (`launch(auth=…)` or an auth dependency)."""
    return getattr(app, "auth", None) is not None or getattr(app, "auth_dependency", None) is not None


def public(method: str, path: str) -> bool:
    """What the login page needs: itself, the login and logout routes, static files."""
    if path == "/login" or path == "/login/":
        return method == "POST"
    return method in ("GET", "HEAD") and (path in _PUBLIC or path.startswith(_STATIC))


def logged_in(app: Any, cookie_header: str | None) -> bool:
    """Whether the request's cookies hold a token Gradio's login handed out."""
    if getattr(app, "auth_dependency", None) is not None:
        return True  # Gradio asks the app's own dependency, on the routes it checks: not ours to judge
    cookies = cookie_parser(cookie_header or "")
    tokens = getattr(app, "tokens", {}) or {}
    cookie_id = getattr(app, "cookie_id", "")
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        token = cookies.get(name)
        if token and token in tokens:
            return True
    return False


class Logins:
    """Login attempts per client, and how long each must wait before the next."""

    def __init__(self, free: int = 5, first_wait: float = 2.0, longest: float = 300.0, forget_after: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.first_wait, self.longest, self.forget_after = free, first_wait, longest, forget_after
        self.clock = clock
        self._clients: dict[str, tuple[int, float, float]] = {}  # client -> (failures, not before, last attempt)
        self._lock = threading.Lock()

    def attempt(self, client: str) -> float:
        """Start an attempt: 0 if it may go on (it counts as a failure until `succeeded`), else the seconds to wait."""
        with self._lock:
            now = self.clock()
            self._forget_old(now)
            failures, not_before, _ = self._clients.get(client, (0, 0.0, now))
            if now < not_before:
                return not_before - now
            failures += 1
            wait = 0.0 if failures < self.free else min(self.longest, self.first_wait * 2 ** (failures - self.free))
            self._clients[client] = (failures, now + wait, now)
            return 0.0

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _forget_old(self, now: float) -> None:
        for client in [c for c, (*_, last) in self._clients.items() if now - last > self.forget_after]:
            del self._clients[client]
