"""Qwen2.5-VL / Qwen3-VL JSON groundings.

    ```json
    [
        {"bbox_2d": [139, 768, 315, 954], "label": "small cake"},
        {"point_2d": [925, 618], "label": "point_1"}
    ]
    ```

Fenced or not, with prose around it, a list or a single object. Every complete
object holding ``bbox_2d`` (4 numbers) or ``point_2d`` (2 numbers) is one
grounding; an object cut off by the end of the text is not. The label is
``label`` (or ``text_content``, which the OCR prompts use), else ``""``.
Python-style dicts (single quotes) and trailing commas are tolerated (until 50
such readings of one text have failed: a guard against pathological text).
"""

from __future__ import annotations

import ast
import json
import re

from grounding.raw import RawGrounding, numbers_of

#: JSON key -> (kind, arity).
KEYS: dict[str, tuple[str, int]] = {"bbox_2d": ("box", 4), "point_2d": ("point", 2)}

_KEY_RE = re.compile(r"""["']?\b(bbox_2d|point_2d)\b["']?\s*:""")
_FENCE_RE = re.compile(r"```[ \t]*(?:json)?[^\n`]*\n?(?:.*?)(?:```|\Z)", re.IGNORECASE | re.DOTALL)
_TRAILING_COMMA_RE = re.compile(r",\s*([}\]])")
_DECODER = json.JSONDecoder()
_BACKTRACK = 2  # how many "{" before a key are tried as its object's start
_SCAN_BACK = 24  # how many "{" before a key are looked at
_WINDOW = 3000  # longest object read, in characters
_LENIENT_TRIES = 50  # lenient (non-JSON) readings per text


def parse_json(text: str) -> list[RawGrounding]:
    """Every complete ``bbox_2d`` / ``point_2d`` object in ``text``, in order."""
    entries: list[tuple[dict, tuple[int, int]]] = []
    consumed = 0
    budget = [_LENIENT_TRIES]
    for m in _KEY_RE.finditer(text):
        if m.start() < consumed:
            continue
        found = _enclosing_object(text, consumed, m.start(), budget)
        if found is not None:
            entries.append(found)
            consumed = found[1][1]
    blocks = _blocks(text, [span for _, span in entries])
    groundings: list[RawGrounding] = []
    for (obj, span), block in zip(entries, blocks, strict=True):
        label = _label(obj)
        for key, (kind, arity) in KEYS.items():
            numbers = numbers_of(obj.get(key), arity)
            if numbers is not None:
                groundings.append(RawGrounding(label, kind, numbers, span, block, "json"))  # type: ignore[arg-type]
    return groundings


def _label(obj: dict) -> str:
    for key in ("label", "text_content"):
        value = obj.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _enclosing_object(
    text: str, low: int, key_at: int, budget: list[int]
) -> tuple[dict, tuple[int, int]] | None:
    """The complete dict that holds the key found at ``key_at``, starting after ``low``."""
    start = key_at
    tries = _BACKTRACK
    for _ in range(_SCAN_BACK):
        start = text.rfind("{", max(low, key_at - _WINDOW), start)
        if start == -1:
            return None
        before = text[max(low, start - 8) : start].rstrip()
        if before.endswith(("{", '"', "'")):  # a brace inside a label, like "{{x}}"
            continue
        decoded = _decode_object(text, start, budget)
        if decoded is not None and decoded[1] > key_at and any(k in decoded[0] for k in KEYS):
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

    A fenced code block holding the entry; otherwise the run of comma-separated
    entries with its ``[`` and ``]`` (to the end of the text when the list was cut off).
    """
    fences = [m.span() for m in _FENCE_RE.finditer(text)]
    blocks: list[tuple[int, int] | None] = [None] * len(spans)
    run: list[int] = []
    for i, (start, end) in enumerate(spans):
        fence = next((f for f in fences if f[0] <= start and end <= f[1]), None)
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


def _close_run(text: str, spans, run: list[int], blocks: list) -> None:
    start, end = spans[run[0]][0], spans[run[-1]][1]
    head = text[:start].rstrip()
    if head.endswith("["):
        start = len(head) - 1
    tail = re.match(r"\s*,?\s*(\]|\{|$)", text[end:])
    if tail is not None:
        if tail.group(1) == "]":
            end += tail.end()
        elif tail.group(1) == "" or balanced_end(text, end + tail.start(1)) is None:
            end = len(text)  # cut off mid-list: the rest is a half-written entry
    for i in run:
        blocks[i] = (start, end)
