"""Reusing a session's KV cache and vision encodings from one turn to the next (local engine only).

A chat re-renders the whole conversation every turn. Instead of running the vision encoder
and a full prefill over it again, each session keeps:

- the token ids its KV cache holds, and the cache itself (a transformers `DynamicCache`);
- the vision encoder's output for each image or video it has seen, keyed by the content of
  its preprocessed pixels, so no encoding is computed twice in a session.

`reuse_kwargs` finds the longest common prefix of the cached ids and the new prompt, crops the
cache there, and returns the `generate` arguments that prefill only the rest: the new tokens,
the encodings of the images among them (`mm_encoder_outputs`), and M-RoPE position ids
computed over the whole sequence (3-D positions depend on every earlier image's grid; they are
computed here, not left to `generate`, whose fallback reads a `rope_deltas` shared by all
sessions). `CacheStore` holds the sessions' entries, capped in bytes, least recently used first out.

Knows transformers' Qwen VL models (`get_rope_index`, `get_image_features`); knows nothing of
conversations, Gradio or the UI.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPooling

# (modality, pixel key, grid key, config attribute of its placeholder token id)
MODALITIES = (
    ("image", "pixel_values", "image_grid_thw", "image_token_id"),
    ("video", "pixel_values_videos", "video_grid_thw", "video_token_id"),
)


@dataclass
class SessionCache:
    """What one session keeps between turns."""

    kv: DynamicCache
    ids: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # tokens the kv holds
    encodings: dict[str, torch.Tensor] = field(default_factory=dict)  # pixel content key -> vision encoder output
    items: dict[str, list[str]] = field(default_factory=dict)  # modality -> content keys of the items, in order

    def nbytes(self) -> int:
        tensors = [t for layer in self.kv.layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))]
        tensors += list(self.encodings.values())
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


class CacheStore:
    """Sessions' caches, at most `max_bytes` in all; the least recently used are dropped first.

    `take` hands a session's entry out (creating it) and `give_back` returns it after a turn; an
    entry that is out is never evicted, and one larger than the whole cap is not kept. Thread-safe.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, SessionCache] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, session: str, new: SessionCache) -> SessionCache:
        """The session's entry (removed from the store while in use), or `new` if it has none."""
        with self._lock:
            return self._entries.pop(session, None) or new

    def give_back(self, session: str, entry: SessionCache) -> None:
        """Keep `entry` as the session's most recent; evict others (or it) to stay within the cap."""
        size = entry.nbytes()
        with self._lock:
            self._entries.pop(session, None)
            if size > self.max_bytes:  # too large to keep at all: the next turn starts afresh
                return
            total = size + sum(e.nbytes() for e in self._entries.values())
            while total > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                total -= evicted.nbytes()
            self._entries[session] = entry

    def forget(self, session: str) -> None:
        with self._lock:
            self._entries.pop(session, None)

    def sessions(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes() for e in self._entries.values())


def reuse_kwargs(model, inputs: dict, entry: SessionCache) -> dict:
    """`generate` keyword arguments for `inputs` (the processor's output) that reuse `entry`.

    Crops `entry.kv` to the longest prefix it shares with the new prompt (always leaving at
    least one token to prefill): the same token ids, and behind the image and video
    placeholders the same pixels. Encodes only the items not encoded before, and gives
    `generate` the encodings of the placeholders in the part to prefill.
    """
    ids = inputs["input_ids"][0]
    items = {m: _Items(model, inputs, m, pixel_key, grid_key, token_attr) for m, pixel_key, grid_key, token_attr in MODALITIES}
    items = {m: found for m, found in items.items() if found.keys}
    limit = min([len(ids) - 1, len(entry.ids)] + [found.first_change(entry.items.get(m, [])) for m, found in items.items()])
    cached = entry.ids.to(ids.device)[:limit]
    differs = (cached != ids[:limit]).nonzero()
    keep = int(differs[0]) if len(differs) else limit
    if entry.kv.get_seq_length() > keep:
        entry.kv.crop(keep - entry.kv.get_seq_length())  # a negative count: the tokens to drop
    entry.ids = ids[:keep].clone()
    entry.items = {m: found.keys for m, found in items.items()}  # what the cache holds once prefilled

    kwargs = {k: v for k, v in inputs.items() if not k.startswith("pixel_values")}
    encoder_outputs = {}
    for modality, found in items.items():
        rows = found.rows_after(keep, entry.encodings)
        if rows is not None:
            encoder_outputs[modality] = BaseModelOutputWithPooling(pooler_output=(rows,))
    kwargs["mm_encoder_outputs"] = encoder_outputs
    kwargs["position_ids"] = position_ids(model, inputs)
    kwargs["past_key_values"] = entry.kv
    return kwargs


class _Items:
    """The images (or videos) of a prompt: their pixels, content keys and placeholder positions."""

    def __init__(self, model, inputs: dict, modality: str, pixel_key: str, grid_key: str, token_attr: str) -> None:
        self.model, self.modality = model, modality
        self.grids = inputs.get(grid_key)
        if self.grids is None or len(self.grids) == 0:
            self.keys: list[str] = []
            return
        patches = self.grids.prod(-1)
        self.chunks = torch.split(inputs[pixel_key], patches.tolist())
        self.keys = [_content_key(chunk, grid) for chunk, grid in zip(self.chunks, self.grids, strict=True)]
        self.tokens = (patches // model.model.visual.spatial_merge_size**2).tolist()
        placeholders = (inputs["input_ids"][0] == getattr(model.config, token_attr)).nonzero().flatten().tolist()
        firsts = [0, *torch.tensor(self.tokens).cumsum(0).tolist()[:-1]]
        self.starts = [placeholders[i] for i in firsts]  # position of each item's first placeholder
        self.placeholders = placeholders

    def first_change(self, cached_keys: list[str]) -> int:
        """Where the first item that differs from the cached ones begins (a large number if none does)."""
        for i, key in enumerate(self.keys):
            if i >= len(cached_keys) or cached_keys[i] != key:
                return self.starts[i]
        return 1 << 62

    def rows_after(self, keep: int, encodings: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Encoder rows for the placeholders at positions >= keep, encoding the items not yet encoded."""
        done = sum(1 for position in self.placeholders if position < keep)  # placeholders already in the cache
        ends = torch.tensor(self.tokens).cumsum(0).tolist()
        needed = [i for i, end in enumerate(ends) if end > done]
        if not needed:
            return None
        missing = [i for i in needed if self.keys[i] not in encodings]
        if missing:
            encode = getattr(self.model.model, f"get_{self.modality}_features")
            with torch.inference_mode():
                out = encode(torch.cat([self.chunks[i] for i in missing]), self.grids[missing], return_dict=True)
            for i, rows in zip(missing, out.pooler_output, strict=True):
                encodings[self.keys[i]] = rows
        rows = torch.cat([encodings[self.keys[i]] for i in needed])
        return rows[done - (ends[needed[0]] - self.tokens[needed[0]]) :]  # part of the first may be cached


def _content_key(pixels: torch.Tensor, grid: torch.Tensor) -> str:
    digest = hashlib.sha1(pixels.detach().to("cpu").contiguous().numpy().tobytes())
    digest.update(str(grid.tolist()).encode())
    return digest.hexdigest()


def position_ids(model, inputs: dict) -> torch.Tensor:
    """Position ids of the whole prompt: text positions, then M-RoPE's three, shape (4, batch, length).

    The same as the model's `_prepare_position_ids_for_generation` computes for a fresh prompt,
    without reading or writing the `rope_deltas` it keeps on the model.
    """
    ids = inputs["input_ids"]
    text = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
    if inputs.get("image_grid_thw") is not None or inputs.get("video_grid_thw") is not None:
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids",) and not k.startswith("pixel_values")}
        vision, _ = model.model.get_rope_index(ids, **extra)
    else:
        vision = text.unsqueeze(0).expand(3, -1, -1)
    return torch.cat([text.unsqueeze(0), vision], dim=0)
