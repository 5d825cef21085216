"""Download a model from the Hugging Face Hub before it is loaded, and say how it goes.

`fetch_model` asks the Hub once for the model's files and sizes (one call, a few seconds at
most: `HUB_TIMEOUT`), keeps what transformers loads (configs, tokenizer, chat template,
safetensors weights), downloads them with `huggingface_hub.snapshot_download` into the usual
cache (`HF_HOME` / `HF_HUB_CACHE`) and returns the snapshot directory. Meanwhile it reports a
`DownloadProgress` twice a second to a callback (the page) and logs a line every few seconds
(the terminal). When the Hub cannot be reached or answers with an error, a complete copy in the
cache is used; without one, every failure is one `ModelLoadError` sentence saying what to do.

Only asking the Hub is bounded tightly (a Hub that does not answer fails the start in seconds);
the download itself keeps huggingface_hub's own waits (10 s without a byte, then it resumes), so
a slow but working connection is never cut. The library's download chunk is lowered from 10 MB
to 128 kB (`DOWNLOAD_CHUNK`), so progress moves at least every second from 128 kB/s up.

What it does not know or do: huggingface_hub 2.4 writes each file to a private temporary file
and deletes it when the download fails, so a new start resumes file by file (complete files
are kept, a file cut in the middle starts again); within one start the library resumes a cut
file itself with a Range request, up to five times. Bytes are counted from the partial files in
the cache and from the library's progress hook (`tqdm_class`), whichever is further; downloads
of xet-stored repositories (hf_xet) are counted by the hook only, and were not tested here.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from demo.engines.base import RANDOM_WEIGHTS_MARKER, ModelLoadError
from demo.engines.progress import DownloadProgress, FileProgress, human_bytes

log = logging.getLogger(__name__)

# Top-level files transformers reads from a checkpoint; *.bin weights only where there are no safetensors.
WANTED = ("*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken", RANDOM_WEIGHTS_MARKER)
HUB_TIMEOUT = 4.0  # seconds to connect to the Hub and get its answer about a model (HF_HUB_ETAG_TIMEOUT overrides)
REPORT_EVERY = 0.5  # seconds between two progress reports to the callback
LOG_EVERY = 5.0  # seconds between two progress lines in the log
# huggingface_hub reads and writes a file 10 MB at a time (constants.DOWNLOAD_CHUNK_SIZE), and its
# progress moves by as much: 10 s without news at 1 MB/s. Smaller pieces keep the bar moving.
DOWNLOAD_CHUNK = 128 * 1024
OTHERWISE = "or start with --model tiny-random or a local checkpoint directory (--model /path/to/checkpoint)"
TOKEN_HOW = "HF_TOKEN=hf_... in the environment, or `hf auth login`"

ProgressCallback = Callable[[DownloadProgress], None]


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    etag: str  # its blob's name in the cache: the LFS sha256, else the git blob id


def is_hub_id(model: str) -> bool:
    """True for a Hub model id ('owner/name') that is not also a local path."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if Path(model).expanduser().exists():
        return False
    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return True


def wanted_files(files: list[ModelFile]) -> list[ModelFile]:
    """The files of a repository that transformers needs to load it (top level only)."""
    top = [f for f in files if "/" not in f.name]
    chosen = [f for f in top if any(fnmatch.fnmatchcase(f.name, p) for p in WANTED)]
    if not any(f.name.endswith(".safetensors") for f in chosen):
        chosen += [f for f in top if f.name.endswith(".bin")]  # older checkpoints: PyTorch weights
    return chosen


def local_checkpoint(model: str, on_progress: ProgressCallback | None = None) -> str:
    """`model` if it is a local directory (or no Hub id); else the directory it was downloaded to."""
    return str(fetch_model(model, on_progress=on_progress)) if is_hub_id(model) else model


def fetch_model(
    repo_id: str,
    *,
    on_progress: ProgressCallback | None = None,
    revision: str = "main",
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    timeout: float | None = None,
) -> Path:
    """Download what transformers needs of `repo_id` (unless cached); its local snapshot directory."""
    plan = plan_download(repo_id, revision=revision, endpoint=endpoint, cache_dir=cache_dir, timeout=timeout)
    return download(plan, on_progress)


def fetch_in_background(plan: Plan, on_progress: ProgressCallback | None = None) -> Future:
    """Run `download(plan)` in a daemon thread (the program may end without waiting for it)."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(download(plan, on_progress))
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the future
            future.set_exception(e)

    threading.Thread(target=run, name="fetch-model", daemon=True).start()
    return future


@dataclass(frozen=True)
class Plan:
    """What to download, found out by asking the Hub once; or the cached copy to use instead."""

    repo_id: str
    revision: str
    endpoint: str
    cache: Path  # the hub cache folder (HF_HUB_CACHE)
    timeout: float
    commit: str = ""
    files: tuple[ModelFile, ...] = ()
    cached: Path | None = None  # a complete snapshot in the cache, when the Hub could not be asked


def plan_download(
    repo_id: str,
    *,
    revision: str = "main",
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    timeout: float | None = None,
) -> Plan:
    """Ask the Hub which files `repo_id` has (one request, `timeout` seconds at most per step).

    When the Hub cannot be reached or refuses, a complete cached copy is used; without one,
    raises `ModelLoadError` with one sentence saying what to do.
    """
    from huggingface_hub import constants

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    timeout = timeout or float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or HUB_TIMEOUT)
    where = {"repo_id": repo_id, "revision": revision, "endpoint": endpoint, "cache": cache, "timeout": timeout}
    with _quiet_hub_logs():
        if constants.is_offline_mode():
            if cached := _cached_snapshot(repo_id, revision, cache):
                return Plan(**where, cached=cached)
            raise ModelLoadError(f"HF_HUB_OFFLINE is set and {repo_id} is not in the cache ({cache}): unset it to download the model, {OTHERWISE}.")
        try:
            info = _model_info(repo_id, revision, endpoint, timeout)
        except Exception as e:  # noqa: BLE001 - whatever went wrong, a cached copy may still do
            if cached := _cached_snapshot(repo_id, revision, cache):
                log.warning("%s: cannot ask the Hub (%s); using the copy in the cache: %s", repo_id, _reason(e, timeout), cached)
                return Plan(**where, cached=cached)
            raise ModelLoadError(_sentence(e, repo_id, endpoint, cache, timeout)) from None
    if info.gated and not _has_token():  # its files would be refused: say so now, not after the first request
        raise ModelLoadError(_gated_sentence(repo_id, endpoint, token_sent=False))
    files = wanted_files([ModelFile(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else (s.blob_id or "")) for s in info.siblings or []])
    if not any(f.name == "config.json" for f in files):
        raise ModelLoadError(f"{repo_id} on the Hub has no config.json: it is not a checkpoint transformers can load (check the model id).")
    return Plan(**where, commit=info.sha or "", files=tuple(files))


def download(plan: Plan, on_progress: ProgressCallback | None = None) -> Path:
    """Download the plan's files with `snapshot_download`, reporting progress; the snapshot directory."""
    from huggingface_hub import constants, snapshot_download

    if plan.cached is not None:
        return plan.cached
    constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, DOWNLOAD_CHUNK)
    storage = plan.cache / f"models--{plan.repo_id.replace('/', '--')}"
    watch = _Watch(plan.repo_id, list(plan.files), storage, plan.commit, on_progress)
    watch.announce(plan.endpoint, plan.cache)
    watch.start()
    try:
        with _quiet_hub_logs():
            path = snapshot_download(
                plan.repo_id,
                revision=plan.revision,
                endpoint=plan.endpoint,
                cache_dir=plan.cache,
                allow_patterns=[glob.escape(f.name) for f in plan.files],
                tqdm_class=watch.meter,
            )
    except Exception as e:  # noqa: BLE001 - turned into one sentence below
        progress = watch.stop()
        waited = constants.HF_HUB_DOWNLOAD_TIMEOUT  # the library's own wait for the next byte
        raise ModelLoadError(_sentence(e, plan.repo_id, plan.endpoint, plan.cache, waited, progress)) from None
    watch.stop(finished=True)
    return Path(path)


_active: set[_Watch] = set()  # downloads under way in this process


def discard_unfinished() -> None:
    """Delete the partial files of the downloads under way (before the program ends without them).

    huggingface_hub 2.4 never reuses them, and a process that ends at once skips its own clean-up;
    this process still holds each file's lock, so no other process is writing them.
    """
    for watch in list(_active):
        for path in watch.blobs.glob("*.incomplete"):
            if path.name not in watch.stale:
                path.unlink(missing_ok=True)


def _model_info(repo_id: str, revision: str, endpoint: str, timeout: float):
    """`HfApi.model_info(files_metadata=True)`, but without the user-agent telemetry.

    huggingface_hub's headers may first fetch an "agent harnesses" registry from the same
    endpoint (a 3 s timeout of its own), which would double the wait when the Hub hangs.
    """
    from urllib.parse import quote

    from huggingface_hub import get_token
    from huggingface_hub.hf_api import ModelInfo
    from huggingface_hub.utils import get_session, hf_raise_for_status

    headers = {"user-agent": "qwen-vl-chat"}
    if token := get_token():
        headers["authorization"] = f"Bearer {token}"
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
    response = get_session().get(url, params={"blobs": True}, headers=headers, timeout=timeout)
    hf_raise_for_status(response)
    return ModelInfo(**response.json())


def _cached_snapshot(repo_id: str, revision: str, cache: Path) -> Path | None:
    """The cached snapshot's directory if every wanted file is there (as far as the cache can tell)."""
    from huggingface_hub import get_cached_repo_tree, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        tree = get_cached_repo_tree(repo_id, revision=revision, cache_dir=cache)
        patterns: list[str] | None = [glob.escape(f.name) for f in wanted_files([ModelFile(f.path, f.size, "") for f in tree])]
    except Exception:  # noqa: BLE001 - no listing cached (files fetched one by one): only the folder is checked
        patterns = None
    try:
        path = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True, allow_patterns=patterns))
    except LocalEntryNotFoundError:  # also IncompleteSnapshotError
        return None
    return path if (path / "config.json").is_file() else None


class _ByteMeter(tqdm):
    """A silent progress bar for `snapshot_download(tqdm_class=...)`: it only counts bytes."""

    bars: list[_ByteMeter] = []  # each download gets its own subclass, with its own list
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


class _Watch:
    """Measures one download from a thread: bytes on disk per file, the rate, the time left."""

    def __init__(self, repo_id: str, files: list[ModelFile], storage: Path, commit: str, on_progress: ProgressCallback | None) -> None:
        self.repo_id, self.files, self.on_progress = repo_id, files, on_progress
        self.blobs, self.snapshot = storage / "blobs", storage / "snapshots" / commit
        self.meter = type("ByteMeter", (_ByteMeter,), {"bars": [], "lock": threading.Lock()})
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
        while len(self._samples) > 2 and now - self._samples[0][0] > 8.0:
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


@contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    """huggingface_hub logs every retry as a warning: this module says what happened once instead."""
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    if not os.environ.get("HF_HUB_VERBOSITY"):
        hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_log.setLevel(level)


def _reason(error: BaseException, timeout: float) -> str:
    """Why a connection failed, in a few words, from the innermost network error."""
    import httpx2

    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    for e in chain:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status is not None:
            return f"HTTP {status}"
        if isinstance(e, httpx2.TimeoutException):
            return f"no answer within {timeout:g} s"
        if isinstance(e, httpx2.RemoteProtocolError):
            return "the server closed the connection"
        if isinstance(e, (httpx2.TransportError, ConnectionError)):
            text = str(e).strip().splitlines()
            return text[0] if text else type(e).__name__
    return type(chain[0]).__name__


def _is_network_error(error: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(error, (httpx2.TransportError, ConnectionError, LocalEntryNotFoundError)):
        return True
    return isinstance(error, OSError) and "Consistency check failed" in str(error)  # a file cut short


def _has_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


def _gated_sentence(repo_id: str, endpoint: str, token_sent: bool) -> str:
    if token_sent:
        return f"Your Hugging Face token has no access to the gated model {repo_id} yet: accept its conditions at {endpoint}/{repo_id} with that account, then start again."
    return f"{repo_id} is a gated model: accept its conditions at {endpoint}/{repo_id} while logged in, then give this app your access token ({TOKEN_HOW})."


def _sentence(
    error: BaseException, repo_id: str, endpoint: str, cache: Path, timeout: float, progress: DownloadProgress | None = None
) -> str:
    """One sentence for the person: what went wrong and what to do."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, GatedRepoError):
        return _gated_sentence(repo_id, endpoint, token_sent=status == 403)
    if isinstance(error, RepositoryNotFoundError):
        return (
            f"The Hugging Face Hub has no model {repo_id} (or it is private): check the model id (owner/name, as in "
            f"Qwen/Qwen2-VL-2B-Instruct), or for a private model give your access token ({TOKEN_HOW})."
        )
    if isinstance(error, HfHubHTTPError) and status in (401, 403):
        return f"The Hugging Face Hub refused access to {repo_id} (HTTP {status}): check your access token ({TOKEN_HOW})."
    if isinstance(error, HfHubHTTPError) and status == 429:
        return f"The Hugging Face Hub asks to slow down (HTTP 429, too many requests): wait a few minutes and start again, or log in ({TOKEN_HOW})."
    if isinstance(error, HfHubHTTPError) and status is not None and status >= 500:
        return f"The Hugging Face Hub answered with a server error (HTTP {status}) for {repo_id}: try again in a few minutes, {OTHERWISE}."
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        free = shutil.disk_usage(cache).free if cache.exists() else 0
        need = human_bytes(progress.total) if progress else "more"
        return f"The disk is full: {repo_id} needs {need} in {cache} ({human_bytes(free)} free): free some space, or set HF_HOME to a folder on a larger disk."
    if _is_network_error(error):
        if progress is not None and not progress.downloaded and progress.files_done == progress.files_resumed:
            return f"The download of {repo_id} could not start ({_reason(error, timeout)}): check the network and start again, {OTHERWISE}."
        if progress is not None:
            kept = f"the {progress.files_done} complete files ({human_bytes(progress.complete)}) stay in the cache and only the rest is downloaded"
            return (
                f"The download of {repo_id} stopped at {human_bytes(progress.done)} of {human_bytes(progress.total)}: "
                f"the connection to the Hugging Face Hub was lost ({_reason(error, timeout)}); start the app again when "
                f"the network is back: {kept}."
            )
        reason = _reason(error, timeout)
        if reason.startswith("no answer"):
            reason += "; on a slow network, allow more time with HF_HUB_ETAG_TIMEOUT=30"
        return (
            f"Cannot reach the Hugging Face Hub at {endpoint} ({reason}), and {repo_id} is not "
            f"fully in the cache yet: connect to the network and start again, {OTHERWISE}."
        )
    text = str(error).strip().splitlines()
    return f"Downloading {repo_id} failed ({type(error).__name__}: {text[0] if text else 'no details'})."
