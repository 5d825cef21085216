"""A message's pictures and videos are decoded and checked outside the engine's slot (issue 26: a
3 MB video of 100,000 frames took 26 s to read while another person's one-line question waited
21.8 s behind it, in the model's only slot). The page's "model" group admits `PREPARING` events
beyond the answers written at once; those wait for their turn in the handlers, where Stop and a
closed tab still end them."""

from __future__ import annotations

import threading
import time

from gradio_client import Client, handle_file
from PIL import Image

from demo.engines.slot import EngineSlot
from demo.page import handlers as handlers_module
from demo.page.handlers import ChatHandlers
from demo.page.writing import waiting_note
from demo.record.conversation import Conversation, Turn
from tests.fakes import ScriptedEngine
from tests.guarded import launch

READ_SECONDS = 3.0


def test_another_persons_question_is_answered_while_a_slow_upload_is_read(tmp_path, monkeypatch):
    attach = handlers_module.attach

    def slow_attach(path, *args, **kwargs):
        if "slow" in path:
            time.sleep(READ_SECONDS)  # as a long video being read
        return attach(path, *args, **kwargs)

    monkeypatch.setattr(handlers_module, "attach", slow_attach)
    app = launch()  # one answer at a time
    try:
        app["engine"].answers = [["ok"]] * 4
        picture = tmp_path / "slow.png"
        Image.new("RGB", (64, 48), "red").save(picture)
        first, second = Client(app["url"], verbose=False), Client(app["url"], verbose=False)
        job = first.submit({"text": "what is this?", "files": [handle_file(str(picture))]}, api_name="/chat")
        time.sleep(0.5)  # the slow one is being read
        started = time.monotonic()
        history, _ = second.predict({"text": "hello", "files": []}, api_name="/chat")
        waited = time.monotonic() - started
        assert history[-1]["content"][0]["text"] == "ok"
        assert waited < READ_SECONDS - 1.0, f"the question waited {waited:.1f} s behind someone's upload"
        history, _ = job.result(timeout=30)
        assert history[-1]["content"][0]["text"] == "ok"
    finally:
        app["demo"].close()


class Request:
    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


def test_an_answer_waits_for_its_turn_shows_it_and_stop_ends_the_wait():
    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([["a"] * 50, ["b"]], delay=0.05))
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    handlers.answer_at_once(1)
    first = handlers.chat("one", None, request=Request("s1"))
    next(first)
    next(first)  # writing now: it holds the engine's turn
    waiting = handlers.chat("two", None, request=Request("s2"))
    views = [next(waiting) for _ in range(3)]
    assert views[-1].waiting == waiting_note(1) == "Waiting for the model: 1 answer before yours."
    threading.Timer(0.3, lambda: handlers.stop(None, request=Request("s2"))).start()
    last = list(waiting)[-1]
    assert last.conversation.turns[-1].status == "stopped" and last.conversation.turns[-1].answer == ""
    done = list(first)[-1]
    assert done.conversation.turns[-1].answer == "a" * 50  # its turn was never taken from it
    again = list(handlers.chat("three", Conversation([Turn("x", answer="y", status="done")]), request=Request("s3")))[-1]
    assert again.conversation.turns[-1].answer == "b"  # and the turn was given back


def test_a_tab_closed_while_waiting_gives_nothing_away():
    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([["a"] * 20, ["b"]], delay=0.05))
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    first = handlers.chat("one", None, request=Request("s1"))
    next(first), next(first)
    waiting = handlers.chat("two", None, request=Request("s2"))
    while next(waiting).waiting != waiting_note(1):
        pass
    waiting.close()  # Gradio closes the generator of a closed tab
    assert handlers.writing.of("s2") is None
    list(first)
    assert list(handlers.chat("three", None, request=Request("s3")))[-1].conversation.turns[-1].answer == "b"


def test_two_at_once_are_served_in_the_order_they_asked():
    from demo.page.writing import Running, Writing

    writing = Writing(at_once=2)
    first, second, third = Running(), Running(), Running()
    assert writing.take_turn(first, timeout=0) == 0
    assert writing.take_turn(second, timeout=0) == 0  # a second place: no wait
    assert writing.take_turn(third, timeout=0) == 2  # both places taken: two answers before it
    writing.give_back()
    assert writing.take_turn(third, timeout=0) == 0
    late = Running()
    assert writing.take_turn(late, timeout=0) == 2
    writing.leave(late)
    assert writing.take_turn(Running(), timeout=0) == 2  # the one who left holds no place
