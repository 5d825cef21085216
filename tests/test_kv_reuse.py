"""Reusing a session's KV cache and vision encodings: exact, cheaper, bounded, for every local generation.

Parametrized over the tiny checkpoints of Qwen2-VL, Qwen2.5-VL, Qwen3-VL (DeepStack) and Qwen3.5
(Gated DeltaNet layers, whose states are snapshotted, and a thinking template that drops earlier
answers' reasoning). Greedy answers with reuse must be token-identical to a full re-prefill of
the same prompt and the first step's logits equal within float32 tolerance, over conversations
whose later turns add pictures and videos, and after regenerate, undo, edits and a change of
pixel budget. A conversation is read in chunks of 16 tokens, so pictures straddle chunk boundaries.
What the model computes is counted: the tokens each language-model forward reads, and the
pictures and videos through the vision tower.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from demo.engines.base import GenerationSettings
from demo.engines.local.kv_reuse import MAX_SNAPSHOTS, CacheStore, SessionCache
from demo.engines.local.prefill import Encoded
from demo.record.conversation import Attachment, Conversation, Turn, to_model_messages
from tests.helpers import noise_picture, restored

FAMILIES = ["tiny-random", "tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl", "tiny-random-qwen3.5", "tiny-random-qwen4-exp"]
HYBRID = ("qwen3.5", "qwen4-exp")  # linear-attention layers (snapshots) and Qwen3.5's template (it drops reasoning)
NEW_TOKENS = 6
GREEDY = GenerationSettings(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
CLIP = Path(__file__).resolve().parent.parent / "demo" / "examples" / "rocket-launch.mp4"


def turn_start(engine, prompt: list[int]) -> int:
    """Where `prompt`'s generation prompt begins: its last `<|im_start|>`."""
    im_start = engine.tokenizer.convert_tokens_to_ids("<|im_start|>")
    return max(i for i, token in enumerate(prompt) if token == im_start)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Recorder:
    """Counts what the engine's model computes: items through the vision tower, tokens each forward reads."""

    def __init__(self, engine) -> None:
        self.encoded = 0  # images and videos through the vision tower
        self.read: list[int] = []  # tokens read by each language-model forward
        base = engine.model.model

        def vision(module, args, kwargs):
            self.encoded += len(kwargs["grid_thw"] if "grid_thw" in kwargs else args[1])

        def language(module, args, kwargs):
            self.read.append(kwargs["inputs_embeds"].shape[1])

        self._handles = [
            base.visual.register_forward_pre_hook(vision, with_kwargs=True),
            base.language_model.register_forward_pre_hook(language, with_kwargs=True),
        ]

    def prefilled(self) -> int:
        """Prompt tokens read since the last `reset` (one answer: every forward after the first reads one new token)."""
        return sum(self.read) - (NEW_TOKENS - 1)

    def reset(self) -> None:
        self.read.clear()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


@pytest.fixture(params=FAMILIES)
def engine(request, tiny_checkpoints):
    """Each family's real engine; its prefill chunk size and sessions restored afterwards."""
    with restored(tiny_checkpoints.engine(request.param)) as engine:
        yield engine


@pytest.fixture
def recorder(engine):
    record = Recorder(engine)
    yield record
    record.close()


def answer(engine, conversation, settings=GREEDY, session=None):
    """Greedy answer to the conversation's last turn: (new token ids, first-step logits, prompt ids)."""
    inputs = engine.prepare_inputs(to_model_messages(conversation, ""), settings)
    out = engine.generate(inputs, settings, session, output_logits=True, return_dict_in_generate=True)
    prompt = inputs["input_ids"][0].tolist()
    return out.sequences[0, len(prompt) :].tolist(), out.logits[0][0], prompt


def finish(engine, conversation, tokens) -> None:
    """Record the last turn's answer as the app does."""
    turn = conversation.turns[-1]
    turn.answer, turn.status = engine.clean(engine.tokenizer.decode(tokens, skip_special_tokens=False)), "done"


def identical(reused, fresh) -> None:
    assert reused[0] == fresh[0]
    torch.testing.assert_close(reused[1], fresh[1], atol=1e-4, rtol=1e-4)


def exact_answer(engine, conversation, session, settings=GREEDY):
    """Answer reusing `session`, check it against a full prefill, return the new tokens."""
    reused = answer(engine, conversation, settings, session)
    identical(reused, answer(engine, conversation, settings))
    return reused[0]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def video(engine) -> Attachment:
    from demo.media.video import VideoSettings
    from demo.media.video_decode import sample_video

    clip = sample_video(str(CLIP), VideoSettings(factor=engine.resize_factor, max_frames=4))
    return Attachment(path="/up/clip.mp4", name="clip.mp4", video=clip)


def test_a_conversation_reuses_its_cache_exactly_and_reads_only_new_tokens(engine, recorder):
    """Pictures in turns 1 and 3 (a video too), text follow-ups; prefills in chunks of 16 that split pictures."""
    engine.prefill_chunk_tokens = 16
    turns = [
        Turn("Compare these.", [noise_picture(1, (120, 80)), noise_picture(2, (64, 96))]),
        Turn("Which is brighter?"),
        Turn("And these?", [video(engine), noise_picture(3, (200, 60))]),
        Turn("Summarise all of them."),
    ]
    conversation = Conversation()
    held: list[int] = []  # what the session's cache held after the last answer: prompt and answer but its last token
    last_turn_start = 0  # where the last prompt's generation prompt began
    for turn in turns:
        conversation.turns.append(turn)
        recorder.reset()
        recorder.encoded = 0
        reused = answer(engine, conversation, session="conversation")
        tokens, _, prompt = reused
        assert recorder.encoded == len(turn.attachments)  # only the new pictures and videos are encoded
        shared = common_prefix(prompt, held)
        if engine.family in HYBRID and held:
            # Its template re-renders the earlier answer without the reasoning the cache read after `<think>`:
            # reading resumes at the snapshot taken where the last generation prompt began.
            assert last_turn_start < shared < len(held)
            assert recorder.prefilled() == len(prompt) - last_turn_start
        else:  # the cache is cut where the prompt leaves it (the earlier answer may re-tokenize at its end)
            assert shared >= len(held) - NEW_TOKENS
            assert recorder.prefilled() == len(prompt) - shared
        identical(reused, answer(engine, conversation))
        held = (prompt + tokens)[: len(prompt) + NEW_TOKENS - 1]
        last_turn_start = turn_start(engine, prompt)
        finish(engine, conversation, tokens)


def test_regenerate_and_an_edited_first_question_reuse_what_they_can_and_stay_exact(engine, recorder):
    first = Turn("Look at this.", [noise_picture(30, (140, 70))])
    conversation = Conversation(turns=[first])
    tokens, _, old_prompt = answer(engine, conversation, session="edit")
    recorder.reset()
    recorder.encoded = 0
    assert answer(engine, conversation, session="edit")[0] == tokens  # regenerate: the same prompt
    if engine.family in HYBRID:  # only the generation prompt, from the snapshot taken where it begins
        assert recorder.prefilled() == len(old_prompt) - turn_start(engine, old_prompt)
    else:
        assert recorder.prefilled() == 1  # only its last token: the cache holds the rest
    finish(engine, conversation, tokens)
    conversation.turns.append(Turn("A second question."))
    finish(engine, conversation, exact_answer(engine, conversation, "edit"))

    first.text, first.answer, first.status = "Look at this closely.", "", "waiting"
    del conversation.turns[1:]
    recorder.reset()
    recorder.encoded = 0
    reused = answer(engine, conversation, session="edit")
    assert recorder.encoded == 0  # the picture's encoding is kept
    prompt = reused[2]
    if engine.family in HYBRID:  # no snapshot inside the first question: read afresh
        assert recorder.prefilled() == len(prompt)
    else:
        assert recorder.prefilled() == len(prompt) - common_prefix(prompt, old_prompt)
    identical(reused, answer(engine, conversation))


def test_an_undone_question_rereads_only_its_replacement(engine, recorder):
    conversation = Conversation(turns=[Turn("Hello.", [noise_picture(35, (84, 84))])])
    finish(engine, conversation, answer(engine, conversation, session="undo")[0])
    conversation.turns.append(Turn("Second."))
    finish(engine, conversation, answer(engine, conversation, session="undo")[0])
    conversation.turns.append(Turn("Third, to undo."))
    answer(engine, conversation, session="undo")
    conversation.turns[-1] = Turn("Third, asked again.")
    second = Conversation(turns=[*conversation.turns[:1], Turn("Second.")])  # as the second question was asked
    second_prompt = engine.prepare_inputs(to_model_messages(second, ""), GREEDY)["input_ids"][0].tolist()
    recorder.reset()
    reused = answer(engine, conversation, session="undo")
    prompt = reused[2]
    if engine.family in HYBRID:  # from the second turn's generation prompt: its answer and the new question
        assert recorder.prefilled() == len(prompt) - turn_start(engine, second_prompt)
    else:  # everything the undone question's prompt shared with it
        assert recorder.prefilled() < len(prompt) - len(second_prompt)
    identical(reused, answer(engine, conversation))


def test_a_new_pixel_budget_encodes_again_and_stays_exact(engine):
    conversation = Conversation(turns=[Turn("Describe.", [noise_picture(40, (300, 200))])])
    answer(engine, conversation, session="budget")
    smaller = GenerationSettings(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, max_pixels=engine.resize_factor**2 * 8)
    exact_answer(engine, conversation, "budget", smaller)


def test_streaming_with_a_session_matches_streaming_without(engine):
    messages = to_model_messages(Conversation(turns=[Turn("Hi", [noise_picture(50, (80, 80))])]), "")
    with_session = "".join(engine.stream(messages, GREEDY, threading.Event(), "stream"))
    without = "".join(engine.stream(messages, GREEDY, threading.Event()))
    assert with_session == without
    assert "stream" in engine.caches.sessions()
    engine.forget("stream")
    assert "stream" not in engine.caches.sessions()


def test_snapshots_are_bounded_and_counted_in_the_sessions_bytes(tiny_checkpoints):
    engine = tiny_checkpoints.engine("tiny-random-qwen3.5")
    conversation = Conversation()
    for i in range(5):
        conversation.turns.append(Turn(f"Question {i}?"))
        finish(engine, conversation, answer(engine, conversation, session="bounded")[0])
    entry = engine.caches.take("bounded", None)
    assert entry.hybrid and 0 < len(entry.snapshots) <= MAX_SNAPSHOTS
    without = entry.nbytes() - sum(s.nbytes() for s in entry.snapshots)
    assert entry.nbytes() > without > 0 and all(s.nbytes() > 0 for s in entry.snapshots)
    engine.caches.give_back("bounded", entry)
    engine.forget("bounded")


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


def test_clearing_or_closing_a_session_frees_its_cache(tiny_checkpoints):
    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.page.settings import Settings

    class Request:
        session_hash = "tab-1"

    engine = tiny_checkpoints.engine("tiny-random")
    slot = EngineSlot("tiny", engine.family)
    slot.fill(engine)
    handlers = ChatHandlers(slot)
    list(handlers.chat("Hello", None, Settings(max_new_tokens=4), request=Request()))
    assert "tab-1" in engine.caches.sessions()
    handlers.clear(Request())
    assert "tab-1" not in engine.caches.sessions()
    list(handlers.chat("Hello again", None, Settings(max_new_tokens=4), request=Request()))
    handlers.end_session(Request())
    assert "tab-1" not in engine.caches.sessions()
