"""The answers being written: how many at once, in what order the others wait, and their Stop switches.

The page's "model" group admits a few more events than the engine writes answers at once
(`PREPARING`), so a message's pictures and videos are decoded and checked while others' answers
are written, not in a slot the engine could use. A checked answer then waits here for its turn,
first come first served, and knows its place: the person sees it, as Gradio's queue would show it.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

#: Events the page's "model" group admits beyond the answers written at once: messages being decoded and checked.
PREPARING = 2


def waiting_note(ahead: int) -> str:
    """What a person whose answer waits for its turn is told."""
    return f"Waiting for the model: {ahead} answer{'s' * (ahead != 1)} before yours."


@dataclass(eq=False)
class Running:
    """An answer being written (or waiting for its turn): its Stop switch, and a flag raised once it has ended."""

    stop: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


class Writing:
    """At most `at_once` answers written at a time, the others served in the order they asked."""

    def __init__(self, at_once: int = 1) -> None:
        if at_once < 1:
            raise ValueError(f"at_once must be positive, got {at_once}")
        self.at_once = at_once
        self._writing = 0
        self._waiting: deque[Running] = deque()
        self._running: dict[str, Running] = {}  # session -> its answer (writing or waiting)
        self._turn = threading.Condition()

    def begin(self, session: str) -> Running:
        running = Running()
        with self._turn:
            self._running[session] = running
        return running

    def sessions(self) -> list[str]:
        """The sessions with an answer being written or waiting for its turn."""
        with self._turn:
            return list(self._running)

    def of(self, session: str) -> Running | None:
        with self._turn:
            return self._running.get(session)

    def take_turn(self, running: Running, timeout: float) -> int:
        """Wait up to `timeout` s for `running`'s turn: 0 when it has it (give it back with `give_back`),
        else how many answers are before it (being written, or waiting since earlier)."""
        with self._turn:
            if running not in self._waiting:
                self._waiting.append(running)
            if not self._may_write(running):
                self._turn.wait(timeout)
            if self._may_write(running):
                self._waiting.remove(running)
                self._writing += 1
                return 0
            return self._writing + self._waiting.index(running)

    def _may_write(self, running: Running) -> bool:
        """Whether `running` is among the first waiting, as many as there are free places (under the lock)."""
        return self._waiting.index(running) < self.at_once - self._writing

    def leave(self, running: Running) -> None:
        """`running` stops waiting for its turn (Stop, a closed tab)."""
        with self._turn:
            if running in self._waiting:
                self._waiting.remove(running)
                self._turn.notify_all()

    def give_back(self) -> None:
        """An answer that had its turn has ended."""
        with self._turn:
            self._writing -= 1
            self._turn.notify_all()

    def end(self, session: str, running: Running) -> None:
        running.finished.set()
        with self._turn:
            if self._running.get(session) is running:
                del self._running[session]
