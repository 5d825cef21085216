"""Stop and a closed tab end an answer while its prompt is being read: within a second, the cache consistent.

The local engine reads a prompt in chunks through the model's base, with a forward pre-hook on
every module checking the stop switches (demo/engines/local/prefill.py). Here the tiny checkpoints'
decoder layers are slowed (a sleep in each layer's forward) so that reading the prompt would take
several seconds; Stop is pressed midway and the time from the stop to the end of the stream is
measured, for each local generation, then through the handlers: Stop, and the tab's unload (Gradio
closes an answer's generator only when it yields, which it does not while a prompt is read, so
`end_session` sets the answer's stop switch).
Reading in chunks must also be exact: token-identical to `model.generate` reading the prompt in
one forward, with pictures and a video split across chunks.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest
import torch

from demo.engines.base import GenerationSettings
from demo.record.conversation import Attachment, Conversation, Turn, to_model_messages
from tests.helpers import generating, noise_picture, restored, wait_until

FAMILIES = ["tiny-random", "tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl", "tiny-random-qwen3.5", "tiny-random-qwen4-exp"]
GREEDY = GenerationSettings(max_new_tokens=6, min_new_tokens=6)
LAYER_SECONDS = 0.1  # each decoder layer's forward, slowed
CHUNK = 32
LONG_TEXT = " ".join(["Describe every corner of this picture, the colours, the light and the shapes you see."] * 12)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@contextmanager
def slowed(engine, seconds: float):
    """Sleep `seconds` at the start of every decoder layer's forward; yields the start times."""
    starts: list[float] = []

    def slow(module, args):
        starts.append(time.monotonic())
        time.sleep(seconds)

    handles = [layer.register_forward_pre_hook(slow) for layer in engine.model.model.language_model.layers]
    try:
        yield starts
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture
def engine(request, tiny_checkpoints):
    with restored(tiny_checkpoints.engine(request.param)) as engine:
        yield engine


def press_when(condition, stop: threading.Event) -> list[float]:
    """Set `stop` (in a thread) once `condition()` holds; the list gets the time it was set."""
    pressed: list[float] = []

    def press() -> None:
        wait_until(condition, timeout=30)
        pressed.append(time.monotonic())
        stop.set()

    threading.Thread(target=press, daemon=True).start()
    return pressed


@pytest.mark.parametrize("engine", FAMILIES, indirect=True)
def test_stop_while_the_prompt_is_read_ends_the_answer_within_a_second(engine):
    engine.prefill_chunk_tokens = CHUNK
    conversation = Conversation(turns=[Turn(LONG_TEXT, [noise_picture(1, (200, 120))])])
    messages = to_model_messages(conversation, "")
    prompt = engine.prepare_inputs(messages, GREEDY)["input_ids"]
    layers = len(engine.model.model.language_model.layers)
    assert (prompt.shape[1] // CHUNK) * layers * LAYER_SECONDS >= 3  # reading it all would take seconds
    stop = threading.Event()
    with slowed(engine, LAYER_SECONDS) as starts:
        pieces = engine.stream(messages, GREEDY, stop, session="stopped")
        pressed = press_when(lambda: len(starts) >= 2 * layers + 1, stop)  # in the third chunk
        received = list(pieces)
        ended = time.monotonic()
        assert ended - pressed[0] < 1.0
        # nothing was decoded (a thinking prompt's own opening <think> is handed on first: not decoded)
        assert [piece for piece in received if piece != "<think>\n"] == []
        assert wait_until(lambda: not generating(), timeout=2)
        assert len([t for t in starts if t > pressed[0]]) <= 1  # the model stopped at once

    # The cache keeps what was read (the linear-attention states are never half-read): the next answer reuses it exactly.
    entry = engine.caches.take("stopped", None)
    read = [layer.get_seq_length() for layer in entry.kv.layers if getattr(layer, "keys", None) is not None]
    assert set(read) == {len(entry.ids)} and 2 * CHUNK <= len(entry.ids) < prompt.shape[1]
    assert entry.live == (not entry.hybrid)
    engine.caches.give_back("stopped", entry)
    inputs = engine.prepare_inputs(messages, GREEDY)
    reused = engine.generate(inputs, GREEDY, "stopped", output_logits=True, return_dict_in_generate=True)
    fresh = engine.generate(inputs, GREEDY, None, output_logits=True, return_dict_in_generate=True)
    assert reused.sequences.tolist() == fresh.sequences.tolist()
    torch.testing.assert_close(reused.logits[0], fresh.logits[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("engine", FAMILIES, indirect=True)
def test_a_prompt_read_in_chunks_is_token_identical_to_one_forward(engine):
    """Chunks of 5 tokens split every picture and the video; `model.generate` reads the prompt at once."""
    from demo.media.video import VideoSettings
    from demo.media.video_decode import sample_video
    from tests.test_kv_reuse import CLIP

    clip = sample_video(str(CLIP), VideoSettings(factor=engine.resize_factor, max_frames=4))
    turn = Turn("What happens?", [noise_picture(2, (120, 80)), Attachment("/up/v.mp4", name="v.mp4", video=clip), noise_picture(3, (64, 96))])
    inputs = engine.prepare_inputs(to_model_messages(Conversation(turns=[turn]), ""), GREEDY)
    engine.prefill_chunk_tokens = 5
    chunked = engine.generate(inputs, GREEDY, None, output_logits=True, return_dict_in_generate=True)
    with torch.inference_mode():
        whole = engine.model.generate(
            **inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    assert chunked.sequences.tolist() == whole.sequences.tolist()
    torch.testing.assert_close(chunked.logits[0], whole.logits[0], atol=1e-4, rtol=1e-4)


class Request:
    session_hash = "tab-prefill"


@pytest.mark.parametrize("action", ["stop", "unload"])
def test_stop_and_a_closed_tab_end_a_prefill_through_the_handlers(tiny_checkpoints, action):
    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.page.settings import Settings

    engine = tiny_checkpoints.engine("tiny-random")
    chunk = engine.prefill_chunk_tokens
    engine.prefill_chunk_tokens = CHUNK
    slot = EngineSlot("tiny-random", engine.family)
    slot.fill(engine)
    handlers = ChatHandlers(slot)
    updates: list = []
    ended: list[float] = []
    try:
        with slowed(engine, LAYER_SECONDS) as starts:
            chat = handlers.chat(LONG_TEXT, None, Settings(max_new_tokens=8), request=Request())

            def consume() -> None:
                for update in chat:
                    updates.append(update)
                ended.append(time.monotonic())

            worker = threading.Thread(target=consume, daemon=True)
            worker.start()
            assert wait_until(lambda: len(starts) >= 4, timeout=30)
            pressed = time.monotonic()
            if action == "stop":
                handlers.stop(updates[-1].conversation, Request())
            else:
                handlers.end_session(Request())
            worker.join(timeout=5)
            assert ended and ended[0] - pressed < 1.0
            if action == "stop":  # a closed tab ends its session: its conversation is emptied (demo/record/sessions.py)
                assert updates[-1].conversation.turns[-1].status == "stopped"
            assert wait_until(lambda: not generating(), timeout=2)
        assert wait_until(lambda: "tab-prefill" not in engine.caches.sessions(), timeout=2) or action == "stop"
    finally:
        engine.prefill_chunk_tokens = chunk
        engine.forget("tab-prefill")


@pytest.mark.parametrize(
    "where",
    [
        "positions",  # in the first layer: Qwen4-Exp's QSA layers have recorded the chunk's positions, no keys yet
        "indexer",  # inside a QSA layer, after its indexer's keys, before the layer's own
    ],
)
@pytest.mark.parametrize("engine", ["tiny-random-qwen4-exp"], indirect=True)
def test_a_stop_inside_a_qsa_layer_leaves_a_cache_that_reuses_exactly(engine, where):
    """A Stop between what a QSA layer appends (its indexer's keys, every token's positions) and its
    own keys must not leave the next answer reading a longer indexer than keys."""
    engine.prefill_chunk_tokens = 16

    def answer(conversation, session=None, stops=()):
        inputs = engine.prepare_inputs(to_model_messages(conversation, ""), GREEDY)
        out = engine.generate(inputs, GREEDY, session, stops=stops, output_logits=True, return_dict_in_generate=True)
        return inputs, out

    conversation = Conversation(turns=[Turn("Look at this.", [noise_picture(1, (120, 80))])])
    inputs, out = answer(conversation, "s")
    turn = conversation.turns[-1]
    turn.answer = engine.clean(engine.tokenizer.decode(out.sequences[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False))
    turn.status = "done"
    conversation.turns.append(Turn(LONG_TEXT))

    layers = engine.model.model.language_model.layers
    qsa = next(i for i, kind in enumerate(engine.model.config.text_config.layer_types) if kind != "linear_attention")
    target = layers[0] if where == "positions" else layers[qsa].self_attn.indexer.k_layernorm
    stop, chunks = threading.Event(), [0]
    count = engine.model.model.language_model.register_forward_pre_hook(lambda *_: chunks.__setitem__(0, chunks[0] + 1))
    press = target.register_forward_pre_hook(lambda *_: stop.set() if chunks[0] >= 3 else None)
    try:
        answer(conversation, "s", stops=(stop,))
    finally:
        count.remove()
        press.remove()
    assert stop.is_set()
    _, reused = answer(conversation, "s")
    _, fresh = answer(conversation)
    assert reused.sequences.tolist() == fresh.sequences.tolist()
    torch.testing.assert_close(torch.stack(reused.logits), torch.stack(fresh.logits), atol=1e-4, rtol=1e-4)
