"""What open conversations hold in memory, bounded per client and in all (issue 26: one address
could open 64 conversations of about 200 MB each; a 455 KB saved conversation held +306 MB)."""

from __future__ import annotations

import pytest
from PIL import Image

from demo.engines.slot import EngineSlot
from demo.media.video import SampledVideo
from demo.page.handlers import ChatHandlers
from demo.record.conversation import Attachment, Conversation, Turn, Version
from demo.record.held import APP_FULL, MB, Held, held_bytes
from demo.record.session_file import dump_conversation
from tests.fakes import ScriptedEngine


def picture(w: int, h: int, mode: str = "RGB") -> Attachment:
    return Attachment(path="", image=Image.new(mode, (w, h)), name="p.png")


def video(frames: int, w: int, h: int) -> Attachment:
    frame = Image.new("RGB", (w, h))
    sampled = SampledVideo(frames=tuple(Image.new("RGB", (w, h)) for _ in range(frames)) or (frame,), timestamps=tuple(range(frames)),
                           frame_wh=(w, h), source_wh=(w, h), source_fps=1.0, duration=float(frames), sample_fps=1.0)
    return Attachment(path="", name="v.mp4", video=sampled)


shared = picture(10, 10)

HELD = [
    # (conversation, bytes): pixels at their bands' bytes, text at a byte a character
    (Conversation(), 0),  # nothing
    (Conversation([Turn("hello", answer="world")]), 10),  # text only: question and answer
    (Conversation([Turn("", [picture(100, 50)])]), 100 * 50 * 3),  # an RGB picture
    (Conversation([Turn("", [picture(100, 50, "L")])]), 100 * 50),  # a grey one: one band
    (Conversation([Turn("", [video(4, 20, 10)])]), 4 * 20 * 10 * 3),  # a video: its sampled frames
    (Conversation([Turn("ab", reasoning="cd", error="ef")]), 6),  # reasoning and an error's text count too
    # a regenerated answer keeps the earlier one as a version: counted; the same picture object once
    (Conversation([Turn("q", [shared], answer="new", versions=[Version(Turn("q", [shared], answer="old"), [Turn("later")])])]),
     1 + 3 + 300 + 1 + 3 + 5),
]


@pytest.mark.parametrize("conversation, expected", HELD)
def test_what_a_conversation_holds(conversation, expected):
    assert held_bytes(conversation) == expected


def big(megabytes: float) -> Conversation:
    side = int((megabytes * MB / 3) ** 0.5)
    return Conversation([Turn("q", [picture(side, side)])])


def test_each_client_and_all_together_are_bounded_and_an_ended_session_frees_its_share():
    held = Held(per_client_mb=10, total_mb=25)
    assert held.hold("a1", "1.1.1.1", big(6)) is None
    refusal = held.hold("a2", "1.1.1.1", big(6))  # 12 MB from one address
    assert refusal is not None and refusal.count(".") == 1 and "10 MB one address may hold" in refusal
    assert held.hold("a2", "1.1.1.1", big(3)) is None  # within its share
    assert held.hold("b1", "2.2.2.2", big(9)) is None  # another address has its own
    assert held.hold("c1", "3.3.3.3", big(9)) == APP_FULL  # 6 + 3 + 9 + 9 > 25 in all
    assert held.hold("a1", "1.1.1.1", big(1)) is None  # a smaller conversation always may (a Clear, a Load)
    assert held.of_client("1.1.1.1") < 5 * MB
    held.release("b1")
    assert held.hold("c1", "3.3.3.3", big(9)) is None and len(held) == 3


class Request:
    """Stands in for gr.Request: the session and the client's address are read."""

    def __init__(self, session_hash: str, host: str) -> None:
        self.session_hash = session_hash
        self.client = type("Client", (), {"host": host})()


def handlers_with(held: Held) -> ChatHandlers:
    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([["ok"]] * 20))
    return ChatHandlers(slot, min_update_interval=0.0, held=held)


def last(generator):
    return list(generator)[-1]


def test_a_message_past_the_clients_share_is_refused_and_the_others_are_answered(photos):
    handlers = handlers_with(Held(per_client_mb=100, total_mb=100))
    message = {"text": "look", "files": [str(photos["chelsea"])]}
    first = last(handlers.chat(message, None, request=Request("tab-1", "198.51.100.7")))
    assert first.conversation.turns[0].status == "done"
    handlers.held.per_client = int(1.5 * held_bytes(first.conversation))  # room for one and a half such conversations
    refused = last(handlers.chat(dict(message), None, request=Request("tab-2", "198.51.100.7")))
    assert refused.conversation.turns == [] and refused.notice.startswith("Not sent: The conversations open from your address")
    other = last(handlers.chat(dict(message), None, request=Request("tab-3", "203.0.113.9")))
    assert other.conversation.turns[0].status == "done"  # another address: its own share
    handlers.end_session(Request("tab-1", "198.51.100.7"))  # the first tab closes
    again = last(handlers.chat(dict(message), None, request=Request("tab-2", "198.51.100.7")))
    assert again.conversation.turns[0].status == "done"


def test_a_load_past_the_clients_share_is_refused_and_the_conversation_stays(tmp_path):
    handlers = handlers_with(Held(per_client_mb=1, total_mb=100))
    mine = last(handlers.chat("hello", None, request=Request("tab-1", "198.51.100.8"))).conversation
    saved = tmp_path / "big.json"
    saved.write_text(dump_conversation(Conversation([Turn("q", [picture(1000, 700)], answer="a", status="done")])))
    reply = handlers.load(str(saved), mine, request=Request("tab-1", "198.51.100.8"))
    assert reply.conversation is mine and [t.text for t in mine.turns] == ["hello"]
    assert reply.notice.startswith("Not loaded: The conversations open from your address") and reply.notice.count(".") == 1
