"""Qwen2.5-VL / Qwen3-VL JSON groundings.

    ```json
    [
        {"bbox_2d": [139, 768, 315, 954], "label": "small cake"},
        {"point_2d": [925, 618], "label": "point_1"}
    ]
    ```

Fenced or not, with prose around it, a list or a single object. Every complete
object holding a box key (``bbox_2d``, else the first of ``bbox``, ``bboxes``,
``boxes``, ``box``, ``bounding_box``, ``bounding_boxes``) with 4 numbers, or
``point_2d`` with 2, is a grounding; so is each entry of a list of such boxes or
points under those keys (``{"bbox_2d": [[…], […]], "label": "cup"}``: a list of
boxes per object, as people's prompts get). An object cut off by the end of the
text is not read. The label comes from :mod:`grounding.json_labels`.

As models really write them:

- a tool call (Qwen3-VL "think with images"), whose ``img_idx`` (0-based) names
  the picture: ``<tool_call>{"name": "image_zoom_in_tool", "arguments":
  {"bbox_2d": […], "label": "…", "img_idx": 0}}</tool_call>``;
- a stray ``{`` before an object (``{ {"bbox_2d": …}``), read as the object;
- duplicate keys, as when a ``}, {`` went missing: each repeat of a key starts
  a new object, so ``{"bbox_2d": A, "label": "a", "bbox_2d": B, "label": "b"}``
  is two groundings;
- Python-style dicts (single quotes) and trailing commas, tolerated until 50
  such readings of one text have failed (a guard against pathological text).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable

from grounding.json_labels import label_of
from grounding.raw import RawGrounding, list_spans, numbers_of

#: Keys holding boxes, most preferred first: an object's first one present is its boxes.
BOX_KEYS: tuple[str, ...] = ("bbox_2d", "bbox", "bboxes", "boxes", "box", "bounding_box", "bounding_boxes")
#: JSON key -> (kind, arity).
KEYS: dict[str, tuple[str, int]] = {**{k: ("box", 4) for k in BOX_KEYS}, "point_2d": ("point", 2)}

# The short keys only when quoted; the Qwen ones also bare (Python-ish, JavaScript-ish text).
_KEY_RE = re.compile(r"""(?:["'](?:bboxes|boxes|box|bounding_boxes|bounding_box)["']|["']?\b(?:bbox_2d|point_2d|bbox)\b["']?)\s*:""")
_TOOL_CALL_HEAD_RE = re.compile(r"""\{\s*"name"\s*:\s*"[^"\n]{0,100}"\s*,\s*"arguments"\s*:\s*\Z""")
_TOOL_CALL_TAIL_RE = re.compile(r"""\s*\}""")
_TOOL_CALL_OPEN = "<tool_call>"
_TOOL_CALL_CLOSE_RE = re.compile(r"\s*</tool_call>")
_FENCE_RE = re.compile(r"```[ \t]*(?:json)?[^\n`]*\n?(?:.*?)(?:```|\Z)", re.IGNORECASE | re.DOTALL)
_TRAILING_COMMA_RE = re.compile(r",\s*([}\]])")


class _Object(dict):
    """A decoded JSON object that remembers its key/value pairs in order, repeats included."""

    def __init__(self, pairs: list[tuple[str, object]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


_DECODER = json.JSONDecoder(object_pairs_hook=_Object)
_BACKTRACK = 2  # how many "{" before a key are tried as its object's start
_SCAN_BACK = 24  # how many "{" before a key are looked at
_WINDOW = 3000  # longest object read, in characters
_LENIENT_TRIES = 50  # lenient (non-JSON) readings per text


def parse_json(text: str) -> list[RawGrounding]:
    """Every complete box / point object in ``text``, in order."""
    groundings: list[RawGrounding] = []
    for obj, span, block in objects_at_keys(text, _KEY_RE):
        found: list[tuple[str, str, tuple[float, ...], int | None, bool]] = []
        for part in _split_repeats(obj):
            label, picture = label_of(part), _picture(part)
            box_key = next((k for k in BOX_KEYS if k in part), None)
            for key in (box_key, "point_2d"):
                if key is not None and key in part:
                    kind, arity = KEYS[key]
                    listed = numbers_of(part[key], arity) is None  # a list of shapes: each gets its own span
                    found += [(label, kind, values, picture, listed) for values in shapes_of(part[key], arity)]
        spans = list_spans(text, span, [values for _, _, values, _, listed in found if listed])[::-1]
        for label, kind, values, picture, listed in found:
            own = spans.pop() if listed else span
            groundings.append(RawGrounding(label, kind, values, own, block, "json", picture))  # type: ignore[arg-type]
    return groundings


def objects_at_keys(
    text: str,
    key_re: re.Pattern[str],
    accept: Callable[[dict], bool] | None = None,
    skip: Callable[[re.Match[str]], bool] | None = None,
) -> list[tuple[dict, tuple[int, int], tuple[int, int]]]:
    """``(object, span, block)`` of each complete object holding a match of ``key_re`` that ``accept`` takes, in order.

    Each object is read once, from the innermost ``{`` around a match (see :func:`_enclosing_object`);
    matches inside an object already read, or that ``skip`` rejects, are passed over. The block is
    what :func:`_blocks` gives.
    """
    entries: list[tuple[dict, tuple[int, int]]] = []
    consumed = 0
    budget = [_LENIENT_TRIES]
    for m in key_re.finditer(text):
        if m.start() < consumed or (skip is not None and skip(m)):
            continue
        found = _enclosing_object(text, consumed, m.start(), budget, accept or _has_key)
        if found is not None:
            entries.append(found)
            consumed = found[1][1]
    spans = [span for _, span in entries]
    return [(obj, span, block) for (obj, span), block in zip(entries, _blocks(text, spans), strict=True)]


def shapes_of(value: object, arity: int) -> list[tuple[float, ...]]:
    """One shape of ``arity`` numbers, or each such entry of a list of them (malformed entries skipped)."""
    one = numbers_of(value, arity)
    if one is not None:
        return [one]
    if isinstance(value, list) and value and all(isinstance(v, (list, tuple)) for v in value):
        return [n for n in (numbers_of(v, arity) for v in value) if n is not None]
    return []


def _split_repeats(obj: dict) -> list[dict]:
    """``obj`` as one dict per run of distinct keys (a repeated key starts a new one)."""
    pairs = getattr(obj, "pairs", None)
    if pairs is None or len(pairs) == len(obj):
        return [obj]
    parts: list[dict] = [{}]
    for key, value in pairs:
        if key in parts[-1]:
            parts.append({})
        parts[-1][key] = value
    return parts


def _picture(obj: dict) -> int | None:
    """The 1-based Picture a tool call's 0-based ``img_idx`` names, or None."""
    index = obj.get("img_idx")
    if isinstance(index, str) and index.strip().isdigit():
        index = int(index)
    if isinstance(index, float) and index.is_integer():
        index = int(index)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0 or index > 10_000:
        return None
    return index + 1


def _has_key(obj: dict) -> bool:
    return any(k in obj for k in KEYS)


def _enclosing_object(
    text: str, low: int, key_at: int, budget: list[int], accept: Callable[[dict], bool] = _has_key
) -> tuple[dict, tuple[int, int]] | None:
    """The complete dict that holds the key found at ``key_at``, starting after ``low``, that ``accept`` takes.

    ``budget`` counts the lenient (non-JSON) readings still allowed in this text.
    """
    start = key_at
    tries = _BACKTRACK
    for _ in range(_SCAN_BACK):
        start = text.rfind("{", max(low, key_at - _WINDOW), start)
        if start == -1:
            return None
        before = text[max(low, start - 8) : start].rstrip()
        if before.endswith(('"', "'")):  # a brace inside a label, like "{x}"
            continue
        decoded = _decode_object(text, start, budget)
        if before.endswith("{"):  # a stray "{" before the object, or "{{" in a label: no try spent
            if decoded is not None and decoded[1] > key_at and accept(decoded[0]):
                return decoded[0], (start, decoded[1])
            continue
        if decoded is not None and decoded[1] > key_at and accept(decoded[0]):
            return decoded[0], (start, decoded[1])
        tries -= 1
        if tries == 0:
            return None
    return None


def _decode_object(text: str, start: int, budget: list[int]) -> tuple[dict, int] | None:
    """The dict starting at ``text[start] == "{"`` and where it ends, or None.

    Reads at most ``_WINDOW`` characters, so a text full of ``{`` stays linear. Text
    that is not strict JSON gets the slower lenient reading until ``budget``
    failures have been spent on the text.
    """
    window = text[start : start + _WINDOW]
    try:
        obj, end = _DECODER.raw_decode(window)
    except json.JSONDecodeError as error:
        if error.pos >= len(window) - 1 or budget[0] <= 0:  # cut off: nothing to repair
            return None
        end = balanced_end(window, 0)
        obj = None if end is None else _lenient_load(window[:end])
        if not isinstance(obj, dict):
            budget[0] -= 1  # only failures cost: each success consumes its text
            return None
    except (ValueError, RecursionError):
        return None
    return (obj, start + end) if isinstance(obj, dict) else None


def _lenient_load(snippet: str) -> object:
    try:
        return json.loads(_TRAILING_COMMA_RE.sub(r"\1", snippet))
    except (ValueError, RecursionError):
        pass
    if sum(snippet.count(c) for c in "[{(") > 16:
        return None
    try:
        return ast.literal_eval(snippet)
    except Exception:  # literal_eval raises many kinds on arbitrary text
        return None


def balanced_end(text: str, start: int) -> int | None:
    """Index after the bracket closing ``text[start]``, aware of quoted strings."""
    depth = 0
    quote = ""
    escaped = False
    for i in range(start, min(len(text), start + _WINDOW)):
        c = text[i]
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _blocks(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """For each entry, the markup group :func:`grounding.readable` replaces.

    A fenced code block holding the entry; a tool call holding it as its
    ``arguments`` (with its ``<tool_call>`` tags); otherwise the run of
    comma-separated entries with its ``[`` and ``]`` (to the end of the text when
    the list was cut off).
    """
    fences = [m.span() for m in _FENCE_RE.finditer(text)]
    blocks: list[tuple[int, int] | None] = [None] * len(spans)
    run: list[int] = []
    for i, (start, end) in enumerate(spans):
        fence = next((f for f in fences if f[0] <= start and end <= f[1]), None)
        if fence is None:
            fence = _tool_call(text, start, end)
        if fence is not None:
            blocks[i] = fence
            continue
        if run and not re.fullmatch(r"\s*,?\s*", text[spans[run[-1]][1] : start]):
            _close_run(text, spans, run, blocks)
            run = []
        run.append(i)
    if run:
        _close_run(text, spans, run, blocks)
    return blocks  # type: ignore[return-value]


def _tool_call(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The ``{"name": …, "arguments": <entry>}`` object (and its tags) around an entry, or None."""
    head = _TOOL_CALL_HEAD_RE.search(text, max(0, start - 200), start)
    tail = _TOOL_CALL_TAIL_RE.match(text, end)
    if head is None or tail is None:
        return None
    start, end = head.start(), tail.end()
    opening = text.rfind(_TOOL_CALL_OPEN, max(0, start - 40), start)
    closing = _TOOL_CALL_CLOSE_RE.match(text, end)
    if opening != -1 and not text[opening + len(_TOOL_CALL_OPEN) : start].strip() and closing is not None:
        start, end = opening, closing.end()
    return start, end


def _close_run(text: str, spans, run: list[int], blocks: list) -> None:
    start, end = spans[run[0]][0], spans[run[-1]][1]
    window = max(0, start - 200)  # bounded: no copy of the whole prefix per run
    head = text[window:start].rstrip()
    if head.endswith("["):
        start = window + len(head) - 1
    tail = re.match(r"\s*,?\s*(\]|\{|$)", text[end:])
    if tail is not None:
        if tail.group(1) == "]":
            end += tail.end()
        elif tail.group(1) == "" or balanced_end(text, end + tail.start(1)) is None:
            end = len(text)  # cut off mid-list: the rest is a half-written entry
    for i in run:
        blocks[i] = (start, end)
