"""Reusing a session's KV cache and vision encodings from one turn to the next (local engine only).

A chat re-renders the whole conversation every turn. Instead of running the vision encoder
and a full prefill over it again, each session keeps:

- the token ids its cache holds, and the cache itself (a transformers `DynamicCache`, its attention
  layers `demo.engines.local.kv_buffer.RoomyLayer`s);
- the vision encoder's output for each image or video of the conversation, keyed by the
  content of its preprocessed pixels, so no encoding is computed twice in a session;
- for caches with linear-attention layers (Qwen3.5's Gated DeltaNet), snapshots.

`plan_reuse` finds the longest common prefix of the cached ids and the new prompt and rewinds
the cache there, encodes the pictures not seen before, one at a time, and returns what
`demo.engines.local.prefill.prefill` (and `generate`) need to read the rest: where to start, M-RoPE position ids
computed over the whole prompt (3-D positions depend on every earlier image's grid; they are
computed here, not left to `generate`, whose fallback reads a `rope_deltas` shared by all
sessions), and the encoder rows of the placeholders still to read.

Attention layers rewind to any prefix by cropping. A linear-attention layer keeps one
recurrent state (and a convolution state) for everything it has read, which cannot be cut back.
So a hybrid cache also keeps `Snapshot`s, copies of those states at chosen lengths, and rewinds
to the longest of them (or its live state) that the new prompt extends; with none, it starts
afresh. Each prompt's reading stops once, at its generation prompt (the last `<|im_start|>`),
to snapshot there: templates that re-render earlier answers (Qwen3.5's drops their reasoning)
share everything before it, so a follow-up resumes there and re-reads the last answer as the
template renders it, with the new question; regenerate re-reads only the generation prompt; an
undone or edited last question resumes at the previous turn's. (Every snapshot costs one more
forward, which reads all the weights: a short follow-up is read in two forwards, not one.) The
longest `MAX_SNAPSHOTS` are kept, and count in the session's bytes.

`CacheStore` holds the sessions' entries, capped in bytes, least recently used first out.
Knows transformers' Qwen VL models (`get_rope_index`, `get_*_features`) and cache layers; knows
nothing of conversations, Gradio or the UI.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import LinearAttentionCacheLayerMixin

from demo.engines.local.kv_buffer import held_bytes
from demo.engines.local.prefill import Encoded

# (modality, pixel key, grid key, config attribute of its placeholder token id)
MODALITIES = (
    ("image", "pixel_values", "image_grid_thw", "image_token_id"),
    ("video", "pixel_values_videos", "video_grid_thw", "video_token_id"),
)
MAX_SNAPSHOTS = 4  # per session: the last four turns' generation prompts


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _linear_layers(kv) -> list:
    return [layer for layer in kv.layers if isinstance(layer, LinearAttentionCacheLayerMixin)]


@dataclass
class Snapshot:
    """Copies of a hybrid cache's linear-attention states after its first `length` tokens."""

    length: int
    states: list[tuple[dict, dict]]  # per linear-attention layer, in order: conv states, recurrent states

    @classmethod
    def take(cls, kv, length: int) -> Snapshot:
        copy = lambda states: {i: s.clone() for i, s in states.items() if s is not None}  # noqa: E731
        return cls(length, [(copy(layer.conv_states), copy(layer.recurrent_states)) for layer in _linear_layers(kv)])

    def restore(self, kv) -> None:
        for layer, (conv, recurrent) in zip(_linear_layers(kv), self.states, strict=True):
            # transformers 5.25 counts a linear layer's tokens itself, and a hybrid cache's
            # `get_seq_length` (the next token's position) reads its first layer, a linear one
            counted = getattr(layer, "cumulative_length_linear", None)
            if counted is not None:
                counted.fill_(self.length)
            for i, state in conv.items():
                layer.conv_states[i].copy_(state)
                layer.has_previous_state[i] = True
            for i, state in recurrent.items():
                layer.recurrent_states[i].copy_(state)

    def nbytes(self) -> int:
        return _nbytes(s for conv, recurrent in self.states for s in (*conv.values(), *recurrent.values()))


@dataclass
class SessionCache:
    """What one session keeps between turns."""

    kv: DynamicCache
    ids: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # tokens the kv holds
    encodings: dict[str, Encoded] = field(default_factory=dict)  # pixel content key -> vision encoder output
    items: dict[str, list[str]] = field(default_factory=dict)  # modality -> content keys of the items, in order
    snapshots: list[Snapshot] = field(default_factory=list)  # hybrid caches: shortest first
    live: bool = True  # hybrid caches: the linear layers' states stand for all of `ids`
    forgotten: bool = False  # its session was forgotten while this entry was out: not kept

    @property
    def hybrid(self) -> bool:
        return bool(_linear_layers(self.kv))

    def nbytes(self) -> int:
        tensors = []
        for layer in self.kv.layers:
            for states in (getattr(layer, "conv_states", None), getattr(layer, "recurrent_states", None)):
                tensors += list((states or {}).values())
        total = _nbytes(tensors) + sum(held_bytes(layer) for layer in self.kv.layers)
        total += sum(e.nbytes() for e in self.encodings.values())
        return total + sum(s.nbytes() for s in self.snapshots)

    def snapshot(self, length: int) -> None:
        """Keep the linear-attention states as they are now, standing for the first `length` tokens."""
        if any(s.length == length for s in self.snapshots):
            return
        self.snapshots.append(Snapshot.take(self.kv, length))
        self.snapshots.sort(key=lambda s: s.length)
        while len(self.snapshots) > MAX_SNAPSHOTS:  # the oldest turn's go first: they are the shortest
            self.snapshots.pop(0)

    def rewind(self, keep: int) -> int:
        """Make the cache hold a prefix of its tokens no longer than `keep`; return its length."""
        if not self.hybrid:
            _crop_attention(self.kv, keep)
            return min(keep, len(self.ids))
        points = [s.length for s in self.snapshots if s.length <= keep]
        if self.live and len(self.ids) <= keep:
            points.append(len(self.ids))
        start = max(points, default=0)
        if start == 0:
            self.kv.reset()
        elif not (self.live and start == len(self.ids)):
            next(s for s in self.snapshots if s.length == start).restore(self.kv)
        _crop_attention(self.kv, start)
        self.snapshots = [s for s in self.snapshots if s.length <= start]
        self.live = True
        return start

    def settle(self, prompt_ids: torch.Tensor, reading: bool) -> None:
        """After a prefill ended early: keep the longest consistent part of the cache.

        `reading`: it ended while reading tokens (not while encoding pictures), so a linear layer
        may be midway through a chunk: its state is not trusted, the next turn rewinds to a snapshot.
        """
        lengths = [layer.get_seq_length() for layer in self.kv.layers if getattr(layer, "keys", None) is not None]
        done = min(lengths, default=0)
        _crop_attention(self.kv, done)
        self.ids = prompt_ids[:done].clone()
        self.snapshots = [s for s in self.snapshots if s.length <= done]
        if reading and self.hybrid:
            self.live = False


def _crop_attention(kv, length: int) -> None:
    """Crop every attention layer of `kv` to its first `length` tokens."""
    for layer in kv.layers:
        if getattr(layer, "keys", None) is not None and layer.get_seq_length() > length:
            layer.crop(length - layer.get_seq_length())  # a negative count: the tokens to drop
        # Qwen4-Exp's QSA layers also keep their indexer's keys and (the first) every token's positions,
        # both appended before the layer's own keys: a stop between them leaves them longer
        indexer_keys = getattr(layer, "indexer_keys", None)
        if indexer_keys is not None and indexer_keys.ndim == 3 and indexer_keys.shape[1] > length:
            layer.indexer_keys = indexer_keys[:, :length]
        positions = getattr(layer, "indexer_position_ids", None)
        if positions is not None and positions.shape[-1] > length:
            layer.indexer_position_ids = positions[..., :length]


class CacheStore:
    """Sessions' caches, at most `max_bytes` in all; the least recently used are dropped first.

    `take` hands a session's entry out (creating it) and `give_back` returns it after a turn; an
    entry that is out is never evicted, one larger than the whole cap is not kept, and one whose
    session was forgotten while it was out is dropped when it comes back. Thread-safe.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, SessionCache] = OrderedDict()
        self._out: dict[str, SessionCache] = {}  # entries handed out, by session
        self._lock = threading.Lock()

    def take(self, session: str, new: SessionCache) -> SessionCache:
        """The session's entry (removed from the store while in use), or `new` if it has none."""
        with self._lock:
            entry = self._entries.pop(session, None) or new
            self._out[session] = entry
            return entry

    def give_back(self, session: str, entry: SessionCache) -> None:
        """Keep `entry` as the session's most recent; evict others (or it) to stay within the cap."""
        size = entry.nbytes()
        with self._lock:
            if self._out.get(session) is entry:
                del self._out[session]
            self._entries.pop(session, None)
            if size > self.max_bytes or entry.forgotten:  # the next turn starts afresh
                return
            total = size + sum(e.nbytes() for e in self._entries.values())
            while total > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                total -= evicted.nbytes()
            self._entries[session] = entry

    def forget(self, session: str) -> None:
        """Drop the session's entry, now or (if it is out) when it comes back."""
        with self._lock:
            self._entries.pop(session, None)
            if session in self._out:
                self._out.pop(session).forgotten = True

    def sessions(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes() for e in self._entries.values())


@dataclass
class Plan:
    """How to read a prompt into a session's cache: see `plan_reuse`."""

    start: int  # tokens already in the cache
    position_ids: torch.Tensor  # the whole prompt's, (4, 1, length)
    encoded: dict[str, Encoded]  # modality -> encoder rows of its placeholders at positions >= start
    marks: tuple[int, ...]  # positions at which to snapshot (hybrid caches)


def plan_reuse(model, inputs: dict, entry: SessionCache, turn_start_id: int | None = None) -> Plan:
    """Rewind `entry` to the longest prefix it shares with `inputs` (the processor's output).

    Shared means the same token ids, and behind the image and video placeholders the same
    pixels; at least one token is always left to read. Encodes only the items not encoded
    before, one at a time. `turn_start_id` (`<|im_start|>`) marks where messages begin.
    """
    ids = inputs["input_ids"][0]
    items = {m: _Items(model, inputs, m, pixel_key, grid_key, token_attr) for m, pixel_key, grid_key, token_attr in MODALITIES}
    items = {m: found for m, found in items.items() if found.keys}
    limit = min([len(ids) - 1, len(entry.ids)] + [found.first_change(entry.items.get(m, [])) for m, found in items.items()])
    cached = entry.ids.to(ids.device)[:limit]
    differs = (cached != ids[:limit]).nonzero()
    keep = int(differs[0]) if len(differs) else limit
    start = entry.rewind(keep)
    entry.ids = ids[:start].clone()
    entry.items = {m: found.keys for m, found in items.items()}  # what the cache holds once prefilled

    encoded = {}
    for modality, found in items.items():
        rows = found.rows_after(start, entry.encodings)
        if rows is not None:
            encoded[modality] = rows
    wanted = {key for found in items.values() for key in found.keys}
    entry.encodings = {key: value for key, value in entry.encodings.items() if key in wanted}

    marks: tuple[int, ...] = ()
    if entry.hybrid and turn_start_id is not None:
        messages = (ids == turn_start_id).nonzero().flatten().tolist()
        marks = tuple(m for m in messages[-1:] if m > start)
    return Plan(start, position_ids(model, inputs), encoded, marks)


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

    def rows_after(self, start: int, encodings: dict[str, Encoded]) -> Encoded | None:
        """Encoder rows for the placeholders at positions >= start, encoding (one by one) the items not yet encoded."""
        done = sum(1 for position in self.placeholders if position < start)  # placeholders already in the cache
        ends = torch.tensor(self.tokens).cumsum(0).tolist()
        needed = [i for i, end in enumerate(ends) if end > done]
        if not needed:
            return None
        encode = getattr(self.model.model, f"get_{self.modality}_features")
        for i in needed:
            if self.keys[i] not in encodings:
                out = encode(self.chunks[i], self.grids[i : i + 1], return_dict=True)
                deepstack = getattr(out, "deepstack_features", None)
                encodings[self.keys[i]] = Encoded(
                    out.pooler_output[0],
                    None if deepstack is None else tuple(layer[0] for layer in deepstack),
                    type(out),
                )
        rows = Encoded.cat([encodings[self.keys[i]] for i in needed])
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
