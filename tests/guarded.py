"""The app behind the guard on a scripted engine, for the tests that drive it over HTTP."""

from __future__ import annotations

import httpx

from demo.engines.slot import EngineSlot
from demo.page.handlers import ChatHandlers
from tests.fakes import ScriptedEngine

SLOW = ["word "] * 150  # 150 pieces, 0.02 s apart: 3 s


def launch(*, guard: dict | None = None, max_answer_tokens: int = 64, **launch_kwargs) -> dict:
    from demo.page.ui import build_ui
    from demo.web import serve
    from demo.web.guard import GuardSettings

    engine = ScriptedEngine([], delay=0.02)
    slot = EngineSlot("scripted")
    slot.fill(engine)
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    demo = build_ui(handlers, concurrency=1, max_new_tokens=32, max_answer_tokens=max_answer_tokens)
    settings = GuardSettings(**(guard or {}))
    launch_kwargs.setdefault("max_queue", None)
    launch_kwargs.setdefault("server_port", None)
    _, url, _ = serve.launch(demo, settings, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs)
    fns = {fn.api_name: index for index, fn in demo.fns.items()}
    return {"url": url, "demo": demo, "engine": engine, "handlers": handlers, "fns": fns, "guard": find_guard(demo)}


def find_guard(demo):
    """The Guard instance in the launched app's middleware stack (Starlette builds it on the first request)."""
    from demo.web.guard import Guard

    httpx.get(demo.local_url, timeout=10)
    layer = demo.server_app.middleware_stack
    while layer is not None and not isinstance(layer, Guard):
        layer = getattr(layer, "app", None)
    return layer


def store(app: dict) -> dict:
    """Gradio's session store: session hash -> its state (gradio/state_holder.py)."""
    return app["demo"].server_app.state_holder.session_data


def chat_data(text: str, max_new_tokens: int = 32) -> list:
    return [{"text": text, "files": []}, None, max_new_tokens, 0.0, 0.9, "", None, None, 2.0, 64, False, True]


def join(http: httpx.Client, app: dict, api: str, data: list, session: str, **kwargs) -> httpx.Response:
    body = {"data": data, "fn_index": app["fns"][api], "session_hash": session, "event_data": None, "trigger_id": None}
    return http.post(app["url"] + "gradio_api/queue/join", json=body, **kwargs)


def events_of(app: dict, session: str) -> list[str]:
    queue = app["demo"]._queue
    return [event_id for event_id, event in list(queue.event_ids_to_events.items()) if event.session_hash == session]
