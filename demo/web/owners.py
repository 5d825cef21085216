"""Which browser each session belongs to.

A Gradio session is named by a hash its page makes up and sends in URLs and bodies; Gradio
trusts whoever sends it. Here the first request that may open a session (`demo/web/clients.py`
says which may, and whether the sender may open one more) binds it to its sender, and later
requests must come from the same sender: the owner cookie when the browser keeps it, else (a
browser that refuses the cookie, such as Safari in a Space's frame) the client's address. A
session bound to a cookie never accepts a request without that cookie.

A binding lasts as long as its session: nobody else's traffic can push it out (there is no
capacity); `clients.Ledger` forgets it once the session has ended (its tab closed, or idle
for the app's idle time) and Gradio holds nothing of it any more. Pure and thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass


def identity(token: str | None, address: str) -> str:
    """Who is asking: their owner token, or else their address."""
    return f"cookie:{token}" if token else f"address:{address}"


@dataclass
class Binding:
    """One session's owner, the client its cost is charged to, and what is known of its life."""

    owner: str
    client: str
    seen: float  # the last request that named it (a clock's seconds)
    heartbeats: int = 0  # open heartbeat connections (the page's tab, gradio_client)
    attended: bool = False  # it has had a heartbeat connection: its end is announced when it closes
    live: bool = False  # counted against its client's and the app's session caps
    closed: float | None = None  # when its last heartbeat ended (the tab closed)


class Owners:
    """session -> Binding, in the order the sessions were last seen."""

    def __init__(self) -> None:
        self._bindings: OrderedDict[str, Binding] = OrderedDict()
        self._lock = threading.RLock()

    def bind(self, session: str, owner: str, client: str, now: float) -> Binding:
        with self._lock:
            binding = self._bindings[session] = Binding(owner, client, now)
            self._bindings.move_to_end(session)
            return binding

    def get(self, session: str) -> Binding | None:
        with self._lock:
            return self._bindings.get(session)

    def seen(self, session: str, now: float) -> None:
        with self._lock:
            binding = self._bindings.get(session)
            if binding is not None:
                binding.seen = now
                self._bindings.move_to_end(session)

    def owner(self, session: str) -> str | None:
        with self._lock:
            binding = self._bindings.get(session)
            return binding.owner if binding is not None else None

    def rename(self, old: str, new: str, now: float) -> None:
        with self._lock:
            binding = self._bindings.pop(old, None)
            if binding is not None:
                binding.seen = now
                self._bindings[new] = binding

    def forget(self, session: str) -> Binding | None:
        with self._lock:
            return self._bindings.pop(session, None)

    def unseen_since(self, moment: float) -> list[str]:
        """The sessions last seen before `moment`, oldest first."""
        with self._lock:
            found = []
            for session, binding in self._bindings.items():
                if binding.seen >= moment:
                    break
                found.append(session)
            return found

    def __len__(self) -> int:
        return len(self._bindings)

    def __contains__(self, session: str) -> bool:
        return session in self._bindings
