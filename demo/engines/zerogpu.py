"""Hugging Face ZeroGPU: answers generated in the GPU worker that `spaces.GPU` forks.

The contract, read in the `spaces` package's source (0.51.3, `spaces/zero/`): on a ZeroGPU
Space (`SPACES_ZERO_GPU` set) each call of a `spaces.GPU` function asks the ZeroGPU service for
a GPU (`client.schedule`, with the `duration` the call asks for), then runs in a worker process
forked from the app (`wrappers.py`, `Worker`: a 'fork' `multiprocessing` context). Its arguments
are pickled to the worker (`arg_queue.put`), each value its generator yields is pickled back
(`res_queue.put(OkResult(...))`), and nothing the worker changes in memory is seen by the app.
The worker is kept for the next call when the service says the GPU is still `idle`; otherwise
the next call forks a new one from the app as the app is then. When the app closes the
generator, the worker's `stop_event` is set and the worker closes the task's generator after
the next value it yields. An exception other than `gr.Error` reaches the app as "ZeroGPU worker
error" with only its class name; a worker that dies (ZeroGPU ends tasks that overrun) as "GPU
task aborted". The decorator registers the function when it is applied, and the package's
start-up (run by the first `Blocks.launch`) reports to ZeroGPU only if one is registered then.

So, here:

- `_answer_on_gpu` is decorated when this module is imported (app.py imports it before it
  builds and launches the page), with a `duration` computed per call from max_new_tokens.
- It takes only what pickles: the messages (text, PIL images, sampled video frames), the
  settings and the session id. The engine is a module global set in the app before any worker
  is forked, so each worker has it by the fork; nothing of the model is pickled.
- Stop stays in the app: `ZeroGPUEngine.stream` closes the worker's generator when the
  person's Stop switch is set, which ends the generation within a token. The worker also ends
  the answer itself shortly before its GPU time runs out, and says so.
- Failures come back as values, so the person reads the engine's own sentence.
- KV reuse: a session's cache lives in the worker that answered. It serves the next turn only
  if ZeroGPU hands the same worker back; a new worker starts with none and prefills the whole
  conversation. Either way the answer is the same (reuse is exact). Sessions the app forgets
  (Clear, a closed tab) are dropped by the next worker call.

Everywhere else (no `spaces` package, or `SPACES_ZERO_GPU` unset) nothing is decorated and the
engine is used as it is. Not run on a real ZeroGPU Space: tests/test_spaces.py runs the real
`spaces` package in its ZeroGPU mode against a local stand-in for the ZeroGPU service.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import threading
from collections.abc import Iterator
from contextlib import closing

from demo.engines.base import Engine, EngineError, GenerationSettings
from demo.record.conversation import VisionCost

DEFAULT_MAX_SECONDS = 120  # the most GPU time one answer asks for (ZeroGPU refuses requests above its limit)
START_SECONDS = 15  # a worker's start (fork, CUDA, weights to the GPU) and the prefill: an estimate
TOKENS_PER_SECOND = 20  # decode speed assumed for the duration: an estimate, on the low side for a 2B-7B model
_max_seconds = DEFAULT_MAX_SECONDS
_engine: Engine | None = None  # the engine every worker uses: set in the app before the first fork
_forgotten: set[str] = set()  # sessions the app forgot since the last call (dropped in the worker)


def zero_gpu_active() -> bool:
    return bool(os.environ.get("SPACES_ZERO_GPU")) and importlib.util.find_spec("spaces") is not None


def gpu_seconds(messages: list[dict], settings: GenerationSettings, session: str | None = None, forget: tuple = ()) -> int:
    """The GPU time an answer asks ZeroGPU for: start-up plus max_new_tokens at an assumed speed, capped."""
    wanted = START_SECONDS + settings.max_new_tokens / TOKENS_PER_SECOND
    return max(1, min(_max_seconds, math.ceil(wanted)))


def deadline_seconds(duration: int) -> float:
    """When the worker ends the answer itself: a little before `duration` runs out."""
    return duration - min(5.0, duration * 0.2)


def _answer_on_gpu(
    messages: list[dict], settings: GenerationSettings, session: str | None, forget: tuple[str, ...] = ()
) -> Iterator[tuple[str, str]]:
    """In the GPU worker: the answer as ("text", piece) values, then ("timeout", seconds) if the
    GPU time ran short, or ("error", sentence) if it failed."""
    engine = _engine
    if engine is None:
        yield "error", "the model is not loaded in the GPU worker"
        return
    for old in forget:
        engine.forget(old)
    stop = threading.Event()  # the worker's own: set a little before the GPU time runs out
    duration = gpu_seconds(messages, settings, session)
    timer = threading.Timer(deadline_seconds(duration), stop.set)
    timer.daemon = True
    timer.start()
    try:
        with closing(engine.stream(messages, settings, stop, session)) as pieces:
            for piece in pieces:
                yield "text", piece
        if stop.is_set():
            yield "timeout", str(duration)
    except EngineError as e:
        yield "error", str(e)
    except Exception as e:  # noqa: BLE001 - the app would see only the class name
        text = str(e).strip().splitlines()
        yield "error", f"generation failed on the GPU: {type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
    finally:
        timer.cancel()


if zero_gpu_active():  # decorated at import, so that ZeroGPU's start-up (at launch) finds it
    _answer_on_gpu = importlib.import_module("spaces").GPU(duration=gpu_seconds)(_answer_on_gpu)


class ZeroGPUEngine(Engine):
    """The local engine as the app sees it on ZeroGPU: answers come from `_answer_on_gpu`."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        for name in ("model_name", "family", "random_weights", "default_min_pixels", "default_max_pixels", "resize_factor", "zooms"):
            setattr(self, name, getattr(inner, name))

    def __getattr__(self, name: str):  # anything else the app reads is the local engine's
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def vision_cost(self, size_wh: tuple[int, int], settings: GenerationSettings) -> VisionCost:
        return self.inner.vision_cost(size_wh, settings)

    def forget(self, session: str) -> None:
        _forgotten.add(session)  # the cache is in a worker: the next call drops it there

    def stream(
        self, messages: list[dict], settings: GenerationSettings, stop: threading.Event, session: str | None = None
    ) -> Iterator[str]:
        forget = tuple(_forgotten)
        _forgotten.difference_update(forget)
        try:
            with closing(_answer_on_gpu(messages, settings, session, forget)) as results:
                for kind, value in results:
                    if kind == "text":
                        yield value
                    elif kind == "timeout":
                        raise EngineError(
                            f"the answer reached the GPU time ZeroGPU lends one answer ({value} s) and was cut there: "
                            "ask for fewer max new tokens"
                        )
                    else:
                        raise EngineError(value)
                    if stop.is_set():  # Stop: closing the generator stops the worker at its next token
                        return
        except EngineError:
            raise
        except Exception as e:  # noqa: BLE001 - spaces' own refusals (quota, no GPU, aborted) are gr.Error
            message = getattr(e, "message", None) or str(e) or type(e).__name__
            if "aborted" in str(message).lower():
                message = f"{message} (ZeroGPU ends an answer that overruns its GPU time: ask for fewer max new tokens)"
            raise EngineError(f"ZeroGPU: {message}") from None


def configure(max_seconds: int = DEFAULT_MAX_SECONDS) -> None:
    """Set the most GPU time one answer asks for (before any worker is forked)."""
    global _max_seconds
    if max_seconds < 1:
        raise ValueError(f"max_seconds must be at least 1, got {max_seconds}")
    _max_seconds = max_seconds


def on_zero_gpu(engine: Engine) -> Engine:
    """On ZeroGPU: `engine` made the workers' engine, and its stand-in for the app; else `engine` itself."""
    global _engine
    if not zero_gpu_active():
        return engine
    _engine = engine
    return ZeroGPUEngine(engine)
