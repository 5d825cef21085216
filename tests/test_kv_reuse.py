"""Reusing a session's KV cache and vision encodings: exact, cheaper, bounded.

Greedy answers with reuse must be token-identical to a full re-prefill of the same prompt,
and the first step's logits equal within float32 tolerance, over conversations whose later
turns add images, and after regenerate, undo and a change of pixel budget.
"""

from __future__ import annotations

import threading

import pytest
import torch
from PIL import Image

from demo.conversation import Attachment, Conversation, Turn, to_model_messages
from demo.engines.base import GenerationSettings
from demo.engines.kv_reuse import CacheStore, SessionCache
from demo.engines.prefill import Encoded

GREEDY = GenerationSettings(max_new_tokens=12, min_new_tokens=12)


def picture(seed: int, size: tuple[int, int]) -> Attachment:
    return Attachment(path=f"/up/{seed}.png", image=Image.effect_noise(size, 30 + seed).convert("RGB"), name=f"{seed}.png")


class Recorder:
    """Counts what the engine's model computes: vision items encoded, tokens prefilled per call."""

    def __init__(self, engine, monkeypatch) -> None:
        self.encoded_images = 0
        self.prefill_lengths: list[int] = []  # tokens fed by each prefill
        self.last_total = -1
        original_features = engine.model.model.get_image_features

        def features(pixel_values, image_grid_thw=None, **kwargs):
            self.encoded_images += len(image_grid_thw)
            return original_features(pixel_values, image_grid_thw, **kwargs)

        def before_forward(module, args, kwargs):
            ids = kwargs.get("input_ids")
            if ids is not None and kwargs["past_key_values"].get_seq_length() + ids.shape[1] != self.last_total + 1:
                self.prefill_lengths.append(ids.shape[1])  # not the next decode step: a prefill
            self.last_total = kwargs["past_key_values"].get_seq_length() + ids.shape[1]

        monkeypatch.setattr(engine.model.model, "get_image_features", features)
        handle = engine.model.register_forward_pre_hook(before_forward, with_kwargs=True)
        monkeypatch.setattr(self, "_unhook", handle.remove, raising=False)

    def close(self) -> None:
        self._unhook()


@pytest.fixture
def recorder(engine, monkeypatch):
    record = Recorder(engine, monkeypatch)
    yield record
    record.close()


def answer(engine, conversation, settings=GREEDY, session=None):
    """Greedy answer to the conversation's last turn: (new token ids, first-step logits)."""
    inputs = engine.prepare_inputs(to_model_messages(conversation, ""), settings)
    out = engine.generate(inputs, settings, session, output_logits=True, return_dict_in_generate=True)
    prompt_length = inputs["input_ids"].shape[1]
    return out.sequences[0, prompt_length:].tolist(), out.logits[0][0]


def play(engine, turns, session, check):
    """Answer each turn in order, once reusing `session`'s cache and once from scratch; compare."""
    conversation = Conversation()
    for turn in turns:
        conversation.turns.append(turn)
        reused, reused_logits = answer(engine, conversation, session=session)
        fresh, fresh_logits = answer(engine, conversation)
        check(reused, fresh, reused_logits, fresh_logits)
        turn.answer, turn.status = engine.tokenizer.decode(reused, skip_special_tokens=False), "done"
        turn.answer = engine.clean(turn.answer)
    return conversation


def identical(reused, fresh, reused_logits, fresh_logits):
    assert reused == fresh
    torch.testing.assert_close(reused_logits, fresh_logits, atol=1e-4, rtol=1e-4)


SHAPES = {
    # later turns add images, between text-only follow-ups
    "images in turns 1 and 3": [
        Turn("Compare these.", [picture(1, (120, 80)), picture(2, (64, 96))]),
        Turn("Which is brighter?"),
        Turn("And this one?", [picture(3, (200, 60))]),
        Turn("Summarise all three."),
    ],
    # a text-only start, then an image
    "image only later": [Turn("Hello there."), Turn("Look.", [picture(4, (90, 90))]), Turn("More?")],
    # one image per turn, three turns in a row
    "an image every turn": [Turn(f"Picture {i}?", [picture(10 + i, (56 + 28 * i, 84))]) for i in range(3)],
}


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_reuse_is_token_identical_to_a_full_prefill(engine, shape):
    engine.forget(shape)
    play(engine, [Turn(t.text, list(t.attachments)) for t in SHAPES[shape]], shape, identical)
    engine.forget(shape)


def test_follow_ups_prefill_only_the_new_tokens_and_encode_each_image_once(engine, recorder):
    engine.forget("count")
    record = recorder
    conversation = Conversation(turns=[Turn("Two pictures.", [picture(20, (112, 84)), picture(21, (84, 112))])])
    answer(engine, conversation, session="count")
    assert record.encoded_images == 2
    first_prefill = record.prefill_lengths[-1]
    conversation.turns[0].answer, conversation.turns[0].status = "Nice.", "done"
    conversation.turns.append(Turn("Which one is taller?"))
    answer(engine, conversation, session="count")
    assert record.encoded_images == 2  # nothing encoded again
    new_length = engine.prepare_inputs(to_model_messages(conversation, ""), GREEDY)["input_ids"].shape[1]
    assert record.prefill_lengths[-1] <= new_length - first_prefill  # at most what follows the first prompt
    conversation.turns[-1].answer, conversation.turns[-1].status = "The second.", "done"
    conversation.turns.append(Turn("And this?", [picture(22, (56, 56))]))
    answer(engine, conversation, session="count")
    assert record.encoded_images == 3  # only the new picture
    engine.forget("count")


def test_regenerate_undo_and_edit_reuse_the_prefix_and_stay_exact(engine, recorder):
    engine.forget("edit")
    record = recorder
    conversation = Conversation(turns=[Turn("Look at this.", [picture(30, (140, 70))])])
    first, _ = answer(engine, conversation, session="edit")
    again, _ = answer(engine, conversation, session="edit")  # regenerate: the same prompt
    assert again == first and record.encoded_images == 1 and record.prefill_lengths[-1] == 1
    conversation.turns[0].answer, conversation.turns[0].status = "ok", "done"
    conversation.turns.append(Turn("A question I will take back."))
    answer(engine, conversation, session="edit")
    conversation.turns.pop()  # undo, then ask something else
    conversation.turns.append(Turn("A better question."))
    reused, reused_logits = answer(engine, conversation, session="edit")
    assert record.encoded_images == 1  # the picture was never encoded again
    fresh, fresh_logits = answer(engine, conversation)
    identical(reused, fresh, reused_logits, fresh_logits)
    engine.forget("edit")


def test_a_new_pixel_budget_encodes_again_and_stays_exact(engine):
    engine.forget("budget")
    conversation = Conversation(turns=[Turn("Describe.", [picture(40, (300, 200))])])
    answer(engine, conversation, session="budget")
    smaller = GenerationSettings(max_new_tokens=12, min_new_tokens=12, max_pixels=28 * 28 * 8)
    reused, reused_logits = answer(engine, conversation, smaller, session="budget")
    fresh, fresh_logits = answer(engine, conversation, smaller)
    identical(reused, fresh, reused_logits, fresh_logits)
    engine.forget("budget")


def test_streaming_with_a_session_matches_streaming_without(engine):
    engine.forget("stream")
    messages = to_model_messages(Conversation(turns=[Turn("Hi", [picture(50, (80, 80))])]), "")
    with_session = "".join(engine.stream(messages, GREEDY, threading.Event(), "stream"))
    without = "".join(engine.stream(messages, GREEDY, threading.Event()))
    assert with_session == without
    assert "stream" in engine.caches.sessions()
    engine.forget("stream")
    assert "stream" not in engine.caches.sessions()


def entry_of(size_bytes: int) -> SessionCache:
    entry = SessionCache(kv=None)  # type: ignore[arg-type]
    entry.encodings["x"] = Encoded(torch.zeros(size_bytes, dtype=torch.uint8))
    entry.kv = type("NoLayers", (), {"layers": []})()
    return entry


def test_the_store_keeps_within_its_cap_least_recently_used_first():
    store = CacheStore(max_bytes=250)
    for session in ("a", "b", "c"):
        store.give_back(session, entry_of(100))
    assert store.sessions() == ["b", "c"] and store.total_bytes() == 200
    store.give_back("b", store.take("b", entry_of(0)))  # b used again: c is now the oldest
    store.give_back("d", entry_of(100))
    assert store.sessions() == ["b", "d"]
    store.give_back("huge", entry_of(1000))  # larger than the cap on its own: not kept
    assert "huge" not in store.sessions() and store.total_bytes() <= 250
    store.forget("b")
    assert store.sessions() == ["d"]


def test_a_session_in_use_is_never_evicted():
    store = CacheStore(max_bytes=150)
    store.give_back("a", entry_of(100))
    in_use = store.take("a", entry_of(0))
    store.give_back("b", entry_of(100))
    store.give_back("c", entry_of(100))
    store.give_back("a", in_use)  # back from its turn: the others make room
    assert store.sessions() == ["a"]


def test_clearing_or_closing_a_session_frees_its_cache(engine):
    from demo.engines.slot import EngineSlot
    from demo.handlers import ChatHandlers

    class Request:
        session_hash = "tab-1"

    slot = EngineSlot("tiny")
    slot.fill(engine)
    handlers = ChatHandlers(slot)
    list(handlers.chat("Hello", None, 4, request=Request()))
    assert "tab-1" in engine.caches.sessions()
    handlers.clear(Request())
    assert "tab-1" not in engine.caches.sessions()
    list(handlers.chat("Hello again", None, 4, request=Request()))
    handlers.end_session(Request())
    assert "tab-1" not in engine.caches.sessions()
