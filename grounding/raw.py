"""Groundings as found in the model's text, before any scaling.

Every format parser returns :class:`RawGrounding` values: the model's own numbers,
in the model's own coordinate space, with the character offsets they came from.
Turning them into pixels is :mod:`grounding.parse`'s job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["box", "point", "quad"]

#: How many numbers each kind of grounding carries (x first, then y).
ARITY: dict[str, int] = {"box": 4, "point": 2, "quad": 8}

#: A plain decimal number as models write it: no exponent, ASCII digits only.
NUMBER_PATTERN = r"[-+]?[0-9]+(?:\.[0-9]+)?"
NUMBER_RE = re.compile(NUMBER_PATTERN)


@dataclass(frozen=True)
class RawGrounding:
    """One box, point or quad exactly as the model wrote it.

    ``values`` are x-first: ``(x1, y1, x2, y2)`` for a box, ``(x, y)`` for a point,
    ``(x1, y1, ..., x4, y4)`` for a quad. ``span`` is the ``(start, end)`` of this
    grounding's own markup in the text; ``block`` is the markup group it belongs to
    (a ref with its boxes, a whole JSON list, one ``<points>`` element, a run of
    plain-text lines, one ``data-bbox`` attribute), which is what
    :func:`grounding.readable` replaces. ``picture`` is the 1-based Picture the
    markup itself names (a tool call's ``img_idx`` + 1), else None; it may be out
    of range, which :func:`grounding.parse` checks. ``action`` is the agent action
    a point comes from (``"click"``, ``"swipe"``), else None.
    """

    label: str
    kind: Kind
    values: tuple[float, ...]
    span: tuple[int, int]
    block: tuple[int, int]
    source: str  # "tags", "bare", "json", "keyed", "agent", "points-xml", "plain", "html" or "md-comment"
    picture: int | None = None
    action: str | None = None


def to_number(value: object) -> float | None:
    """A finite float from a JSON/XML/regex value, or None (bools and strings are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            return None
        return number if math.isfinite(number) else None
    return None


def parse_number(text: str) -> float | None:
    """A finite float from a string such as ``"12"`` or ``" 3.5 "``, or None."""
    text = text.strip()
    if not NUMBER_RE.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def numbers_of(values: object, arity: int) -> tuple[float, ...] | None:
    """The numbers of a JSON list if it holds exactly ``arity`` finite numbers, else None."""
    if not isinstance(values, (list, tuple)) or len(values) != arity:
        return None
    numbers = tuple(to_number(v) for v in values)
    if any(n is None for n in numbers):
        return None
    return numbers  # type: ignore[return-value]


def list_spans(text: str, span: tuple[int, int], lists: list[tuple[float, ...]]) -> list[tuple[int, int]]:
    """Where each of ``lists`` (written ``[v1, v2, ...]``, in order) lies in ``text[span]``; ``span`` where not found."""
    found = []
    cursor = span[0]
    for values in lists:
        pattern = re.compile(r"\[\s*" + r"\s*,\s*".join([f"({NUMBER_PATTERN})"] * len(values)) + r"\s*\]")
        matches = pattern.finditer(text, cursor, span[1])
        own = next((m.span() for m in matches if tuple(parse_number(n) for n in m.groups()) == values), None)
        found.append(own or span)
        cursor = own[1] if own else cursor
    return found
