"""Reading a prompt into a KV cache in chunks that Stop can interrupt (local engine only).

`model.generate` reads the whole prompt in one forward and asks its `StoppingCriteria` only
after it: on a CPU a long prompt or a large picture kept Stop waiting for tens of seconds. Here
the prompt goes through the model's base (`model.model`: no LM head, no logits) in chunks of at
most `chunk_tokens`, all but the last, which `generate`'s first forward reads (a short prompt is
one chunk: one forward, as without chunks). Each chunk gets its slice of the whole prompt's
M-RoPE position ids, and the vision-encoder rows (with Qwen3-VL's deepstack rows) of exactly the
placeholders it holds, so a picture split across two chunks is merged as in one forward.

`StopChecks` puts a forward pre-hook on every module of the model's base: in a thread that
`armed` it (while reading a prompt, `generate`'s first forward included), the hook raises
`PrefillStopped` once a stop switch is set, so a stop lands at the next module boundary (vision
blocks and decoder layers included). Other threads, and decode steps, pass through. One operation
cannot be interrupted: measured on this project's 2-core CPU, float32, Qwen2-VL-2B's shape, the
longest are about 0.7 s in a 1024-token chunk and 0.6 s for a 448×448 picture's vision attention,
but 3.9 s for a 980×980 one (1,225 visual tokens).

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
    per module call, noise against a forward. A thread is armed while it reads its prompt, up to
    and including the first forward of the model itself (`generate`'s, which reads the prompt's
    last chunk): a post-hook on the model disarms it there, so decode steps end by the
    `StoppingCriteria` instead, with their tokens kept.
    """

    def __init__(self, model) -> None:
        self._local = threading.local()
        self._handles = [m.register_forward_pre_hook(self._check) for m in model.model.modules()]
        self._handles.append(model.register_forward_hook(self._disarm))

    def _check(self, module, args) -> None:
        stops = getattr(self._local, "stops", None)
        if stops and any(stop.is_set() for stop in stops):
            raise PrefillStopped

    def _disarm(self, module, args, output) -> None:
        self._local.stops = None

    def check(self) -> None:
        """Raise `PrefillStopped` now if this thread is armed and a stop switch is set."""
        self._check(None, ())

    @contextmanager
    def armed(self, stops: tuple[threading.Event, ...]) -> Iterator[None]:
        """Until this block ends or the model's first forward in it does, this thread's forwards
        end with `PrefillStopped` once any of `stops` is set."""
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
    output_class: type | None = None  # what the model's encoder returned (a transformers ModelOutput)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.rows, *(self.deepstack or ())))

    @staticmethod
    def cat(parts: list[Encoded]) -> Encoded:
        deepstack = None
        if parts[0].deepstack is not None:
            deepstack = tuple(torch.cat(layer) for layer in zip(*(p.deepstack for p in parts), strict=True))
        return Encoded(torch.cat([p.rows for p in parts]), deepstack, parts[0].output_class)

    def __getitem__(self, rows: slice) -> Encoded:
        deepstack = None if self.deepstack is None else tuple(d[rows] for d in self.deepstack)
        return Encoded(self.rows[rows], deepstack, self.output_class)

    def as_output(self):
        """What the Qwen VL models read from `mm_encoder_outputs[modality]`, in the encoder's own output class."""
        if self.deepstack is None:
            return self.output_class(pooler_output=(self.rows,))
        return self.output_class(pooler_output=(self.rows,), deepstack_features=[(d,) for d in self.deepstack])


def encoder_outputs(
    ids: torch.Tensor, encoded: dict[str, Encoded], placeholder_ids: dict[str, int], used: dict[str, int]
) -> dict:
    """`mm_encoder_outputs` for the token ids `ids`: the next rows of each modality (`used` counts those handed out)."""
    outputs = {}
    for modality, rows in encoded.items():
        count = int((ids == placeholder_ids[modality]).sum())
        if count:
            outputs[modality] = rows[used[modality] : used[modality] + count].as_output()
            used[modality] += count
    return outputs


def prefill(
    model,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    cache,
    start: int,
    encoded: dict[str, Encoded],
    placeholder_ids: dict[str, int],
    chunk_tokens: int,
    marks: tuple[int, ...] = (),
    at_mark: Callable[[int], None] | None = None,
) -> tuple[int, dict]:
    """Read `input_ids` from `start` (the tokens `cache` holds) into `cache`, in chunks, all but the last.

    The last chunk (at most `chunk_tokens`, at least one token) is left to `generate`, whose
    first forward reads it: returns where it begins and its `mm_encoder_outputs`. Chunks also end
    at each of `marks`, after which `at_mark(position)` is called. `position_ids` are the whole
    prompt's (4, 1, length); `encoded[modality]` holds the encoder rows of that modality's
    placeholders at positions >= `start`, in order.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    end = input_ids.shape[1]
    if not 0 <= start < end:
        raise ValueError(f"start must leave at least one token to read, got {start} of {end}")
    used = dict.fromkeys(encoded, 0)  # rows of each modality handed out so far
    bounds = sorted({*range(start, end, chunk_tokens), *(m for m in marks if start < m < end)})
    for a, b in pairwise(bounds):
        chunk = input_ids[:, a:b]
        model.model(
            input_ids=chunk,
            position_ids=position_ids[..., a:b],
            cache=cache,
            use_cache=True,
            mm_encoder_outputs=encoder_outputs(chunk, encoded, placeholder_ids, used) or None,
        )
        if at_mark is not None and b in marks:
            at_mark(b)
    last = bounds[-1]
    return last, encoder_outputs(input_ids[:, last:], encoded, placeholder_ids, used)
