"""`TORCH_THREAD`: the one thread the CPU engine loads, preprocesses and generates in.

Why it exists (OpenMP slows every parallel kernel once two threads have run them) is in
`demo/engines/local/torch_thread.py`; the speed it buys is in `bench/results` (`python -m bench.quantize`).
These tests hold the contract: results and exceptions come back, nested calls run inline, jobs
run in order, a forked child gets a thread of its own, and the engine's torch work all happens
in that one thread, with two answers at once and a Stop of one that waits.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from PIL import Image

from demo.engines.base import GenerationSettings
from demo.engines.local import engine as local
from demo.engines.local.torch_thread import TORCH_THREAD, TorchThread, in_new_thread
from tests.helpers import generating, wait_until


def question(text: str, image: Image.Image | None = None) -> list[dict]:
    content = [{"type": "image", "image": image}] if image is not None else []
    return [{"role": "user", "content": content + [{"type": "text", "text": text}]}]


def test_call_returns_the_result_from_the_thread_and_raises_its_exception():
    worker = TorchThread("test-worker")
    assert worker.call(lambda: threading.current_thread().name) == "test-worker"
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda: 1 / 0)
    assert worker.call(lambda a, b=0: a + b, 2, b=3) == 5  # still serving after a failure


def test_a_call_from_the_thread_itself_runs_inline():
    worker = TorchThread("test-worker")
    assert worker.call(lambda: worker.call(lambda: worker.is_current())) is True  # would deadlock if queued
    assert not worker.is_current()


def test_jobs_run_one_at_a_time_in_order_and_busy_says_so():
    worker = TorchThread("test-worker")
    release = threading.Event()
    order: list[int] = []
    first = worker.submit(lambda: (release.wait(5), order.append(1)))
    rest = [worker.submit(order.append, i) for i in range(2, 6)]
    assert worker.busy()
    time.sleep(0.05)
    assert order == []  # the others wait behind the first
    release.set()
    for future in [first, *rest]:
        future.result(timeout=5)
    assert order == [1, 2, 3, 4, 5]
    assert not worker.busy()


def test_in_new_thread_runs_in_a_named_thread_of_its_own():
    assert in_new_thread(lambda: threading.current_thread().name, name="generate").result(timeout=5) == "generate"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_thread_of_its_own():
    """ZeroGPU's worker is forked from the app: the parent's thread does not exist in the child."""
    parent = TORCH_THREAD.call(threading.get_ident)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, whatever happens
        try:
            child = TORCH_THREAD.call(lambda: (os.getpid(), threading.get_ident()))
            ok = child[0] == os.getpid() and TORCH_THREAD.call(lambda: 6 * 7) == 42
            os.write(write, b"ok" if ok else b"wrong")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 20
    answer = b""
    while time.monotonic() < deadline and not answer:
        answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"ok"
    assert TORCH_THREAD.call(threading.get_ident) == parent  # the parent's thread is untouched


def test_the_cpu_engine_loads_preprocesses_and_generates_in_the_torch_thread(tiny_checkpoint, photos, monkeypatch):
    import transformers

    where: dict[str, set[str]] = {"load": set(), "vision": set(), "language": set()}
    load = transformers.AutoModelForImageTextToText.from_pretrained

    def recorded_load(*args, **kwargs):
        where["load"].add(threading.current_thread().name)
        return load(*args, **kwargs)

    monkeypatch.setattr(local.AutoModelForImageTextToText, "from_pretrained", recorded_load)
    engine = local.TransformersEngine(str(tiny_checkpoint), device="cpu", dtype="float32")
    engine.model.model.visual.register_forward_pre_hook(lambda *_: where["vision"].add(threading.current_thread().name))
    engine.model.model.language_model.register_forward_pre_hook(lambda *_: where["language"].add(threading.current_thread().name))
    image = Image.open(photos["chelsea"]).convert("RGB")
    settings = GenerationSettings(max_new_tokens=4, min_new_tokens=4)
    answer = "".join(engine.stream(question("Describe Picture 1.", image), settings, threading.Event(), "s"))
    inputs = engine.prepare_inputs(question("Describe Picture 1.", image), settings)  # from this (main) thread
    output = engine.generate(inputs, settings)
    assert answer and output.shape[1] == inputs["input_ids"].shape[1] + 4
    assert where == {"load": {"torch"}, "vision": {"torch"}, "language": {"torch"}}


def test_two_answers_at_once_are_computed_one_after_the_other_and_both_are_right(engine):
    settings = GenerationSettings(max_new_tokens=12, min_new_tokens=12)
    alone = ["".join(engine.stream(question(q), settings, threading.Event())) for q in ("Hello", "Goodbye")]
    together: dict[str, str] = {}

    def ask(q: str) -> None:
        together[q] = "".join(engine.stream(question(q), settings, threading.Event()))

    computed_in: set[str] = set()  # one thread computes both, so one answer's forwards wait for the other's
    hook = engine.model.model.language_model.register_forward_pre_hook(lambda *_: computed_in.add(threading.current_thread().name))
    askers = [threading.Thread(target=ask, args=(q,)) for q in ("Hello", "Goodbye")]
    try:
        for t in askers:
            t.start()
        for t in askers:
            t.join(timeout=60)
    finally:
        hook.remove()
    assert [together.get("Hello"), together.get("Goodbye")] == alone
    assert computed_in == {"torch"}
    assert wait_until(lambda: not generating(), timeout=5)


def test_stopping_an_answer_that_waits_behind_another_ends_it_at_once(engine):
    long = GenerationSettings(max_new_tokens=100_000, min_new_tokens=100_000)
    first_stop = threading.Event()
    first_pieces: list[str] = []

    def first_answer() -> None:
        for piece in engine.stream(question("First"), long, first_stop):
            first_pieces.append(piece)

    first = threading.Thread(target=first_answer)
    first.start()
    try:
        assert wait_until(lambda: len(first_pieces) >= 3)
        stop = threading.Event()
        waiting = engine.stream(question("Second"), long, stop)
        stop.set()  # Stop pressed while the second answer waits for the thread
        started = time.monotonic()
        assert list(waiting) == []
        assert time.monotonic() - started < local.STOP_GRACE_SECONDS + 0.5
        assert first.is_alive()  # the first answer goes on
        shown = len(first_pieces)
        assert wait_until(lambda: len(first_pieces) > shown)
    finally:
        first_stop.set()
        first.join(timeout=10)
    assert wait_until(lambda: not generating(), timeout=10)
    after = "".join(engine.stream(question("Again"), GenerationSettings(max_new_tokens=5, min_new_tokens=5), threading.Event()))
    assert after
