"""A place for the engine while it loads: the page opens first, the model arrives later.

`EngineSlot` is filled once, by whoever loads the model, with an engine or with the reason
loading failed. Handlers wait on it, so a question asked during loading is answered when the
model is ready instead of failing. Until then `expected_family` says which generation is
being loaded (videos sent meanwhile are sized for it); once loaded, the engine's own family
wins. Knows nothing of Gradio or of any backend.
"""

from __future__ import annotations

import threading
import time

from demo.engines.base import Engine
from grounding.generations import DEFAULT_FAMILY, check_family, generation


class EngineSlot:
    def __init__(self, description: str, expected_family: str = DEFAULT_FAMILY) -> None:
        self.description = description  # what is being loaded, for messages
        self._expected = check_family(expected_family)
        self._engine: Engine | None = None
        self._error = ""
        self._done = threading.Event()
        self._started = time.monotonic()

    def fill(self, engine: Engine) -> None:
        self._engine = engine
        self._done.set()

    def fail(self, reason: str) -> None:
        self._error = reason
        self._done.set()

    def wait(self, timeout: float | None = None) -> Engine | None:
        """The engine, once loaded; None if it failed or `timeout` passed first."""
        self._done.wait(timeout)
        return self._engine

    @property
    def expected_family(self) -> str:
        """The loaded engine's family; before it is there, the family being loaded."""
        return self._engine.family if self._engine is not None else self._expected

    @property
    def loading(self) -> bool:
        return not self._done.is_set()

    @property
    def error(self) -> str:
        return self._error

    def seconds_loading(self) -> float:
        return time.monotonic() - self._started

    def status_markdown(self) -> str:
        """One line for the page: loading, ready (with what the model is), or failed."""
        title = generation(self.expected_family).title
        if self.loading:
            return (
                f"Loading **{self.description}** ({title}, {self.seconds_loading():.0f} s)… "
                "Questions asked now are answered once it is ready."
            )
        if self._engine is None:
            return f"⚠ **{self.description}** could not be loaded: {self._error}"
        engine = self._engine
        line = f"**{engine.model_name}** ({title}) is ready."
        if engine.random_weights:
            line += (
                "\n\n⚠ **This model has random weights: it answers with random text.** "
                "It exists for tests and offline trials; start with `--model Qwen/Qwen2-VL-2B-Instruct` for real answers."
            )
        return line
