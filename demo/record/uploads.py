"""Gradio's upload folder: where it is, and when a file of it may be deleted.

Gradio 6.31 stores an upload at `<upload folder>/<sha256 of a seed and the bytes>/<file name>`
(gradio/route_utils.py `upload_fn`; `processing_utils.hash_file` gives the same folder), replacing
what is there: the same bytes under the same name are one path, whoever sent them. Several people
sending one picture at once (an example, a meme) all name that one file, so a file of it may be
deleted only once none of them can still send it: `UPLOADS` counts, per path, the uploads not yet
used (the guard notes each answer of Gradio's upload route: `uploaded`; a message that sends the
file, or Load reading it, uses one: `used`) and deletes the file once every upload of it has been
used, `GRACE_SECONDS` later. Gradio renames each upload into place before the guard sees its
answer, so an upload of the same bytes may land unnoted just before the deletion: the file is
deleted only if it is still the one last used (its inode; each upload is a new one), else left.
A file nobody noted (an example Gradio copied itself, an app run without the guard) and one
uploaded but never sent are left to Gradio's age-based sweep (`gr.Blocks(delete_cache=...)`), as
are Gradio's per-upload folders (an upload may be renaming into one).

Only a file directly in one of Gradio's per-upload folders is ever deleted here: never a session's
(`demo.record.sessions` keeps those deeper), never anything outside the upload folder.

Standard library only: knows nothing of Gradio or of sessions.
"""

from __future__ import annotations

import heapq
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

GRACE_SECONDS = 5.0  # how long a used-up upload outlives its last use
_GRADIO_FOLDER = re.compile(r"[0-9a-f]{64}")  # a per-upload folder: the content's sha256


def upload_folder() -> Path:
    """Gradio's upload folder, by Gradio's own rule (`gradio.utils.get_upload_folder`)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def is_gradios_upload(path: str | Path) -> bool:
    """Whether `path` (symlinks followed) is where Gradio's upload route puts a file."""
    resolved = Path(path).resolve()
    return resolved.parent.parent == upload_folder() and bool(_GRADIO_FOLDER.fullmatch(resolved.parent.name))


def discard_upload(path: str | Path) -> None:
    """The app has read a file of Gradio's upload folder (a conversation file, loaded or not): one of its
    uploads is used; Gradio's copy goes once every upload of it is. Any other file is left alone."""
    if is_gradios_upload(path):
        UPLOADS.used(path)


class PendingUploads:
    """Per file of Gradio's upload folder, its uploads not yet used; a file whose every upload has
    been used is deleted `grace` seconds later, unless it was uploaded again meanwhile. A file never
    noted is never deleted here. Remembers the last `capacity` files (one forgotten is left to
    Gradio's sweep). Thread-safe; one daemon thread deletes, started on first need."""

    def __init__(self, grace: float = GRACE_SECONDS, capacity: int = 100_000) -> None:
        self.grace = grace
        self.capacity = capacity
        self._pending: OrderedDict[str, int] = OrderedDict()  # resolved path -> its uploads not yet used
        self._due_at: dict[str, tuple[float, int]] = {}  # a path whose uploads are all used -> when, and its inode then
        self._due: list[tuple[float, str]] = []  # heap of (when, path)
        self._changed = threading.Condition()
        self._deleter: threading.Thread | None = None

    def uploaded(self, path: str | Path) -> None:
        """Gradio's upload route stored (once more) a file at `path`."""
        key = str(Path(path).resolve())
        with self._changed:
            self._pending[key] = self._pending.get(key, 0) + 1
            self._pending.move_to_end(key)
            self._due_at.pop(key, None)
            while len(self._pending) > self.capacity:
                forgotten, _ = self._pending.popitem(last=False)
                self._due_at.pop(forgotten, None)

    def used(self, path: str | Path) -> None:
        """One upload of `path` was used (sent, or read by Load)."""
        key = str(Path(path).resolve())
        with self._changed:
            count = self._pending.get(key)
            if count is None or key in self._due_at:
                return  # never noted (Gradio's sweep deletes it), or its deletion is due already
            self._pending[key] = count = max(0, count - 1)
            if count == 0:
                when = time.monotonic() + self.grace
                self._due_at[key] = (when, _inode(key))
                heapq.heappush(self._due, (when, key))
                if self._deleter is None:
                    self._deleter = threading.Thread(target=self._delete_when_due, name="uploads-deleter", daemon=True)
                    self._deleter.start()
                self._changed.notify()

    def pending(self, path: str | Path) -> int | None:
        """Uploads of `path` not yet used; None when it was never noted (or is forgotten)."""
        with self._changed:
            return self._pending.get(str(Path(path).resolve()))

    def _delete_when_due(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                when, key = heapq.heappop(self._due)
                if self._due_at.get(key, (None,))[0] != when:
                    continue  # uploaded again since
                _, inode = self._due_at.pop(key)
                del self._pending[key]
            _delete(Path(key), inode)


UPLOADS = PendingUploads()


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _delete(path: Path, inode: int | None) -> None:
    """Delete the file Gradio's upload route put at `path` if it is still the one with `inode`: moved
    aside first (atomic), and put back if it is a newer upload of the same bytes."""
    if inode is None or not is_gradios_upload(path) or path.is_symlink():
        return
    aside = path.with_name(f".{secrets.token_hex(8)}.deleting")
    try:
        os.rename(path, aside)
    except OSError:
        return
    try:
        if aside.stat().st_ino == inode:
            aside.unlink()
        else:
            os.rename(aside, path)  # an upload of the same bytes, landed since: it stays (as identical bytes would)
    except OSError:
        pass


def link_or_copy(source: Path, target: Path) -> None:
    """A second name for `source` (a hard link: no second copy on disk), or a copy where links fail."""
    try:
        os.link(source, target)
    except OSError:
        if not source.is_file():
            raise
        shutil.copyfile(source, target)
