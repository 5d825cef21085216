"""What the guard reads of Gradio 6.31 beyond a request, and the one thing it changes there.

Reads: the Blocks (`app.get_blocks()`), the queue's events and the session each belongs to
(`blocks._queue.event_ids_to_events`, `pending_event_ids_session`: gradio/queueing.py), and the
session store (`app.state_holder.session_data`: gradio/state_holder.py). Changes: drops a closed
session from that store (`drop`), which Gradio would keep an hour (`SessionState.STATE_TTL_WHEN_CLOSED`)
although the app's unload event has ended it, at about 170 KB a session; and ends an unattended one
(no heartbeat ever: nothing runs an unload for it) by Gradio's own path first, `delete_state`, which
calls the states' `delete_callback` (the app's `ChatHandlers.expire`: its files are deleted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from demo.web.clients import client_key


def blocks_of(app: Any):
    """The launched Blocks of Gradio's app (`scope["app"]`), or None."""
    return app.get_blocks() if app is not None and hasattr(app, "get_blocks") else None


def event_session(app: Any, event_id: object) -> str | None:
    """The session of a queued or running event (None once it has ended)."""
    blocks = blocks_of(app)
    if blocks is None or not isinstance(event_id, str) or getattr(blocks, "_queue", None) is None:
        return None
    queue = blocks._queue
    event = queue.event_ids_to_events.get(event_id)
    if event is not None:
        return event.session_hash
    return next((s for s, ids in list(queue.pending_event_ids_session.items()) if event_id in ids), None)


def pending(app: Any, client: str, groups: frozenset[str]) -> int:
    """Events of `client` (a `client_key`) waiting or running in the concurrency `groups`."""
    blocks = blocks_of(app)
    if blocks is None or getattr(blocks, "_queue", None) is None:
        return 0
    events = list(blocks._queue.event_ids_to_events.values())
    return sum(1 for e in events if e.fn.concurrency_id in groups and client_key(_host(e.request)) == client)


def store_hooks(app: Any) -> tuple[Callable[[str], bool], Callable[[str], bool], Callable[[str], None]] | None:
    """(held, busy, drop) for `clients.Ledger.sweep`: whether Gradio's store holds a session, whether
    events of it are queued or running, and dropping it from the store; None without a launched app."""
    store = getattr(app, "state_holder", None)
    if store is None or not hasattr(store, "session_data"):
        return None
    queue = getattr(blocks_of(app), "_queue", None)
    events = getattr(queue, "event_ids_to_events", {})

    def busy(session: str) -> bool:  # queued or running: an answer nobody reads stays in `pending_event_ids_session`
        return any(e.session_hash == session for e in list(events.values()))

    def drop(session: str) -> None:
        store.delete_state(session)  # the states' delete callbacks; a no-op for a session the app ended already
        with store.lock:
            store.session_data.pop(session, None)
            store.time_last_used.pop(session, None)
        if queue is not None:  # what an unread stream left (messages, finished event ids)
            queue.pending_messages_per_session.pop(session, None)
            queue.pending_event_ids_session.pop(session, None)

    return (lambda s: s in store.session_data), busy, drop


def _host(request: object) -> str:
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or ""
