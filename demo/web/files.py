"""Who may fetch which file: a session's files its owner only, the app's own files anyone.

Gradio 6.31 serves `/gradio_api/file=<path>` (and the older `/gradio_api/file/<path>`) to
anyone who has the URL, when the path is in its upload folder, its cache or the allowed paths
(gradio/route_utils.py `file_fetch`). It reads the path as Starlette decoded the URL (once: `%2F`
is a slash, `%252F` stays `%2F`), makes it absolute with `os.path.abspath` (which folds `..`; a
relative path starts at the working directory) and opens it, symlinks followed. `requested`
does the same and resolves the symlinks, so the file judged is the file served.

In Gradio's upload folder (where uploads land, where Gradio copies the files it shows, and where
`demo/record/sessions.py` keeps each session's folder) a file is served
- from a session's folder: to the owner of that session only (`demo/web/owners.py`);
- named by the Blocks' configuration (the examples, which Gradio copied into its upload folder
  when the page was built; every visitor's page is given their URLs): to anyone;
- just uploaded (before a message takes it into a session's folder, it is where Gradio put it,
  and the textbox shows its preview): to whoever uploaded it (`Uploads`, filled from the answers
  of Gradio's upload route; the same bytes under the same name are one path, so everyone who
  sent them);
- anything else: to no one.
A session's folder outside the upload folder is judged the same way; any other path is left to
Gradio's own rules. A refusal is the 404 of a route that does not exist, so it does not tell a
file that exists from one that does not. An http(s) URL after `file=` (Gradio fetches it for the
asker) is refused: this app never shows a remote file.

The same rule holds for the paths a request names as inputs (`named_paths`): Gradio takes any
path in its upload folder, and the app copies a message's files into the sender's own folder, so
a stranger who sent another's path in a message would be served the copy.

Knows nothing of the guard's ASGI plumbing; of Gradio it is given the Blocks' `config` and the
upload folder. It does not know who uploaded a file more than `capacity` uploads ago (that
file is then refused to everyone until it is sent or uploaded again), nor anything of files
Gradio copies from elsewhere for a session: every file the app shows a session must be in its folder.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from demo.record.sessions import folder_of, session_of_file, upload_folder
from demo.record.uploads import UPLOADS, is_gradios_upload
from demo.web.owners import Owners

PREFIXES = ("/gradio_api/file=", "/gradio_api/file/")


def requested(route_path: str) -> Path | None:
    """The file a `file=` route path leads to, as Gradio 6.31 finds it; None for a URL or a path no file can have."""
    for prefix in PREFIXES:
        if route_path.startswith(prefix):
            return resolved(route_path[len(prefix) :])
    raise ValueError(f"not a file route: {route_path!r}")


def resolved(path: str) -> Path | None:
    """The file Gradio opens for `path` (absolute from the working directory, `..` folded, symlinks
    followed); None for an http(s) URL or a path no file can have."""
    if path.startswith(("http://", "https://")):
        return None
    try:
        return Path(os.path.abspath(path)).resolve()
    except (ValueError, OSError, RuntimeError):  # a NUL byte, a symlink loop
        return None


def named_paths(data: object) -> list[str]:
    """The local paths a request's JSON names: the "path" of every dict that has a string one (what
    Gradio 6.31 takes for a file, `gradio_client.utils.is_file_obj`), URLs left out."""
    found: list[str] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and not path.startswith(("http://", "https://")):
                found.append(path)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


class Uploads:
    """Who uploaded each file of Gradio's upload folder, for the last `capacity` files. Thread-safe."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._by: OrderedDict[str, set[str]] = OrderedDict()  # resolved path -> who uploaded it
        self._lock = threading.Lock()

    def add(self, path: str | Path, who: str) -> None:
        """`who` uploaded the file Gradio put at `path` (counted too: `demo.record.uploads.UPLOADS` deletes
        Gradio's copy only once every upload of it has been sent)."""
        key = resolved(str(path))
        if key is None:
            return
        if is_gradios_upload(key):
            UPLOADS.uploaded(key)
        with self._lock:
            self._by.setdefault(str(key), set()).add(who)
            self._by.move_to_end(str(key))
            while len(self._by) > self.capacity:
                self._by.popitem(last=False)

    def uploaded(self, path: Path, who: str) -> bool:
        with self._lock:
            return who in self._by.get(str(path), ())

    def __len__(self) -> int:
        return len(self._by)


def public_files(config: object) -> frozenset[Path]:
    """The local files a Blocks' configuration names (a FileData dict anywhere in it), resolved."""
    found: set[Path] = set()
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            meta = item.get("meta")
            path = item.get("path")
            if isinstance(meta, dict) and meta.get("_type") == "gradio.FileData" and isinstance(path, str):
                if not path.startswith(("http://", "https://")):
                    found.add(Path(os.path.abspath(path)).resolve())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return frozenset(found)


class FileRules:
    """`may_fetch(path, who)`: the rules above, for one app (its owners, its uploads, its public files)."""

    def __init__(self, owners: Owners, uploads: Uploads | None = None) -> None:
        self.owners = owners
        self.uploads = uploads or Uploads()
        self._public: tuple[object, frozenset[Path]] = (None, frozenset())  # (the config read, its files)

    def may_fetch(self, path: Path | None, who: str, *, config: object = None, upload_dir: str | Path | None = None) -> bool:
        """Whether `who` may be served the file at `path` (a `requested` path); `config` is the Blocks'."""
        if path is None:
            return False
        if folder_of(path) is not None:
            session = session_of_file(path)
            return session is not None and self.owners.owner(session) == who
        folder = Path(upload_dir).resolve() if upload_dir is not None else upload_folder()
        if not path.is_relative_to(folder):
            return True  # Gradio's own rules: allowed paths, static files, or refused
        return path in self._public_files(config) or self.uploads.uploaded(path, who)

    def is_public(self, path: Path) -> bool:
        """Whether `path` is one of the app's own files (an example), by the last configuration read."""
        return path.resolve() in self._public[1]

    def _public_files(self, config: object) -> frozenset[Path]:
        if config is None:
            return frozenset()
        known, files = self._public
        if known is not config:  # Gradio builds a new config when it launches or reloads
            files = public_files(config)
            self._public = (config, files)
        return files
