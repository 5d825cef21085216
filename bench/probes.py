"""What `bench.engine` measures with: this process's peak RSS, and when each token is generated.

RSS: `PeakRss` samples /proc/self/statm (psutil elsewhere) every 10 ms in a thread for the
duration of a phase, after giving freed heap pages back to the OS (glibc `malloc_trim(0)`), so a
phase is not flattered or penalised by what an earlier one left resident.

Tokens: `TokenClock` hooks the model's forward (one call per generated token) and records when
each call ends and how long the prompt was; a hook on its language model records how many tokens
the KV cache held when the generation's first forward began (the local engine reads a prompt in
chunks through the base model before `generate`'s first forward: those chunks are prefill, not
cache reuse). `timed` turns a stream of text pieces plus those records into the figures of one
generation.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

from demo.record.sessions import release_memory  # glibc's malloc_trim(0)

# -- memory -------------------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size now."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


class PeakRss:
    """Context manager: samples RSS every `interval` seconds in a thread; `.before` and `.peak` in bytes."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.before = self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRss:
        release_memory()
        self.before = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


# -- timing -------------------------------------------------------------------------------------


class TokenClock:
    """Forward hooks on the model: for every forward (one per generated token) its end time,
    the tokens it was fed and the tokens already in its KV cache; and the cache's length when
    the language model first ran in this generation."""

    def __init__(self, model) -> None:
        self.calls: list[tuple[float, int, int]] = []  # (end time, tokens fed, tokens cached)
        self.cached_at_start: int | None = None  # tokens in the cache at the first language-model forward
        self._pending: tuple[int, int] = (0, 0)
        self._handles = [
            model.register_forward_pre_hook(self._before, with_kwargs=True),
            model.register_forward_hook(self._after),
            model.model.language_model.register_forward_pre_hook(self._language, with_kwargs=True),
        ]

    def _language(self, module, args, kwargs) -> None:
        if self.cached_at_start is None:
            cache = kwargs.get("cache")
            self.cached_at_start = 0 if cache is None else int(cache.get_seq_length())

    def _before(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids")
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        cache = kwargs.get("cache")
        self._pending = (0 if ids is None else int(ids.shape[1]), 0 if cache is None else int(cache.get_seq_length()))

    def _after(self, module, args, output) -> None:
        self.calls.append((time.perf_counter(), *self._pending))

    def reset(self) -> None:
        self.calls = []
        self.cached_at_start = None

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def timed(pieces: Iterator[str], started: float, clock: TokenClock) -> dict:
    """Consume a stream of text pieces started at `started` (perf_counter); its figures."""
    first_text = None
    text = []
    cpu_started = time.process_time()
    for piece in pieces:
        if piece and first_text is None:
            first_text = time.perf_counter()
        text.append(piece)
    ended = time.perf_counter()
    calls = clock.calls
    if not calls:
        raise RuntimeError("the model was never called: nothing was generated")
    first_token, fed, cached = calls[0]
    prompt = fed + cached
    if clock.cached_at_start is not None:  # the prompt may have been read in chunks before this forward
        cached = clock.cached_at_start
    after_first = ended - first_token
    return {
        "first_text_s": None if first_text is None else first_text - started,
        "first_token_s": first_token - started,
        "decode_tok_s": (len(calls) - 1) / after_first if len(calls) > 1 and after_first > 0 else None,
        "new_tokens": len(calls),
        "prompt_tokens": prompt,
        "prefilled_tokens": prompt - cached,
        "cached_tokens": cached,
        "total_s": ended - started,
        "cpu_per_wall": (time.process_time() - cpu_started) / max(ended - started, 1e-9),
        "loadavg_1min_end": os.getloadavg()[0],  # everything runnable on the machine, this run included
        "answer": "".join(text),
    }
