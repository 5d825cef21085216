"""Bytes each client keeps in Gradio's upload folder without sending them, and how long (issue 26).

Gradio 6.31's upload route (`/gradio_api/upload`) stores whatever it is sent; nothing bounds what a
client keeps there before (or without) sending it in a message, and Gradio's own sweep
(`gr.Blocks(delete_cache=...)`) comes an hour on. `UnsentUploads`:

- `admit(client, length)`: before Gradio reads an upload's body, its Content-Length (uvicorn never
  passes a body longer than it) is checked against the client's unsent bytes (`per_client`) and
  everyone's (`total`), and reserved while the upload runs; `None` or a refusal sentence;
- `settle(ticket, paths)`: Gradio answered with these paths: the reservation becomes one record per
  file (its size on disk), each with the time it expires;
- `sent(client, paths)`: a message of that client names these paths: their records (one each) are
  released; from then on `demo.record.uploads` decides when Gradio's copy goes;
- expiry: a record unsent `expiry` seconds after its upload is released and counts as a use for
  `demo.record.uploads.UPLOADS`, which deletes Gradio's copy once no upload of it is pending (the same bytes
  from another client that are not yet expired keep it); a file `keep(path)` says is the app's own
  (an example) is never deleted. A daemon thread expires them, started on the first record.

Thread-safe. Knows nothing of ASGI; of Gradio only that its upload folder holds the files.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from demo.record.uploads import UPLOADS, PendingUploads, is_gradios_upload

MB = 1024 * 1024
OVER_CLIENT = (
    "Your files not yet sent already take {held:.0f} MB of the {cap:.0f} MB one client may keep: "
    "send them in a message, or wait {minutes:g} minutes for them to expire, before uploading more."
)
OVER_TOTAL = "The app's space for files not yet sent is full: try again in a few minutes."
NO_LENGTH = "An upload must say its length (Content-Length)."


def default_per_client_mb(max_upload_mb: float, max_image_mb: float, images_per_turn: int) -> float:
    """The largest allowed file, and a message's worth of pictures beside it."""
    return max_upload_mb + images_per_turn * max_image_mb


DEFAULT_PER_CLIENT_MB = default_per_client_mb(1500.0, 20.0, 8)  # demo.record.limits.Limits' defaults


@dataclass
class _Record:
    path: str
    client: str
    size: int
    due: float
    live: bool = True


class UnsentUploads:
    def __init__(
        self, per_client: int, total: int, expiry: float = 1800.0, *,
        keep: Callable[[Path], bool] | None = None, uploads: PendingUploads | None = None,
    ) -> None:
        if per_client < 1 or total < 1 or expiry <= 0:
            raise ValueError("per_client, total and expiry must be positive")
        self.per_client, self.total, self.expiry = per_client, total, expiry
        self.keep = keep or (lambda path: False)
        self.uploads = uploads or UPLOADS
        self._held: Counter[str] = Counter()  # client -> bytes (records and reservations)
        self._all = 0
        self._records: dict[tuple[str, str], list[_Record]] = {}  # (path, client) -> its unsent uploads, oldest first
        self._due: list[tuple[float, int, _Record]] = []
        self._tickets: dict[int, tuple[str, int]] = {}
        self._ids = itertools.count()
        self._changed = threading.Condition()
        self._expirer: threading.Thread | None = None

    def held(self, client: str) -> int:
        with self._changed:
            return self._held[client]

    def admit(self, client: str, length: int) -> tuple[int | None, str]:
        """A ticket for an upload of `length` bytes, or (None, the sentence refusing it)."""
        with self._changed:
            if self._held[client] + length > self.per_client:
                minutes = self.expiry / 60
                return None, OVER_CLIENT.format(held=self._held[client] / MB, cap=self.per_client / MB, minutes=round(minutes, 1))
            if self._all + length > self.total:
                return None, OVER_TOTAL
            ticket = next(self._ids)
            self._tickets[ticket] = (client, length)
            self._add(client, length)
            return ticket, ""

    def settle(self, ticket: int, paths: list[str]) -> None:
        """The upload ended: Gradio answered with `paths` (none when it failed)."""
        with self._changed:
            client, length = self._tickets.pop(ticket, ("", 0))
            self._add(client, -length)
            files = [p for p in paths if is_gradios_upload(p)]
            for path in files:
                size = _size(path, length // len(files))  # Gradio may still be moving it into place
                record = _Record(str(Path(path).resolve()), client, size, time.monotonic() + self.expiry)
                self._records.setdefault((record.path, client), []).append(record)
                heapq.heappush(self._due, (record.due, next(self._ids), record))
                self._add(client, size)
            if files and self._expirer is None:
                self._expirer = threading.Thread(target=self._expire_when_due, name="unsent-uploads", daemon=True)
                self._expirer.start()
            self._changed.notify()

    def sent(self, client: str, paths: list[str]) -> None:
        """A message from `client` names `paths`: one unsent upload of each is released."""
        with self._changed:
            for path in paths:
                try:
                    key = (str(Path(path).resolve()), client)
                except (OSError, ValueError, RuntimeError):
                    continue
                if records := self._records.get(key):
                    self._release(records.pop(0))
                    if not records:
                        del self._records[key]

    def expire(self, now: float | None = None) -> list[str]:
        """Release the records due by `now`; the paths of those whose file may now go."""
        now = time.monotonic() if now is None else now
        expired = []
        with self._changed:
            while self._due and self._due[0][0] <= now:
                record = heapq.heappop(self._due)[2]
                if not record.live:
                    continue
                self._release(record)
                records = self._records.get((record.path, record.client), [])
                if record in records:
                    records.remove(record)
                    if not records:
                        del self._records[(record.path, record.client)]
                expired.append(record.path)
        for path in expired:
            if not self.keep(Path(path)):
                self.uploads.used(path)  # nobody sent this upload: Gradio's copy goes once none of it is pending
        return expired

    def _release(self, record: _Record) -> None:
        record.live = False
        self._add(record.client, -record.size)

    def _add(self, client: str, size: int) -> None:
        self._held[client] += size
        self._all += size
        if self._held[client] <= 0:
            del self._held[client]

    def _expire_when_due(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
            self.expire()


def content_length(headers: dict[str, str]) -> int | None:
    """The request's Content-Length, or None when it has none (or a bad one)."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def _size(path: str, otherwise: int) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return otherwise
