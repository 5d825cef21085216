"""The memory that decoding may take at once, one budget for the whole process.

Decoding needs memory for a moment, far more than what is kept: a 2.5 kB WebP of 7000×7000
pixels of one colour takes about 800 MB while libwebp, Pillow and the resize hold their copies
(the picture kept afterwards is a few MB), and a video decoder holds its reference frames at the
source's size (an 8K H.264 video: about 600 MB). Every decode first reserves what it will take,
estimated from the header before a pixel is decoded (`pictures.decode_bytes`,
`video_plan.decoder_bytes`), from one budget shared by every session: `DECODING`, 1 GiB unless
`configure` says otherwise. A decode that does not fit waits its turn (first come, first served,
so a large one is not passed over forever by small ones) until earlier ones finish; one that
waited `wait_seconds` in vain, or that needs more than the whole budget by itself, is refused
with one sentence. However many answers run at once (16 against a server), the decoding in
flight then holds at most the budget.

After a large decode, what glibc holds free is handed back to the system (`malloc_trim`): it
keeps much of it in the arena of the thread that decoded (a 7000×7000 WebP decoded in a worker
thread left 220 to 240 MB behind; 145 to 195 MB with the trim, measured). Knows nothing of
Gradio, images or videos.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from demo.media.errors import UploadError

MB = 1024 * 1024
DEFAULT_BYTES = 1024 * MB
DEFAULT_WAIT_SECONDS = 30.0
TRIM_BYTES = 32 * MB  # after freeing a reservation this large, return free memory to the system


class DecodeBudget:
    """Bytes of decoding memory shared by every thread; `reserve` holds some while a decode runs."""

    def __init__(self, total_bytes: int = DEFAULT_BYTES, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> None:
        if total_bytes <= 0 or wait_seconds < 0:
            raise ValueError(f"a decoding budget needs a positive size and wait, got {total_bytes} and {wait_seconds}")
        self.total = total_bytes
        self.wait_seconds = wait_seconds
        self.in_use = 0
        self.peak = 0  # the most ever reserved at once (for tests and benchmarks)
        self._line: deque[object] = deque()  # the decodes waiting, in their order of arrival
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int, name: str) -> Iterator[None]:
        """Hold `nbytes` while the block runs; wait for them first if they are not free.

        UploadError (one sentence naming `name`) when they are more than the whole budget, or are
        still not free after `wait_seconds`.
        """
        nbytes = max(0, int(nbytes))
        if nbytes > self.total:
            raise UploadError(
                f"{name} would take about {_mb(nbytes)} of memory to decode, more than this app gives "
                f"one file ({_mb(self.total)})."
            )
        self._acquire(nbytes, name)
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= nbytes
                self._changed.notify_all()
            if nbytes >= TRIM_BYTES:
                release_free_memory()

    def _acquire(self, nbytes: int, name: str) -> None:
        ticket = object()
        deadline = time.monotonic() + self.wait_seconds
        with self._changed:
            self._line.append(ticket)
            try:
                while self._line[0] is not ticket or self.in_use + nbytes > self.total:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise UploadError(
                            f"{name} was not decoded: the app is busy decoding other people's files "
                            f"(it waited {self.wait_seconds:g} s); send it again in a minute."
                        )
                    self._changed.wait(left)
                self.in_use += nbytes
                self.peak = max(self.peak, self.in_use)
            finally:
                self._line.remove(ticket)
                self._changed.notify_all()  # the next in line may go now


DECODING = DecodeBudget()


def configure(total_bytes: int, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> None:
    """Set the process's budget (at start-up, before any decode)."""
    global DECODING
    DECODING = DecodeBudget(total_bytes, wait_seconds)


def reserve(nbytes: int, name: str):
    """`DECODING.reserve`, read at each call (so that `configure` applies)."""
    return DECODING.reserve(nbytes, name)


def _mb(nbytes: int) -> str:
    return f"{nbytes / MB:,.0f} MB"


def _load_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


_TRIM = _load_trim()


def release_free_memory() -> None:
    """Give the memory glibc holds free in its arenas back to the system (no-op elsewhere)."""
    if _TRIM is not None:
        _TRIM(0)
