"""Reading a prompt into a KV cache in chunks that Stop can interrupt (local engine only).

`model.generate` reads the whole prompt in one forward and asks its `StoppingCriteria` only
after it: on a CPU a long prompt or a large picture kept Stop waiting for tens of seconds. Here
the prompt, up to its last token, goes through the model's base (`model.model`: no LM head, no
logits) in chunks of at most `chunk_tokens`. Each chunk gets its slice of the whole prompt's
M-RoPE position ids, and the vision-encoder rows (with Qwen3-VL's deepstack rows) of exactly the
placeholders it holds, so a picture split across two chunks is merged as in one forward. `generate`
then reads the last token and decodes.

`StopChecks` puts a forward pre-hook on every module of the model's base: in a thread that
`armed` it (while reading a prompt), the hook raises `PrefillStopped` once a stop switch is set,
so a stop lands at the next module boundary (vision blocks and decoder layers included). Other
threads (decode steps, other sessions) pass through. One operation cannot be interrupted:
measured on this project's 2-core CPU, float32, Qwen2-VL-2B's shape, the longest are about 0.7 s
for a 1024-token chunk and 0.6 s for a 448×448 picture's vision attention, but 3.9 s for a
980×980 one (1,225 visual tokens).

Knows transformers' Qwen VL base models (`model.model`); knows nothing of sessions or reuse.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

import torch


class PrefillStopped(Exception):
    """A stop switch was set while the prompt was being read."""


class StopChecks:
    """A forward pre-hook on every module of `model.model`, raising `PrefillStopped` in armed threads.

    The hooks stay registered for the model's life (adding or removing hooks while another
    thread runs the model could break its forward); unarmed, each costs one thread-local look-up
    per module call, measured as noise against a decode step.
    """

    def __init__(self, model) -> None:
        self._local = threading.local()
        self._handles = [m.register_forward_pre_hook(self._check) for m in model.model.modules()]

    def _check(self, module, args) -> None:
        stops = getattr(self._local, "stops", None)
        if stops and any(stop.is_set() for stop in stops):
            raise PrefillStopped

    def check(self) -> None:
        """Raise `PrefillStopped` now if this thread is armed and a stop switch is set."""
        self._check(None, ())

    @contextmanager
    def armed(self, stops: tuple[threading.Event, ...]) -> Iterator[None]:
        """Within this block, this thread's forwards end with `PrefillStopped` once any of `stops` is set."""
        self._local.stops = stops
        try:
            self.check()
            yield
        finally:
            self._local.stops = None


@dataclass
class Encoded:
    """One image's or video's vision-encoder output: a row per placeholder token (and deepstack rows)."""

    rows: torch.Tensor
    deepstack: tuple[torch.Tensor, ...] | None = None  # Qwen3-VL: one (tokens, hidden) tensor per deepstack layer

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.rows, *(self.deepstack or ())))

    @staticmethod
    def cat(parts: list[Encoded]) -> Encoded:
        deepstack = None
        if parts[0].deepstack is not None:
            deepstack = tuple(torch.cat(layer) for layer in zip(*(p.deepstack for p in parts), strict=True))
        return Encoded(torch.cat([p.rows for p in parts]), deepstack)

    def __getitem__(self, rows: slice) -> Encoded:
        return Encoded(self.rows[rows], None if self.deepstack is None else tuple(d[rows] for d in self.deepstack))


@dataclass
class _EncoderOutput:
    """What the Qwen VL models read from `mm_encoder_outputs[modality]`."""

    pooler_output: tuple[torch.Tensor, ...]
    deepstack_features: list[tuple[torch.Tensor, ...]] | None


def prefill(
    model,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    cache,
    start: int,
    end: int,
    encoded: dict[str, Encoded],
    placeholder_ids: dict[str, int],
    chunk_tokens: int,
    marks: tuple[int, ...] = (),
    at_mark: Callable[[int], None] | None = None,
) -> None:
    """Feed `input_ids[:, start:end]` into `cache` (which holds the first `start` tokens), in chunks.

    `position_ids` are the whole prompt's (4, 1, length); `encoded[modality]` holds the encoder
    rows of that modality's placeholders at positions >= `start`, in order. Chunks also end at
    each of `marks` (positions in `(start, end]`), after which `at_mark(position)` is called.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    ids = input_ids[:, :end]
    used = dict.fromkeys(encoded, 0)  # rows of each modality handed out so far
    bounds = sorted({*range(start, end, chunk_tokens), *(m for m in marks if start < m < end), end})
    for a, b in pairwise(bounds):
        chunk = ids[:, a:b]
        outputs = {}
        for modality, rows in encoded.items():
            count = int((chunk == placeholder_ids[modality]).sum())
            if count:
                part = rows[used[modality] : used[modality] + count]
                outputs[modality] = _EncoderOutput(
                    (part.rows,), None if part.deepstack is None else [(d,) for d in part.deepstack]
                )
                used[modality] += count
        model.model(
            input_ids=chunk,
            position_ids=position_ids[..., a:b],
            past_key_values=cache,
            use_cache=True,
            mm_encoder_outputs=outputs or None,
        )
        if at_mark is not None and b in marks:
            at_mark(b)
