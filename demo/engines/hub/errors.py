"""One sentence for each way asking or downloading from the Hugging Face Hub can fail, saying what to do.

Reads the exceptions huggingface_hub 2.4 and its HTTP client (httpx2) raise: `GatedRepoError`
(`X-Error-Code: GatedRepo`, 401 without a token, 403 with one), `RepositoryNotFoundError`
(`RepoNotFound`, or 401 on a repository URL), `HfHubHTTPError` (any other status, e.g. 500),
`httpx2.ConnectError` / `TimeoutException` / `RemoteProtocolError` (no network, no answer, a
connection cut), `LocalEntryNotFoundError` (a file's metadata could not be fetched and it is not
cached) and `OSError` ("Consistency check failed": a file cut short; ENOSPC: a full disk).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from demo.engines.hub.progress import DownloadProgress, human_bytes

OTHERWISE = "or start with --model tiny-random or a local checkpoint directory (--model /path/to/checkpoint)"
TOKEN_HOW = "HF_TOKEN=hf_... in the environment, or `hf auth login`"


def reason(error: BaseException, timeout: float) -> str:
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


def is_network_error(error: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(error, (httpx2.TransportError, ConnectionError, LocalEntryNotFoundError)):
        return True
    return isinstance(error, OSError) and "Consistency check failed" in str(error)  # a file cut short


def gated_sentence(repo_id: str, endpoint: str, token_sent: bool) -> str:
    if token_sent:
        return f"Your Hugging Face token has no access to the gated model {repo_id} yet: accept its conditions at {endpoint}/{repo_id} with that account, then start again."
    return f"{repo_id} is a gated model: accept its conditions at {endpoint}/{repo_id} while logged in, then give this app your access token ({TOKEN_HOW})."


def sentence(
    error: BaseException, repo_id: str, endpoint: str, cache: Path, timeout: float, progress: DownloadProgress | None = None
) -> str:
    """One sentence for the person: what went wrong and what to do."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, GatedRepoError):
        return gated_sentence(repo_id, endpoint, token_sent=status == 403)
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
    if is_network_error(error):
        if progress is not None and not progress.downloaded and progress.files_done == progress.files_resumed:
            return f"The download of {repo_id} could not start ({reason(error, timeout)}): check the network and start again, {OTHERWISE}."
        if progress is not None:
            kept = f"the {progress.files_done} complete files ({human_bytes(progress.complete)}) stay in the cache and only the rest is downloaded"
            return (
                f"The download of {repo_id} stopped at {human_bytes(progress.done)} of {human_bytes(progress.total)}: "
                f"the connection to the Hugging Face Hub was lost ({reason(error, timeout)}); start the app again when "
                f"the network is back: {kept}."
            )
        why = reason(error, timeout)
        if why.startswith("no answer"):
            why += "; on a slow network, allow more time with HF_HUB_ETAG_TIMEOUT=30"
        return (
            f"Cannot reach the Hugging Face Hub at {endpoint} ({why}), and {repo_id} is not "
            f"fully in the cache yet: connect to the network and start again, {OTHERWISE}."
        )
    text = str(error).strip().splitlines()
    return f"Downloading {repo_id} failed ({type(error).__name__}: {text[0] if text else 'no details'})."
