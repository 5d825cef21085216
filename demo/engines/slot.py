"""A place for the engine while it loads: the page opens first, the model arrives later.

`EngineSlot` is filled once, by whoever loads the model, with an engine or with the reason
loading failed. Handlers wait on it, so a question asked during loading is answered when the
model is ready instead of failing. Until then `expected_family` says which generation is
being loaded (videos sent meanwhile are sized for it); once loaded, the engine's own family
wins. While a model downloads, the slot also holds the latest `DownloadProgress` (reported by
`demo/engines/hub/download.py`), then notes when the weights began loading; `status_markdown` turns
that into the page's status: a progress bar with bytes, rate and time left, then the loading of
the weights. Knows nothing of Gradio or of any backend.
"""

from __future__ import annotations

import html
import re
import threading
import time

from demo.engines.base import Engine
from demo.engines.hub.progress import DownloadProgress, human_bytes, human_duration
from grounding.generations import DEFAULT_FAMILY, check_family, generation


class EngineSlot:
    def __init__(self, description: str, expected_family: str = DEFAULT_FAMILY) -> None:
        self.description = description  # what is being loaded, for messages
        self._expected = check_family(expected_family)
        self._engine: Engine | None = None
        self._error = ""
        self._done = threading.Event()
        self._started = time.monotonic()
        self._download: DownloadProgress | None = None  # the latest, while (or after) the model downloads
        self._weights_since: float | None = None  # when the weights began loading into memory
        self._shown_at = 0.0  # when a page last asked for the status

    def fill(self, engine: Engine) -> None:
        self._engine = engine
        self._done.set()

    def fail(self, reason: str) -> None:
        self._error = reason
        self._done.set()

    def report_download(self, progress: DownloadProgress) -> None:
        """The download's latest progress (called from the downloading thread)."""
        self._download = progress

    def report_loading(self) -> None:
        """The files are here: the weights are being loaded into memory."""
        self._weights_since = time.monotonic()

    @property
    def download(self) -> DownloadProgress | None:
        return self._download

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

    def watched(self, within: float) -> bool:
        """Whether a page asked for the status in the last `within` seconds (someone is looking)."""
        return time.monotonic() - self._shown_at < within

    def status_markdown(self) -> str:
        """One line for the page: loading, ready (with what the model is), or failed."""
        self._shown_at = time.monotonic()
        title = generation(self.expected_family).title
        if self.loading:
            return self._loading_markdown(title)
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

    def _loading_markdown(self, title: str) -> str:
        name = _plain(self.description)
        meanwhile = "Questions asked now are answered once it is ready."
        download = self._download
        if self._weights_since is not None:
            line = f"Loading the weights of **{name}** ({title}) into memory ({time.monotonic() - self._weights_since:.0f} s)…"
            if download is not None and download.downloaded:
                line += f" Downloaded {human_bytes(download.downloaded)} in {human_duration(download.elapsed)}."
            return f"{line} {meanwhile}"
        if download is None or download.finished:
            return f"Loading **{name}** ({title}, {self.seconds_loading():.0f} s)… {meanwhile}"
        lines = [
            f"Downloading **{name}** from the Hugging Face Hub: {download.files_done} of {download.files} files. "
            "Only on the first start: later starts use the copy in the cache.",
            f'<progress value="{download.done}" max="{max(download.total, 1)}" aria-label="download progress"></progress>',
            f"**{_plain(download.summary())}**",
        ]
        lines += [f"{_plain(f.name)}: {human_bytes(f.done)} of {human_bytes(f.size)}" for f in download.current[:3]]
        if note := download.resumed_note():
            lines.append(note)
        lines.append(meanwhile)
        return "\n\n".join(lines)


def _plain(text: str) -> str:
    """Text shown as itself in Markdown: HTML escaped, Markdown punctuation backslashed."""
    return re.sub(r"([\\`*_{}\[\]()#+!|~>-])", r"\\\1", html.escape(text, quote=False))
