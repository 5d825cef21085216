"""`RoomyLayer` (demo/engines/local/kv_buffer.py) against transformers' `DynamicLayer`: the same
keys, values and logits, bit for bit, through prompts, decoding, rewinds and resets; few copies;
its room counted in a session's bytes."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from demo.engines.local.kv_buffer import ROOM_TOKENS, RoomyLayer, _headroom, held_bytes, session_cache
from demo.engines.local.kv_reuse import SessionCache

# Each row: the operations applied to both layers, in order: ("add", tokens) | ("crop", tokens to drop) | ("reset",)
SCRIPTS = [
    # a prompt then one token at a time: the decode loop
    [("add", 300)] + [("add", 1)] * 40,
    # a prompt longer than the first room, read in chunks as `prefill` does
    [("add", 200), ("add", 200), ("add", 200), ("add", 1)],
    # a rewound follow-up: crop back, then new tokens overwrite what was cut
    [("add", 50), ("add", 1), ("add", 1), ("crop", 10), ("add", 30), ("crop", 1), ("add", 1)],
    # a reset (a hybrid cache starting afresh), then a new prompt
    [("add", 20), ("reset",), ("add", 5), ("add", 1)],
    # exactly the room, then one more: the growth boundary
    [("add", ROOM_TOKENS), ("add", _headroom(ROOM_TOKENS) - ROOM_TOKENS), ("add", 1)],
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_roomy_layer_holds_what_a_dynamic_layer_holds(script):
    generator = torch.Generator().manual_seed(0)
    dynamic, roomy = DynamicLayer(), RoomyLayer()
    for op in script:
        if op[0] == "add":
            keys, values = (torch.randn(1, 2, op[1], 8, generator=generator) for _ in range(2))
            expected = dynamic.update(keys, values)
            got = roomy.update(keys, values)
            for e, g in zip(expected, got, strict=True):
                assert torch.equal(e, g)
        elif op[0] == "crop":
            dynamic.crop(-op[1])
            roomy.crop(-op[1])
        else:
            dynamic.reset()
            roomy.reset()
        assert roomy.get_seq_length() == dynamic.get_seq_length()


def test_decoding_copies_the_cache_a_few_times_not_at_every_token():
    layer = RoomyLayer()
    layer.update(torch.zeros(1, 2, 300, 8), torch.zeros(1, 2, 300, 8))
    buffers = {layer.keys.untyped_storage().data_ptr()}
    for _ in range(1000):
        layer.update(torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 1, 8))
        buffers.add(layer.keys.untyped_storage().data_ptr())
    assert layer.get_seq_length() == 1300
    assert len(buffers) == 3  # room for 768, then 1280, then 1792 tokens


@pytest.mark.parametrize(
    "tokens, room",
    [
        (1, 2 * ROOM_TOKENS),  # the least room added, rounded up to whole ROOM_TOKENS
        (ROOM_TOKENS, 2 * ROOM_TOKENS),  # full: at least ROOM_TOKENS more
        (8000, 9216),  # long: an eighth more (9000), rounded up to whole ROOM_TOKENS
    ],
)
def test_headroom(tokens, room):
    assert _headroom(tokens) == room


@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-qwen3.5"])
def test_the_models_logits_are_the_same_bits_as_with_transformers_cache(tiny_checkpoints, name, one_torch_thread):
    """Prompt, then 12 greedy steps, then a rewind by 5 and 6 more: logits equal bit for bit (Qwen2-VL,
    and Qwen3.5, whose linear-attention layers keep their own class)."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_checkpoints[name]), dtype=torch.float32).eval()
    prompt = torch.randint(10, 500, (1, 40), generator=torch.Generator().manual_seed(1))

    plain = all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)

    def run(cache) -> list[torch.Tensor]:
        logits, tokens = [], prompt
        with torch.inference_mode():
            for step in range(19):
                if step == 13:  # rewind by 5 tokens (a regenerated answer's tail); linear-attention states cannot be cut
                    if not plain:
                        break
                    for layer in cache.layers:
                        layer.crop(-5)
                start = cache.get_seq_length()
                positions = torch.arange(start, start + tokens.shape[1])
                out = model(input_ids=tokens, cache=cache, use_cache=True, cache_position=positions)
                logits.append(out.logits[0, -1].clone())
                tokens = out.logits[:, -1:].argmax(-1)
        return logits

    expected = run(DynamicCache(config=model.config))
    got = run(session_cache(model.config))
    assert len(got) == len(expected) >= 13
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e, g)
    kinds = {type(layer).__name__ for layer in session_cache(model.config).layers}
    assert "RoomyLayer" in kinds


def test_a_sessions_bytes_count_the_room():
    entry = SessionCache(kv=DynamicCache())
    entry.kv.layers = [RoomyLayer()]
    entry.kv.layers[0].update(torch.zeros(1, 2, 10, 8), torch.zeros(1, 2, 10, 8))
    filled = 2 * 10 * 2 * 8 * 4
    assert held_bytes(entry.kv.layers[0]) == filled // 10 * _headroom(10)
    assert entry.nbytes() == held_bytes(entry.kv.layers[0]) > filled
