"""Boxes listed under the keys a person's prompt asked for, each key naming its boxes.

Asked for "the boxes of the cars and of the people, as JSON", models answer with a
key per thing asked for::

    {"cars": [[10, 20, 30, 40], [50, 60, 70, 80]], "people": [[5, 5, 25, 60]], "dogs": []}
    {"car": [10, 20, 30, 40], "dog": [50, 60, 70, 80]}

Numbers in answers are not all boxes (scores, dates, colours), so the rule is narrow:

- only a value under a key of a complete JSON object is read (never a bare list, nor
  numbers in prose), labelled with the key as written;
- the value is one box or a list of boxes, a box being exactly 4 numbers
  ``x1, y1, x2, y2`` with none negative and ``x2 - x1 >= 1``, ``y2 - y1 >= 1`` (corners
  in order, at least one unit of the model's space each way); a list holding anything
  else is not read at all;
- :func:`grounding.parse` then keeps a box only when it lies within the family's
  coordinate space: 0-1000, or the input size for Qwen2.5-VL (boxes under the explicit
  keys of :mod:`grounding.json_format` are clipped instead);
- an object with the keys of the other JSON shapes (``bbox_2d``, an agent's ``action``…)
  is left to those parsers; nested objects are read the same way;
- an object naming its one list of boxes (``{"object": "car", "locations": [[…], […]]}``:
  a naming key of :mod:`grounding.json_labels`, not a text or description) labels them
  with that name instead of the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from grounding.json_format import KEYS, objects_at_keys
from grounding.json_labels import label_of
from grounding.raw import NUMBER_PATTERN, RawGrounding, list_spans, numbers_of

Span = tuple[int, int]
_BOX = rf"\[\s*{NUMBER_PATTERN}(?:\s*,\s*{NUMBER_PATTERN}){{3}}\s*\]"
#: A quoted key followed by a whole box or list of boxes (so a cut-off or unrelated list costs no decoding).
_KEY_RE = re.compile(
    rf"""["'](?P<key>[^"'\n{{}}\[\]:\\]{{1,80}})["']\s*:\s*(?:{_BOX}|\[\s*{_BOX}(?:\s*,\s*{_BOX})*\s*,?\s*\])"""
)
_OTHER_KEYS = frozenset({*KEYS, "action", "coordinate", "coordinate2", "img_idx"})
_MAX_DEPTH = 4


def parse_keyed_boxes(text: str, taken: Callable[[Span], bool] = lambda span: False) -> list[RawGrounding]:
    """Every box listed under a key of a complete JSON object in ``text``, in order, unless ``taken``."""
    groundings: list[RawGrounding] = []
    found = objects_at_keys(
        text,
        _KEY_RE,
        accept=lambda obj: any(keyed_boxes(obj)),
        skip=lambda m: m.group("key") in _OTHER_KEYS or taken(m.span()),
    )
    for obj, span, block in found:
        boxes = list(keyed_boxes(obj))
        for (label, values), own in zip(boxes, list_spans(text, span, [values for _, values in boxes]), strict=True):
            groundings.append(RawGrounding(label, "box", values, own, block, "keyed"))
    return groundings


def keyed_boxes(obj: dict, depth: int = 0) -> Iterator[tuple[str, tuple[float, ...]]]:
    """``(label, box)`` for each box listed under a key of ``obj`` or of the objects in it, in order."""
    if depth > _MAX_DEPTH or any(key in obj for key in _OTHER_KEYS):
        return
    pairs = list(getattr(obj, "pairs", obj.items()))
    lists = {
        i: boxes
        for i, (key, value) in enumerate(pairs)
        if isinstance(key, str) and key.strip() and isinstance(value, (list, tuple)) and (boxes := box_list(value))
    }
    name = label_of(obj, texts=False) if len(lists) == 1 else ""
    for i, (key, value) in enumerate(pairs):
        if isinstance(value, dict):
            yield from keyed_boxes(value, depth + 1)
        for box in lists.get(i, ()):
            yield name or key.strip(), box


def box_list(value: list | tuple) -> list[tuple[float, ...]]:
    """The boxes of one box or of a list of only boxes; ``[]`` for anything else."""
    one = _box(value)
    if one is not None:
        return [one]
    boxes = [_box(v) for v in value]
    return [] if any(b is None for b in boxes) else boxes  # type: ignore[return-value]


def _box(value: object) -> tuple[float, ...] | None:
    numbers = numbers_of(value, 4)
    if numbers is None:
        return None
    x1, y1, x2, y2 = numbers
    return numbers if min(numbers) >= 0 and x2 - x1 >= 1 and y2 - y1 >= 1 else None
