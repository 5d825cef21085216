"""Measuring a download while huggingface_hub does it: bytes on disk, per file and in all, rate, time left.

`Watch` looks at the cache twice a second (complete blobs, and the temporary `*.incomplete` files
of those being written) and at the byte counts huggingface_hub reports through a silent
`tqdm_class`; it hands a `DownloadProgress` to a callback and logs a line every `LOG_EVERY`
seconds. Temporary files that were there before it began (left by a killed start; huggingface_hub
2.4 never reuses them) do not count.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from demo.engines.hub.progress import DownloadProgress, FileProgress, human_bytes

log = logging.getLogger("demo.engines.hub.download")

REPORT_EVERY = 0.5  # seconds between two progress reports to the callback
LOG_EVERY = 5.0  # seconds between two progress lines in the log
RATE_WINDOW = 8.0  # seconds of samples the rate is measured over

ProgressCallback = Callable[[DownloadProgress], None]


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    etag: str  # its blob's name in the cache: the LFS sha256, else the git blob id


class ByteMeter(tqdm):
    """A silent progress bar for `snapshot_download(tqdm_class=...)`: it only counts bytes."""

    bars: list[ByteMeter] = []  # each download gets its own subclass, with its own list
    lock = threading.Lock()

    def __init__(self, *args, **kwargs) -> None:
        self.counts_bytes = kwargs.get("unit") == "B"
        self.counted = kwargs.get("initial") or 0
        kwargs["disable"] = True  # huggingface_hub's own bars would flood the terminal
        super().__init__(*args, **kwargs)
        type(self).bars.append(self)

    def update(self, n: float | None = 1) -> bool | None:
        with type(self).lock:
            self.counted += n or 0
        return super().update(n)

    @classmethod
    def downloaded(cls) -> int:
        """Bytes of this download so far, by the library's own count (its byte bars all total the snapshot)."""
        return int(max((bar.counted for bar in cls.bars if bar.counts_bytes), default=0))


class Watch:
    """Measures one download from a thread: bytes on disk per file, the rate, the time left."""

    def __init__(self, repo_id: str, files: list[ModelFile], storage: Path, commit: str, on_progress: ProgressCallback | None) -> None:
        self.repo_id, self.files, self.on_progress = repo_id, files, on_progress
        self.blobs, self.snapshot = storage / "blobs", storage / "snapshots" / commit
        self.meter = type("ByteMeter", (ByteMeter,), {"bars": [], "lock": threading.Lock()})
        self.started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque()
        self._last_change = self.started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-progress", daemon=True)
        # Temporary files left by a start that was killed: huggingface_hub 2.4 never reuses them.
        self.stale = {n for n in (os.listdir(self.blobs) if self.blobs.is_dir() else []) if n.endswith(".incomplete")}
        first = self.sample()
        self.resumed, self.files_resumed = first.done, first.files_done

    def announce(self, endpoint: str, cache: Path) -> None:
        total = sum(f.size for f in self.files)
        if self.files_resumed == len(self.files):
            log.info("%s: all %d files (%s) are in the cache", self.repo_id, len(self.files), human_bytes(total))
        elif self.files_resumed:
            log.info(
                "%s: resuming the download: %d of %d files (%s) are already in the cache, %s to go",
                self.repo_id, self.files_resumed, len(self.files), human_bytes(self.resumed), human_bytes(total - self.resumed),
            )
        else:
            log.info("%s: downloading %d files (%s) from %s into %s; later starts use this copy", self.repo_id, len(self.files), human_bytes(total), endpoint, cache)

    def start(self) -> None:
        _active.add(self)
        if self.files_resumed < len(self.files):
            self._report(self.sample())
            self._thread.start()

    def stop(self, finished: bool = False) -> DownloadProgress:
        _active.discard(self)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        progress = self.sample(finished=finished)
        self._report(progress)
        if finished and progress.files_done > self.files_resumed:
            log.info("%s: downloaded %s", self.repo_id, progress.summary())
        return progress

    def _run(self) -> None:
        logged = time.monotonic()
        while not self._stop.wait(REPORT_EVERY):
            progress = self.sample()
            self._report(progress)
            if time.monotonic() - logged >= LOG_EVERY:
                logged = time.monotonic()
                log.info("%s: downloading: %s", self.repo_id, progress.summary())

    def _report(self, progress: DownloadProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def sample(self, finished: bool = False) -> DownloadProgress:
        """What is on disk now: complete blobs, and the temporary files of those being downloaded."""
        complete: set[str] = set()
        partial: dict[str, int] = {}
        try:
            with os.scandir(self.blobs) as entries:
                for entry in entries:
                    if entry.name.endswith(".incomplete"):
                        if entry.name in self.stale:
                            continue
                        etag = entry.name.split(".", 1)[0]
                        partial[etag] = partial.get(etag, 0) + _size(entry)
                    else:
                        complete.add(entry.name)
        except FileNotFoundError:
            pass
        done = files_done = complete_bytes = 0
        current = []
        for f in self.files:
            if f.etag in complete or (self.snapshot / f.name).exists():
                done, files_done, complete_bytes = done + f.size, files_done + 1, complete_bytes + f.size
            elif f.etag in partial:
                part = min(partial[f.etag], f.size)
                done += part
                current.append(FileProgress(f.name, part, f.size))
        total = sum(f.size for f in self.files)
        resumed = getattr(self, "resumed", done)
        done = max(done, min(total, resumed + self.meter.downloaded()))
        if finished:
            done, files_done, complete_bytes, current = total, len(self.files), total, []
        now = time.monotonic()
        if not self._samples or done != self._samples[-1][1]:
            self._last_change = now
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        rate = (d1 - d0) / (t1 - t0) if t1 - t0 >= 1.0 else 0.0
        return DownloadProgress(
            repo_id=self.repo_id, total=total, done=done, complete=complete_bytes, resumed=resumed, files=len(self.files), files_done=files_done,
            files_resumed=getattr(self, "files_resumed", files_done), rate=rate, elapsed=now - self.started,
            idle=now - self._last_change, current=tuple(current), finished=finished,
        )


def _size(entry: os.DirEntry) -> int:
    try:
        return entry.stat().st_size
    except FileNotFoundError:  # renamed into place between listing and stat
        return 0


_active: set[Watch] = set()  # downloads under way in this process


def discard_unfinished() -> None:
    """Delete the partial files of the downloads under way (before the program ends without them).

    huggingface_hub 2.4 never reuses them, and a process that ends at once skips its own clean-up;
    this process still holds each file's lock, so no other process is writing them.
    """
    for watch in list(_active):
        for path in watch.blobs.glob("*.incomplete"):
            if path.name not in watch.stale:
                path.unlink(missing_ok=True)
