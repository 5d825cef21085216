"""One thread for all of the local engine's work with torch on the CPU.

Why: torch's CPU kernels run in parallel through OpenMP (GNU libgomp in the PyPI wheels), and
each thread that runs a parallel kernel gets a team of OpenMP worker threads of its own, kept
for as long as that thread lives. Once the process holds more of those threads than it has
CPUs, libgomp stops spinning at its barriers (`do_spin` in libgomp's `wait.h` switches to
`gomp_throttled_spin_count_var`, 100 spins) and every parallel region waits on a futex instead.
A decode step is some 200 small parallel regions, so this costs a third: on this project's
2-CPU machine a 2B model's int8 decode step took 141 ms in the thread that generates when the
model had been loaded in the main thread, and 107 ms when one thread did both. The same held
for float32 and for any two threads (measured with torch 2.14.1).

So `TORCH_THREAD` runs the engine's loading, preprocessing and generation, one job at a time,
and the other threads (Gradio's handlers, the main thread) hand it work and wait, or read a
stream it fills. It is started on first use, and again in a forked child (which has none of
its parent's threads: ZeroGPU's worker is one).

Why not a `ThreadPoolExecutor(max_workers=1)`: its worker is joined when the interpreter exits,
so an answer being generated would hold a stopped app until its last token, and in a forked child
it still counts its parent's thread as its own and never starts one.

What it does not know: which work needs it. The engine decides (on the CPU only); a job may
call `call` again from the thread itself, which then runs inline.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class TorchThread:
    """A daemon thread that runs submitted callables in order; `call` waits for the result."""

    def __init__(self, name: str = "torch") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process the thread was started in
        self._jobs: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None
        self._last: Future | None = None  # the job submitted last: jobs run in order
        os.register_at_fork(after_in_child=self._forget_parent)

    def _forget_parent(self) -> None:
        """In a forked child: the parent's thread is not here, and its lock may have been held."""
        self._lock = threading.Lock()
        self._pid = self._jobs = self._thread = self._last = None

    def _queue(self) -> queue.SimpleQueue:
        with self._lock:
            if self._pid != os.getpid():
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(target=_serve, args=(self._jobs,), name=self.name, daemon=True)
                self._thread.start()
                self._pid = os.getpid()
            return self._jobs

    def is_current(self) -> bool:
        """True in the thread itself."""
        return self._thread is not None and threading.current_thread() is self._thread

    def busy(self) -> bool:
        """True while a job runs or waits."""
        last = self._last
        return last is not None and not last.done()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future:
        """Queue `fn(*args, **kwargs)`; its future. Jobs run one at a time, in order."""
        future: Future = Future()
        jobs = self._queue()
        self._last = future
        jobs.put((future, fn, args, kwargs))
        return future

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in the thread (inline when already there); its result or its exception."""
        if self.is_current():
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()


def in_new_thread(fn: Callable[[], T], name: str) -> Future:
    """`fn()` in a daemon thread of its own (where a shared thread is not wanted: on a GPU); its future."""
    future: Future = Future()
    threading.Thread(target=_run, args=(future, fn, (), {}), name=name, daemon=True).start()
    return future


def _serve(jobs: queue.SimpleQueue) -> None:
    while True:
        job = jobs.get()
        _run(*job)
        del job  # hold nothing (inputs, tensors) while idle


def _run(future: Future, fn: Callable, args: tuple, kwargs: dict) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn(*args, **kwargs))
    except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the future
        future.set_exception(e)


TORCH_THREAD = TorchThread()
