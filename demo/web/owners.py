"""Which browser each session belongs to.

A Gradio session is named by a hash its page makes up and sends in URLs and bodies; Gradio
trusts whoever sends it. Here the first request that names a session binds it to its sender,
and later requests must come from the same sender: the owner cookie when the browser keeps
it, else (a browser that refuses the cookie, such as Safari in a Space's frame) the client's
address. A session bound to a cookie never accepts a request without that cookie.

Bounded: at most `capacity` sessions are remembered, the least recently used forgotten first
(a forgotten session is bound again by its next request). Pure and thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


def identity(token: str | None, address: str) -> str:
    """Who is asking: their owner token, or else their address."""
    return f"cookie:{token}" if token else f"address:{address}"


class Owners:
    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._owner: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, session: str, who: str) -> bool:
        """True if `who` may act for `session`; the first to name a session owns it."""
        with self._lock:
            owner = self._owner.get(session)
            if owner is None:
                self._owner[session] = who
                if len(self._owner) > self.capacity:
                    self._owner.popitem(last=False)
                return True
            self._owner.move_to_end(session)
            return owner == who

    def owner(self, session: str) -> str | None:
        with self._lock:
            return self._owner.get(session)

    def __len__(self) -> int:
        return len(self._owner)
