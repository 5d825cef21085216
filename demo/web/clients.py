"""What each client may open, and what its invalid calls cost it.

A client is an address as the guard sees it (`--trusted-proxies` decides whose X-Forwarded-For
is believed: `demo/web/proxies.py`), an IPv6 address counted by its /64 (the block one
subscriber is given). Every session Gradio keeps costs memory (6.31 copies the whole page's
configuration into each: about 170 KB here) and Gradio keeps at most `state_session_capacity`
of them, forgetting the least recently used (gradio/state_holder.py `StateHolder.update`).
So a new session costs its sender:

- `per_client`: sessions one client may have open at once (from its first request until its tab
  closes, or it has been idle `idle` seconds; `unattended` seconds for a session that never had a
  heartbeat connection: REST calls and scripts, whose end nothing announces);
- `per_minute`: sessions one client may open a minute (a token bucket: that many at once, then
  one every 60 / `per_minute` seconds);
- `total`: sessions open in all, below Gradio's capacity (`serve.launch` sets both), so that
  the least recently used session Gradio forgets is always one that has ended: an open one is
  never pushed out by anyone's traffic;
- `invalid_per_minute`: requests naming a session that does not exist or is someone else's,
  or an event that does not exist; past that budget they, and any new session, are refused.

A closed session (its last heartbeat ended, after Gradio ran the app's unload event, which ends
the app's session) no longer counts against its client; its Gradio state is dropped a few
seconds later (`dropped`: the guard removes it from Gradio's store), and until then it still
counts in `total`. Pure apart from the clock; thread-safe.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from demo.web.owners import Binding, Owners

TOO_MANY_SESSIONS = "You already have {n} conversations open from your address; close a tab, or wait for one to end, before opening another."
TOO_FAST = "You opened too many conversations in the last minute; wait a minute before opening another."
APP_FULL = "The app has as many conversations open as it can keep; try again in a few minutes."
TOO_MANY_INVALID = "Too many requests for conversations that are not yours or do not exist; wait a minute."

CLOSED_GRACE = 5.0  # seconds between a session's close and dropping its Gradio state (its unload event runs first)


def client_key(address: str) -> str:
    """The client an address counts as: itself, an IPv6 address its /64 (IPv4-mapped: the IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Rate:
    """A token bucket per key: `burst` tokens at most, refilled at `per_minute` a minute."""

    def __init__(self, per_minute: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        self.per_second = per_minute / 60
        self.burst = float(burst if burst is not None else per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - then) * self.per_second)

    def take(self, key: str) -> bool:
        """Spend one of `key`'s tokens; False (and nothing spent) when it has none."""
        with self._lock:
            now = self.clock()
            tokens = self._tokens(key, now)
            if tokens < 1:
                return False
            self._buckets[key] = (tokens - 1, now)
            return True

    def spent(self, key: str) -> bool:
        """Whether `key` has no token left now."""
        with self._lock:
            return self._tokens(key, self.clock()) < 1

    def sweep(self) -> None:
        """Forget the keys whose bucket is full again."""
        with self._lock:
            now = self.clock()
            for key in [k for k in self._buckets if self._tokens(k, now) >= self.burst]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class SessionLimits:
    """See the module's docstring; `None` lifts a per-client cap."""

    per_client: int | None = 64
    per_minute: int | None = 30
    total: int = 5000
    idle: float = 3600.0
    unattended: float = 600.0
    invalid_per_minute: int = 60

    def __post_init__(self) -> None:
        for name in ("per_client", "per_minute"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.total < 1 or self.idle <= 0 or self.unattended <= 0 or self.invalid_per_minute < 1:
            raise ValueError("total, idle, unattended and invalid_per_minute must be positive")

    def idle_of(self, binding: Binding) -> float:
        """Seconds `binding`'s session may stay idle: `idle`, or `unattended` when it never had a heartbeat."""
        return self.idle if binding.attended else min(self.idle, self.unattended)


#: What `Ledger.claim` found: the asker's own session, another's, one that does not exist, or a refusal.
MINE, THEIRS, UNKNOWN, REFUSED = "mine", "theirs", "unknown", "refused"


class Ledger:
    """The app's sessions: whose each is (`owners`), and what each client has open."""

    def __init__(self, limits: SessionLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or SessionLimits()
        self.clock = clock
        self.owners = Owners()
        self._open: dict[str, set[str]] = {}  # client -> its live sessions
        self._total = 0  # live sessions, and closed ones whose Gradio state is not dropped yet
        self._closing: dict[str, float] = {}  # closed sessions -> when they closed
        self._new = Rate(self.limits.per_minute, clock=clock) if self.limits.per_minute else None
        self._invalid = Rate(self.limits.invalid_per_minute, clock=clock)
        self._lock = threading.RLock()
        self._swept = clock()

    # -- requests --------------------------------------------------------------------------------

    def claim(self, session: str, who: str, client: str, *, opens: bool) -> tuple[str, str | None]:
        """May `who` (from `client`) act for `session`? `opens`: this request may open a new session.

        Returns (MINE, None), (THEIRS, None), (UNKNOWN, None) or (REFUSED, the sentence why).
        """
        with self._lock:
            now = self.clock()
            binding = self.owners.get(session)
            if binding is None:
                if not opens:
                    return UNKNOWN, None
                if refusal := self._may_open(client):
                    return REFUSED, refusal
                binding = self.owners.bind(session, who, client, now)
                self._count(session, binding)
                return MINE, None
            if binding.owner != who:
                return THEIRS, None
            if not binding.live and opens:  # ended (closed, or idle): it opens again, and costs as a new one
                if refusal := self._may_open(client):
                    return REFUSED, refusal
                binding.client = client
                self._count(session, binding)
            self.owners.seen(session, now)
            return MINE, None

    def reserve(self, who: str, client: str) -> tuple[str | None, str | None]:
        """A place for a session whose name is not known yet (a REST call's event id): (its key, None) or (None, refusal)."""
        with self._lock:
            if refusal := self._may_open(client):
                return None, refusal
            key = f"\0reserved-{secrets.token_hex(16)}"  # no request can name it
            self._count(key, self.owners.bind(key, who, client, self.clock()))
            return key, None

    def named(self, key: str, session: str | None) -> None:
        """The reserved `key` turned out to be `session` (None: nothing was opened)."""
        with self._lock:
            binding = self.owners.get(key)
            if binding is None:
                return
            if session is None or session in self.owners:
                self.owners.forget(key)
                self._uncount(key, binding)
                return
            self.owners.rename(key, session, self.clock())
            self._open[binding.client].discard(key)
            self._open[binding.client].add(session)

    def invalid(self, client: str) -> bool:
        """`client` made an invalid call: True while within its budget, False once over it."""
        return self._invalid.take(client)

    def heartbeat(self, session: str, opened: bool) -> bool:
        """A heartbeat connection of `session` opened or ended; True when that closed the session."""
        with self._lock:
            binding = self.owners.get(session)
            if binding is None:
                return False
            binding.heartbeats = max(0, binding.heartbeats + (1 if opened else -1))
            binding.attended = binding.attended or opened
            if opened or binding.heartbeats or not binding.live:
                return False
            self._open[binding.client].discard(session)
            binding.live = False
            binding.closed = self.clock()
            self._closing[session] = binding.closed
            return True

    # -- time ------------------------------------------------------------------------------------

    def sweep(self, held: Callable[[str], bool], busy: Callable[[str], bool], drop: Callable[[str], None]) -> None:
        """At most once a second: `drop` the Gradio state of sessions closed `CLOSED_GRACE` seconds ago
        and of unattended sessions idle too long (`drop` ends the app's session too: Gradio's delete
        callbacks), end the other idle ones (Gradio expires their state itself, after the same time),
        and forget the bindings of ended sessions Gradio no longer `held`. A session is never ended
        while `busy` (events of it are queued or running). `drop` runs after the ledger is unlocked."""
        dropping: list[str] = []
        with self._lock:
            now = self.clock()
            if now - self._swept < 1.0:
                return
            self._swept = now
            for session, closed in list(self._closing.items()):
                binding = self.owners.get(session)
                if binding is None or binding.live:  # reopened: it counts again
                    del self._closing[session]
                    if binding is None:
                        self._total -= 1
                elif now - closed >= CLOSED_GRACE:
                    del self._closing[session]
                    self._total -= 1
                    dropping.append(session)
            shortest = min(self.limits.idle, self.limits.unattended)
            for session in self.owners.unseen_since(now - shortest):
                binding = self.owners.get(session)
                if binding is None or now - binding.seen < self.limits.idle_of(binding):
                    continue
                if binding.live and busy(session):
                    self.owners.seen(session, now)
                    continue
                if binding.live:
                    self._uncount(session, binding)
                    if not binding.attended:  # nothing else would end it before Gradio's hour
                        dropping.append(session)
                        self.owners.forget(session)
                        continue
                if session not in self._closing and not binding.heartbeats and not held(session):
                    self.owners.forget(session)
            if self._new is not None:
                self._new.sweep()
            self._invalid.sweep()
        for session in dropping:
            drop(session)

    # -- counts ----------------------------------------------------------------------------------

    def open_of(self, client: str) -> int:
        with self._lock:
            return len(self._open.get(client, ()))

    @property
    def total(self) -> int:
        return self._total

    def _may_open(self, client: str) -> str | None:
        limits = self.limits
        if self._invalid.spent(client):
            return TOO_MANY_INVALID
        if limits.per_client is not None and (n := len(self._open.get(client, ()))) >= limits.per_client:
            return TOO_MANY_SESSIONS.format(n=n)
        if self._total >= limits.total:
            return APP_FULL
        if self._new is not None and not self._new.take(client):
            return TOO_FAST
        return None

    def _count(self, session: str, binding: Binding) -> None:
        binding.live = True
        binding.closed = None
        self._open.setdefault(binding.client, set()).add(session)
        if session not in self._closing:  # a closing one is counted in the total still
            self._total += 1

    def _uncount(self, session: str, binding: Binding) -> None:
        binding.live = False
        sessions = self._open.get(binding.client)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._open[binding.client]
        self._total -= 1
