"""Queue and launch the Blocks behind the guard: the one way `app.py` and the tests serve the app.

- `demo.queue(api_open=False)`: Gradio's direct `run/` and `api/` routes refuse queued events
  (the guard refuses them too), so the model and file decoding are reached through the queue only;
- every event that does not go through the queue is checked to take no input but an Examples
  table or a State (whose value is the server's, never the client's), or to run no Python at all
  (a `js=` event: Gradio refuses to call it) (`queue_only`): page glue, never a file or the model;
- the guard (`demo/web/guard.py`) as ASGI middleware of Gradio's FastAPI app, through
  `app_kwargs={"middleware": …}` (Starlette builds it into the app's stack when it starts);
- Gradio's session store (`state_session_capacity`) larger than the sessions the guard lets be
  open at once (`SessionLimits.total`), so the sessions Gradio forgets first are ended ones;
- uvicorn told whose `X-Forwarded-For` to believe (`FORWARDED_ALLOW_IPS`, read when `launch`
  starts it): the guard's `trusted_proxies`, and nobody when there are none;
- server-side rendering off, so this Python server serves the page (and its policy) itself;
  Gradio's run history off, so no conversation is kept in a browser's storage; no footer.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from demo.web import proxies
from demo.web.guard import Guard, GuardSettings

SPARE_SESSIONS = 1000  # Gradio's store holds this many more than the guard lets be open (when not told its capacity)

#: gr.Examples: the index of one of our examples; gr.State: read from the session, not the request.
_GLUE_INPUTS = (gr.Dataset, gr.State)


def queue_only(demo: gr.Blocks) -> None:
    """Raise ValueError naming any event that skips the queue yet takes an input that could carry a file."""
    for fn in demo.fns.values():
        if not fn.queue and fn.fn is not None and any(not isinstance(block, _GLUE_INPUTS) for block in fn.inputs):
            names = ", ".join(type(block).__name__ for block in fn.inputs)
            raise ValueError(f"event {fn.api_name or fn.name} skips the queue but takes {names}: queue it")


def fit_sessions(guard: GuardSettings, capacity: int | None) -> tuple[GuardSettings, int]:
    """The guard's settings and Gradio's session capacity, the open sessions held below that capacity
    by a spare tenth (`capacity` given: `state_session_capacity` passed to `launch`)."""
    total = guard.sessions.total
    if capacity is None:
        return guard, total + SPARE_SESSIONS
    fitted = min(total, capacity - max(2, capacity // 10))
    if fitted < 1:
        raise ValueError(f"state_session_capacity {capacity} leaves no room for sessions")
    return dataclasses.replace(guard, sessions=dataclasses.replace(guard.sessions, total=fitted)), capacity


def launch(demo: gr.Blocks, guard: GuardSettings | None = None, *, max_queue: int | None = 64, **launch_kwargs: Any):
    """`demo.launch(**launch_kwargs)` behind the guard; returns what `launch` returns."""
    queue_only(demo)
    demo.queue(api_open=False, max_size=max_queue)
    guard, capacity = fit_sessions(guard or GuardSettings(), launch_kwargs.pop("state_session_capacity", None))
    os.environ["FORWARDED_ALLOW_IPS"] = proxies.for_uvicorn(guard.trusted_proxies)
    launch_kwargs["state_session_capacity"] = capacity
    middleware = [Middleware(Guard, settings=guard)]
    launch_kwargs.setdefault("footer_links", [])  # the page hid its footer already; now it holds no link out either
    return demo.launch(app_kwargs={"middleware": middleware}, ssr_mode=False, run_history=False, **launch_kwargs)
