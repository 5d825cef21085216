"""How far a model download is: the record the page and the terminal both read, and its words.

`DownloadProgress` is a snapshot taken by `demo/engines/hub/download.py`; `summary()` is the line
both the page and the log show ("1.2 GB of 4.4 GB (27%) · 11 MB/s · about 5 min left"). Sizes
are decimal (1 MB = 10^6 bytes), as the Hugging Face Hub shows them. No dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass

STALLED_AFTER = 15.0  # seconds without a byte before the line says so


@dataclass(frozen=True)
class FileProgress:
    name: str
    done: int
    size: int


@dataclass(frozen=True)
class DownloadProgress:
    repo_id: str
    total: int  # bytes of every file the model needs
    done: int  # bytes of them on disk now (complete files and parts of the ones downloading)
    complete: int = 0  # bytes of the complete files
    resumed: int = 0  # bytes that were already in the cache when this start began
    files: int = 0
    files_done: int = 0
    files_resumed: int = 0
    rate: float = 0.0  # bytes per second over the last few seconds (0: not known yet)
    elapsed: float = 0.0  # seconds since the download began
    idle: float = 0.0  # seconds since a byte last arrived
    current: tuple[FileProgress, ...] = ()  # the files being downloaded now
    finished: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0

    @property
    def seconds_left(self) -> float | None:
        if self.finished:
            return 0.0
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    @property
    def downloaded(self) -> int:
        """Bytes fetched by this start (not counting what was already cached)."""
        return max(0, self.done - self.resumed)

    def summary(self) -> str:
        """'1.2 GB of 4.4 GB (27%) · 11 MB/s · about 5 min left' (or how it ended, once finished)."""
        head = f"{human_bytes(self.done)} of {human_bytes(self.total)} ({self.fraction:.0%})"
        if self.finished:
            if not self.downloaded:
                return f"{human_bytes(self.total)}, all in the cache"
            rate = self.downloaded / self.elapsed if self.elapsed > 0 else 0.0
            return f"{human_bytes(self.total)} in {human_duration(self.elapsed)} ({human_bytes(rate)}/s)"
        if self.idle >= STALLED_AFTER:
            return f"{head} · no data for {human_duration(self.idle)}"
        if self.seconds_left is None:
            return f"{head} · starting"
        return f"{head} · {human_bytes(self.rate)}/s · about {human_duration(self.seconds_left)} left"

    def resumed_note(self) -> str:
        """'Resumed: 6 of 8 files (52 kB) were already in the cache.', or '' for a fresh download."""
        if not self.files_resumed or self.files_resumed == self.files:
            return ""
        return f"Resumed: {self.files_resumed} of {self.files} files ({human_bytes(self.resumed)}) were already in the cache."


def human_bytes(n: float) -> str:
    """512 B, 640 kB, 1.05 MB, 4.43 GB (three significant digits, decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 999.5 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """'4 s', '12 min', '2 h 05 min'."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"
