"""A stand-in for the Hugging Face Hub that serves local checkpoint directories, for tests.

It answers the routes `huggingface_hub` 2.4 uses to look a model up and download a snapshot
(read from its source: `HfApi.model_info` / `repo_info`, `list_repo_tree`, `get_hf_file_metadata`,
`http_get`), with the headers the client needs:

- `GET /api/models/{repo}/revision/{rev}` (`?blobs=true` adds sizes and LFS data): the model info.
- `GET /api/models/{repo}/tree/{rev}?recursive=...`: the file listing (one page, no `Link`).
- `HEAD|GET /{repo}/resolve/{rev}/{file}`: a small file answers 200 with `ETag` (its git blob id),
  `X-Repo-Commit` and `Content-Length`; an LFS file (`*.safetensors`) answers 302 with
  `X-Linked-Etag` (its sha256), `X-Linked-Size`, `X-Repo-Commit` and a `Location` on another
  origin (the "CDN", a second port), as the real Hub sends weights to its CDN.
- `HEAD|GET /cdn/{sha256}` on the CDN port: the bytes, with `Range: bytes=N-` answered 206.

Errors look like the Hub's: a repository it does not serve is 404 with `X-Error-Code: RepoNotFound`;
a gated one answers its info but refuses its files with 401 (403 with a token) and
`X-Error-Code: GatedRepo`; a failing one answers 500 everywhere.

Bodies are sent in small chunks at `rate` bytes per second per connection, so a download takes
a while; with `hold`, the CDN waits for `release()` (SIGUSR1 to the process) before it sends any
weights, so a test can look at the page first; `drop_after` cuts one connection once, after that
many bytes of LFS files. It knows nothing of xet storage (no `X-Xet-*` headers: plain HTTP).

Run as a process (the tests kill it): `python -m tests.hub_server --port P --repo org/name=DIR ...`;
it prints `ready <hub url> <cdn url>` when it listens, then one line per request.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin")


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class ServedFile:
    name: str
    data: bytes
    lfs: bool
    sha256: str = ""
    blob_id: str = ""
    pointer_size: int = 0

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        if self.lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()
            self.blob_id, self.pointer_size = _git_blob_id(pointer), len(pointer)
        else:
            self.blob_id = _git_blob_id(self.data)


@dataclass
class ServedRepo:
    repo_id: str
    files: dict[str, ServedFile]
    gated: bool = False
    commit: str = field(init=False)

    def __post_init__(self) -> None:
        listing = "\n".join(f"{f.name} {f.blob_id}" for f in sorted(self.files.values(), key=lambda f: f.name))
        self.commit = hashlib.sha1(listing.encode()).hexdigest()

    @classmethod
    def from_dir(cls, repo_id: str, directory: Path, gated: bool = False) -> ServedRepo:
        files = {p.name: ServedFile(p.name, p.read_bytes(), p.name.endswith(LFS_SUFFIXES)) for p in sorted(Path(directory).iterdir()) if p.is_file()}
        files[".gitattributes"] = ServedFile(".gitattributes", b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n", False)
        files["README.md"] = ServedFile("README.md", f"# {repo_id}\n\nServed by tests/hub_server.py.\n".encode(), False)
        return cls(repo_id, files, gated)

    def info(self, blobs: bool) -> dict:
        siblings = []
        for f in self.files.values():
            entry: dict = {"rfilename": f.name}
            if blobs:
                entry.update(size=len(f.data), blobId=f.blob_id)
                if f.lfs:
                    entry["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": f.pointer_size}
            siblings.append(entry)
        return {
            "_id": self.commit[:24], "id": self.repo_id, "modelId": self.repo_id, "sha": self.commit,
            "private": False, "gated": "manual" if self.gated else False, "disabled": False,
            "lastModified": "2024-09-01T00:00:00.000Z", "tags": ["transformers"], "library_name": "transformers",
            "downloads": 0, "likes": 0, "siblings": siblings,
        }

    def tree(self) -> list[dict]:
        entries = []
        for f in self.files.values():
            entry: dict = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": f.name}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": f.pointer_size}
            entries.append(entry)
        return entries


class FakeHub:
    """Serves `repos` on a hub port and a CDN port of 127.0.0.1, in threads of this process."""

    def __init__(
        self,
        repos: list[ServedRepo],
        *,
        failing: tuple[str, ...] = (),
        rate: float | None = None,
        hold: bool = False,
        drop_after: int | None = None,
        port: int = 0,
        log=None,
    ) -> None:
        self.repos = {r.repo_id: r for r in repos}
        self.failing = set(failing)
        self.rate = rate
        self.released = threading.Event()
        if not hold:
            self.released.set()
        self.drop_after = drop_after
        self.lfs_bytes_sent = 0
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self._log = log
        self._lock = threading.Lock()
        self.hub = ThreadingHTTPServer(("127.0.0.1", port), _handler(self, cdn=False))
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=True))
        for server in (self.hub, self.cdn):
            server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self.cdn.server_address[1]}"
        self._threads: list[threading.Thread] = []
        self.connections: set = set()  # open client sockets, closed by `stop`

    def start(self) -> FakeHub:
        for server in (self.hub, self.cdn):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection (kept-alive ones too), as a dead server would."""
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()
        with self._lock:
            connections, self.connections = list(self.connections), set()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def record(self, method: str, path: str, byte_range: str) -> None:
        with self._lock:
            self.requests.append((method, path, byte_range))
        if self._log is not None:
            print(f"{method} {path} {byte_range or '-'}", file=self._log, flush=True)

    def release(self) -> None:
        """Let the CDN send weights (see `hold`)."""
        self.released.set()

    def count_lfs_bytes(self, n: int) -> bool:
        """Count bytes of weights sent; True once, when the connection should be cut (`drop_after`)."""
        with self._lock:
            self.lfs_bytes_sent += n
            drop = self.drop_after is not None and self.lfs_bytes_sent >= self.drop_after
            if drop:
                self.drop_after = None
        return drop


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+))?/?$")
_CDN = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")


def _handler(hub: FakeHub, *, cdn: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args) -> None:  # the request log is `hub.record`
            pass

        def setup(self) -> None:
            super().setup()
            with hub._lock:
                hub.connections.add(self.connection)

        def finish(self) -> None:
            with hub._lock:
                hub.connections.discard(self.connection)
            super().finish()

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        # -- routing ----------------------------------------------------------------------

        def _serve(self, body: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.record(self.command, self.path, self.headers.get("Range", ""))
            if cdn:
                match = _CDN.match(path)
                found = match and next((f for r in hub.repos.values() for f in r.files.values() if f.sha256 == match["sha"]), None)
                if not found:
                    return self._error(404, "EntryNotFound", "Entry not found", body)
                return self._file(found, {}, body)
            match = _API.match(path) or _RESOLVE.match(path)
            if not match:
                return self._error(404, None, "Not found", body)
            repo_id = match["repo"]
            if repo_id in hub.failing:
                return self._error(500, None, "Internal Error - We're working hard to fix this as soon as possible!", body)
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found", body)
            rev = match["rev"] or "main"
            if rev not in ("main", repo.commit):
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + rev, body)
            if "file" not in match.groupdict():
                if match["kind"] == "tree":
                    return self._json(repo.tree(), body)
                return self._json(repo.info(blobs="true" in parse_qs(url.query).get("blobs", [])), body)
            if repo.gated:
                status = 403 if self.headers.get("Authorization") else 401
                message = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in."
                return self._error(status, "GatedRepo", message, body)
            served = repo.files.get(match["file"])
            if served is None:
                return self._error(404, "EntryNotFound", f"{match['file']} does not exist on \"{rev}\"", body, repo.commit)
            if served.lfs:
                self.send_response(302)
                self.send_header("Location", f"{hub.cdn_url}/cdn/{served.sha256}")
                self.send_header("X-Linked-Etag", f'"{served.sha256}"')
                self.send_header("X-Linked-Size", str(len(served.data)))
                self.send_header("X-Repo-Commit", repo.commit)
                self.send_header("ETag", f'"{served.blob_id}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self._file(served, {"ETag": f'"{served.blob_id}"', "X-Repo-Commit": repo.commit}, body)

        # -- answers ----------------------------------------------------------------------

        def _json(self, payload, body: bool) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _error(self, status: int, code: str | None, message: str, body: bool, commit: str | None = None) -> None:
            data = json.dumps({"error": message}).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _file(self, served: ServedFile, headers: dict[str, str], body: bool) -> None:
            size = len(served.data)
            start = 0
            byte_range = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "").strip())
            if byte_range:
                start = int(byte_range[1])
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            if not body:
                return
            if served.lfs:
                hub.released.wait()
            chunk = 8192 if hub.rate is None else max(1024, int(hub.rate / 20))
            for offset in range(start, size, chunk):
                piece = served.data[offset : offset + chunk]
                try:
                    self.wfile.write(piece)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                if served.lfs and hub.count_lfs_bytes(len(piece)):
                    self.connection.shutdown(socket.SHUT_RDWR)  # cut mid-file, as a broken network would
                    self.close_connection = True
                    return
                if hub.rate:
                    time.sleep(len(piece) / hub.rate)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve checkpoint directories the way the Hugging Face Hub does (for tests).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--repo", action="append", default=[], metavar="ORG/NAME=DIR", help="a repository to serve")
    parser.add_argument("--gated", action="append", default=[], metavar="ORG/NAME=DIR", help="a gated repository")
    parser.add_argument("--failing", action="append", default=[], metavar="ORG/NAME", help="answer 500 for it")
    parser.add_argument("--rate", type=float, default=None, help="bytes per second per connection")
    parser.add_argument("--hold", action="store_true", help="send no weights until SIGUSR1")
    args = parser.parse_args(argv)
    repos = [ServedRepo.from_dir(*spec.split("=", 1)) for spec in args.repo]
    repos += [ServedRepo.from_dir(*spec.split("=", 1), gated=True) for spec in args.gated]
    hub = FakeHub(repos, failing=tuple(args.failing), rate=args.rate, hold=args.hold, port=args.port, log=sys.stdout)
    # The signals are taken synchronously, blocked before the server threads start (they inherit
    # the mask): SIGUSR1 releases the weights, SIGTERM or SIGINT ends the server.
    handled = {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, handled)
    hub.start()
    print(f"ready {hub.url} {hub.cdn_url}", flush=True)
    while signal.sigwait(handled) == signal.SIGUSR1:
        hub.release()
    hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
