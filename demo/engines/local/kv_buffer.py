"""A KV cache whose attention layers write into room kept ahead, instead of growing by concatenation.

transformers' `DynamicLayer` appends a decoded token's keys and values with `torch.cat`, which
allocates and copies the layer's whole cache at every step: on the 2B shape, with a 300-token
prompt, a 4-bit decode step spent about 9 ms of ~100 in `aten::cat` (28 layers, two tensors
each), plus the page faults of the fresh allocations. A `RoomyLayer` keeps its keys and values
in buffers with room for more tokens (`_headroom`), writes new tokens in place, and hands out
views of the filled part; it grows (one copy) only when the room runs out. A StaticCache would
do the same with a fixed length chosen ahead, which a chat, whose sessions are kept and rewound
(`demo.engines.local.kv_reuse`), does not know.

Everything else is `DynamicLayer`'s: `crop` narrows the view (the next token overwrites what was
cut), `reset` drops the buffers. The attention reads the same numbers in the same order, so the
logits are the same bits as with `DynamicLayer` (`tests/test_kv_buffer.py`). Only plain
full-attention layers are replaced; sliding-window, linear-attention and indexed layers keep
their own classes.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

ROOM_TOKENS = 256  # the least room added when a buffer grows


def _headroom(tokens: int) -> int:
    """Room for how many tokens a buffer that must hold `tokens` gets: an eighth more, at least `ROOM_TOKENS`,
    in whole multiples of `ROOM_TOKENS` (so a long answer grows it a few times, not at every step)."""
    wanted = tokens + max(tokens // 8, ROOM_TOKENS)
    return -(-wanted // ROOM_TOKENS) * ROOM_TOKENS


class RoomyLayer(DynamicLayer):
    """A `DynamicLayer` that writes new keys and values into buffers with room ahead (see the module docstring)."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_room: torch.Tensor | None = None
        self._value_room: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        held = self.get_seq_length()
        total = held + key_states.shape[-2]
        if self._key_room is None or total > self._key_room.shape[-2]:
            self._key_room = self._grown(self._key_room, key_states, held, total)
            self._value_room = self._grown(self._value_room, value_states, held, total)
        self._key_room[..., held:total, :] = key_states
        self._value_room[..., held:total, :] = value_states
        self.keys = self._key_room[..., :total, :]
        self.values = self._value_room[..., :total, :]
        return self.keys, self.values

    @staticmethod
    def _grown(room: torch.Tensor | None, new: torch.Tensor, held: int, total: int) -> torch.Tensor:
        """A buffer for at least `total` tokens shaped like `new`, holding `room`'s first `held` tokens."""
        grown = new.new_empty(*new.shape[:-2], _headroom(total), new.shape[-1])
        if held:
            grown[..., :held, :] = room[..., :held, :]
        return grown

    def reset(self) -> None:
        self._key_room = self._value_room = None
        super().reset()


def session_cache(config) -> DynamicCache:
    """A `DynamicCache` for `config` whose plain attention layers are `RoomyLayer`s."""
    cache = DynamicCache(config=config)
    cache.layers = [RoomyLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def held_bytes(layer) -> int:
    """Bytes a cache layer's keys and values hold, room included (a cropped or roomy layer's tensors
    are views of larger buffers: their storage is what stays in memory)."""
    tensors = (getattr(layer, "keys", None), getattr(layer, "values", None))
    return sum(t.untyped_storage().nbytes() for t in tensors if isinstance(t, torch.Tensor))
