"""Download a model from the Hugging Face Hub before it is loaded, and say how it goes.

`fetch_model` asks the Hub once for the model's files and sizes (one call, a few seconds at
most: `HUB_TIMEOUT`), keeps what transformers loads (configs, tokenizer, chat template,
safetensors weights), downloads them with `huggingface_hub.snapshot_download` into the usual
cache (`HF_HOME` / `HF_HUB_CACHE`) and returns the snapshot directory. Meanwhile it reports a
`DownloadProgress` twice a second to a callback (the page) and logs a line every few seconds
(the terminal). When the Hub cannot be reached or answers with an error, a complete copy in the
cache is used; without one, every failure is one `ModelLoadError` sentence saying what to do
(`hub_errors.py` words them; `download_watch.py` measures the download).

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

import fnmatch
import glob
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from demo.engines.base import RANDOM_WEIGHTS_MARKER, ModelLoadError
from demo.engines.hub.download_watch import ModelFile, ProgressCallback, Watch, discard_unfinished
from demo.engines.hub.errors import OTHERWISE, gated_sentence, reason, sentence

log = logging.getLogger(__name__)

# Top-level files transformers reads from a checkpoint; *.bin weights only where there are no safetensors.
WANTED = ("*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken", RANDOM_WEIGHTS_MARKER)
HUB_TIMEOUT = 4.0  # seconds to connect to the Hub and get its answer about a model (HF_HUB_ETAG_TIMEOUT overrides)
# huggingface_hub reads and writes a file 10 MB at a time (constants.DOWNLOAD_CHUNK_SIZE), and its
# progress moves by as much: 10 s without news at 1 MB/s. Smaller pieces keep the bar moving.
DOWNLOAD_CHUNK = 128 * 1024
__all__ = ["ModelFile", "Plan", "discard_unfinished", "download", "fetch_in_background", "fetch_model", "is_hub_id",
           "local_checkpoint", "plan_download", "wanted_files"]


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
                log.warning("%s: cannot ask the Hub (%s); using the copy in the cache: %s", repo_id, reason(e, timeout), cached)
                return Plan(**where, cached=cached)
            raise ModelLoadError(sentence(e, repo_id, endpoint, cache, timeout)) from None
    if info.gated and not _has_token():  # its files would be refused: say so now, not after the first request
        raise ModelLoadError(gated_sentence(repo_id, endpoint, token_sent=False))
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
    watch = Watch(plan.repo_id, list(plan.files), storage, plan.commit, on_progress)
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
        raise ModelLoadError(sentence(e, plan.repo_id, plan.endpoint, plan.cache, waited, progress)) from None
    watch.stop(finished=True)
    return Path(path)


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


def _has_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())
