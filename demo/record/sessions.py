"""Each session's files, and the end of a session: what frees its memory and its disk.

The app writes everything it writes for a session into one folder of that session: the uploads
it accepted (hard-linked there from Gradio's upload folder once they are decoded and checked: one
copy on disk, two names), the pictures of a loaded conversation, annotated pictures, the export and
the one save file. When the session ends (the tab is closed, Clear or Load replaces the
conversation, or it was idle past its time-to-live) `Sessions.end` deletes the folder and empties
the conversation, so its pictures are freed at once rather than when Gradio drops the state (an
hour after a tab closes).

Gradio stores an upload by its content: the same bytes under the same name are one path, whoever
sent them (four people sending the same meme at once share one file). So a session never moves or
deletes Gradio's copy: it tells `demo.record.uploads.UPLOADS` it used one upload of it, and that deletes
the file once every upload of it has been used.

Folders are named by random tokens (a file's URL cannot be guessed from a session id), and live
inside Gradio's upload folder, so the page serves them as they are (no copy, no hashing per update).
`session_of_file` tells whose a file is, so that only that session's owner is served it
(demo/web/files.py).
Gradio's own cache sweep (`gr.Blocks(delete_cache=...)`) deletes files by age: `touch` keeps a
live session's files young. `prepare_temp_dir` gives the app a temporary directory of its own,
Gradio's folder inside it, before Gradio is imported; it is deleted when the app exits.

Standard library only: knows nothing of Gradio or of engines.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
import weakref
from collections import Counter
from pathlib import Path

from demo.record.conversation import Conversation
from demo.record.uploads import UPLOADS, PendingUploads, is_gradios_upload, link_or_copy, upload_folder

_ROOTS: list[Path] = []  # every session root of this process (annotated pictures find their folder by it)
_ALL: weakref.WeakSet[Sessions] = weakref.WeakSet()  # every Sessions of this process (files find their session by it)


TEMP_PREFIX = "qwen-vl-chat-"
ROOT_PREFIX = "qwen-vl-chat-sessions-"
OWNER_FILE = ".pid"  # in each folder deleted at exit: the process it is of


def prepare_temp_dir() -> Path:
    """A temporary directory for this app, deleted at exit; Gradio's upload folder goes inside it.

    Call before Gradio is imported (it reads GRADIO_TEMP_DIR once). A GRADIO_TEMP_DIR set by the
    operator is kept, and the sessions' folders go inside it. What an app that was killed left
    (no exit ran for it) is deleted first (`clean_after_crash`).
    """
    clean_after_crash(Path(tempfile.gettempdir()), TEMP_PREFIX)
    own = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    (own / OWNER_FILE).write_text(str(os.getpid()))
    atexit.register(shutil.rmtree, own, True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(own / "gradio"))
    return own


def default_root() -> Path:
    """Where this process keeps its sessions' folders: inside Gradio's upload folder, deleted at exit."""
    clean_after_crash(upload_folder(), ROOT_PREFIX)
    root = upload_folder() / f"{ROOT_PREFIX}{secrets.token_hex(8)}"
    root.mkdir(parents=True, exist_ok=True)
    (root / OWNER_FILE).write_text(str(os.getpid()))
    atexit.register(shutil.rmtree, root, True)
    return root


def clean_after_crash(parent: Path, prefix: str) -> list[Path]:
    """Delete the folders `parent/prefix*` whose process has ended without deleting them (killed,
    or the machine stopped); a folder of a process still running, or of no known process, stays."""
    removed = []
    for folder in parent.glob(f"{prefix}*") if parent.is_dir() else ():
        try:
            pid = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if pid == os.getpid() or _running(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def folder_of(path: str | Path) -> Path | None:
    """The session folder `path` is in, if it is in one."""
    path = Path(path).resolve()
    for root in _ROOTS:
        if path.is_relative_to(root) and path != root:
            return root / path.relative_to(root).parts[0]
    return None


def session_of_file(path: str | Path) -> str | None:
    """The live session whose folder holds `path` (symlinks followed), in any Sessions of this process."""
    folder = folder_of(path)
    if folder is None:
        return None
    return next((session for sessions in list(_ALL) if (session := sessions.session_of_folder(folder)) is not None), None)


def release_memory() -> None:
    """Hand memory freed by Python and Pillow back to the system (glibc's `malloc_trim`; elsewhere nothing)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Sessions:
    """The live sessions' folders and conversations; one instance serves every session. Thread-safe."""

    def __init__(self, root: Path | None = None, uploads: PendingUploads = UPLOADS) -> None:
        self.root = (root or default_root()).resolve()
        self.uploads = uploads  # what tells when Gradio's copy of an upload may go
        _ROOTS.append(self.root)
        self._folders: dict[str, Path] = {}
        self._sessions: dict[Path, str] = {}  # folder -> session: the reverse of _folders
        self._conversations: weakref.WeakValueDictionary[str, Conversation] = weakref.WeakValueDictionary()
        self._protected: dict[int, set[str]] = {}  # size -> sha256 of files never moved (the examples)
        self._aside: dict[str, tuple[Path | None, Conversation]] = {}  # cleared, until Undo or the next answer
        self._lock = threading.Lock()
        _ALL.add(self)

    def folder(self, session: str) -> Path:
        """This session's folder (created on first use, under a random name)."""
        with self._lock:
            folder = self._folders.get(session)
            if folder is None:
                folder = self._folders[session] = self.root / secrets.token_urlsafe(16)
                self._sessions[folder] = session
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def track(self, session: str, conversation: Conversation) -> None:
        """`conversation` is now this session's (the one `end` empties)."""
        with self._lock:
            self._conversations[session] = conversation

    def session_of(self, conversation: Conversation) -> str | None:
        with self._lock:
            return next((s for s, c in self._conversations.items() if c is conversation), None)

    def session_of_folder(self, folder: Path) -> str | None:
        """The live session whose folder `folder` is (a resolved path, as `folder_of` gives)."""
        with self._lock:
            return self._sessions.get(folder)

    def live(self) -> list[str]:
        """The sessions that have a folder or a tracked conversation."""
        with self._lock:
            return sorted(set(self._folders) | set(self._conversations.keys()) | set(self._aside))

    def protect(self, paths: list[str | Path]) -> None:
        """Files whose content must never be deleted from Gradio's folder (its cached examples have the same bytes)."""
        for path in paths:
            data = Path(path).read_bytes()
            self._protected.setdefault(len(data), set()).add(hashlib.sha256(data).hexdigest())

    def adopt(self, session: str, paths: list[str]) -> dict[str, str]:
        """Take accepted uploads into the session's folder; {old path: new path}.

        A file already in the folder stays. A file of Gradio's upload folder (or of another
        session's folder) is hard-linked (copied across file systems), never moved: others may
        have sent the same bytes, and Gradio's copy is deleted by `UPLOADS` once no one else can
        still send it; an example's bytes never are. A file anywhere else is copied.
        """
        moved: dict[str, str] = {}
        folder = self.folder(session)
        for path, times in Counter(paths).items():
            source = Path(path)
            resolved = source.resolve()
            if resolved.is_relative_to(folder):
                moved[path] = path
                continue
            target = folder / "uploads" / secrets.token_hex(6) / source.name
            try:
                target.parent.mkdir(parents=True)
                if resolved.is_relative_to(upload_folder()):
                    link_or_copy(resolved, target)
                else:
                    shutil.copyfile(source, target)
            except OSError:  # a full disk, a file gone: the upload stays where Gradio put it (its sweep deletes it)
                moved[path] = path
                continue
            moved[path] = str(target)
            if is_gradios_upload(resolved) and not self._is_protected(target):
                for _ in range(times):
                    self.uploads.used(resolved)
        return moved

    def touch(self, session: str) -> None:
        """Mark the session's files as used now, so that Gradio's age-based sweep leaves them."""
        with self._lock:
            folders = [self._folders.get(session), self._aside.get(session, (None, None))[0]]
        for folder in (f for f in folders if f is not None):
            for path in folder.rglob("*"):
                try:
                    os.utime(path)
                except OSError:
                    pass

    def set_aside(self, session: str, conversation: Conversation) -> None:
        """Clear: `conversation` and the session's folder are kept aside for an Undo (`bring_back`)
        until `drop_aside` (the next answer) or `end`; the session starts a new folder. What was
        aside before is deleted. The folder's files stay the session's owner's alone meanwhile."""
        with self._lock:
            folder = self._folders.pop(session, None)
            self._conversations.pop(session, None)
            before = self._aside.pop(session, None)
            self._aside[session] = (folder, conversation)
        self._delete(before)

    def bring_back(self, session: str) -> Conversation | None:
        """Undo of Clear: the conversation set aside is the session's again, with its folder (the
        folder started since, holding nothing sent, is deleted). None when nothing is aside."""
        with self._lock:
            aside = self._aside.pop(session, None)
            if aside is None:
                return None
            started = self._folders.pop(session, None)
            self._sessions.pop(started, None)
            folder, conversation = aside
            if folder is not None:
                self._folders[session] = folder
            self._conversations[session] = conversation
        if started is not None:
            shutil.rmtree(started, ignore_errors=True)
        return conversation

    def drop_aside(self, session: str) -> None:
        """The cleared conversation can no longer come back: delete it and its files."""
        with self._lock:
            aside = self._aside.pop(session, None)
        self._delete(aside)

    def _delete(self, aside: tuple[Path | None, Conversation] | None) -> None:
        """Empty a conversation set aside and delete its folder (whose files then belong to no one)."""
        if aside is None:
            return
        folder, conversation = aside
        with self._lock:
            self._sessions.pop(folder, None)
        conversation.turns.clear()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        release_memory()

    def end(self, session: str) -> None:
        """The session is over: empty its conversation and delete its folder (and what Clear set aside)."""
        with self._lock:
            ended = self._release(session)
        self._finish(*ended)

    def new_folder(self) -> Path:
        """A folder for a conversation that is no session's yet (a Load being checked): its files are
        served to no one until `replace` makes it a session's; `discard` deletes it."""
        folder = self.root / secrets.token_urlsafe(16)
        folder.mkdir(parents=True)
        return folder

    def discard(self, folder: Path) -> None:
        """Delete a folder `new_folder` made that did not become a session's (and hand back the memory
        the conversation being checked took)."""
        with self._lock:
            if folder in self._sessions:
                raise ValueError("a session's folder is deleted by ending the session")
        shutil.rmtree(folder, ignore_errors=True)
        release_memory()

    def replace(self, session: str, folder: Path, conversation: Conversation) -> None:
        """Load: `conversation`, with its files in `folder` (from `new_folder`), is now the session's;
        the session's old conversation ends, with its folder and what Clear set aside."""
        with self._lock:
            ended = self._release(session)
            self._folders[session] = folder
            self._sessions[folder] = session
            self._conversations[session] = conversation
        self._finish(*ended)

    def _release(self, session: str) -> tuple:
        """Forget the session's folder, conversation and what is aside (under the lock); what to finish."""
        folder = self._folders.pop(session, None)
        self._sessions.pop(folder, None)
        return folder, self._conversations.pop(session, None), self._aside.pop(session, None)

    def _finish(self, folder: Path | None, conversation: Conversation | None, aside) -> None:
        if aside is not None:
            self._delete(aside)
        if conversation is not None:
            conversation.turns.clear()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        release_memory()

    def _is_protected(self, path: Path) -> bool:
        digests = self._protected.get(path.stat().st_size)
        return bool(digests) and hashlib.sha256(path.read_bytes()).hexdigest() in digests
