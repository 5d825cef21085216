"""Qwen2.5-VL's plain-text boxes: one ``x1,y1,x2,y2 label`` per line.

The format the Qwen2.5-VL spatial-understanding cookbook documents ("bbox-format:
plain text ``x1,y1,x2,y2 object_name/description``") and gets with a system
prompt asking for "plain text format 'x1,y1,x2,y2 object'"::

    138,769,315,954 蛋糕
    365,679,533,849 蛋糕

Numbers in prose are easy to mistake for this, so only whole lines of exactly
this shape count: four unsigned numbers separated by commas (spaces after them
tolerated), whitespace, then a label; corners in order (``x1 < x2``, ``y1 < y2``,
so "5, 4, 3, 2 liftoff" is not a box); not inside a fenced code block of a
programming language; not overlapping markup another parser read. While
streaming, the last line's label may still be growing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from grounding.raw import RawGrounding, parse_number

_N = r"([0-9]{1,6}(?:\.[0-9]+)?)"
LINE_RE = re.compile(
    rf"^[ \t]*{_N}[ \t]*,[ \t]*{_N}[ \t]*,[ \t]*{_N}[ \t]*,[ \t]*{_N}[ \t]+(?P<label>[^\s,][^\n]{{0,200}}?)[ \t]*$",
    re.MULTILINE,
)
#: Fenced code blocks; those tagged with a language other than plain text are skipped.
_CODE_FENCE_RE = re.compile(r"^[ \t]*```[ \t]*(?P<lang>[\w+#.-]*)[^\n]*\n.*?(?:^[ \t]*```|\Z)", re.MULTILINE | re.DOTALL)
_TEXT_LANGUAGES = frozenset({"", "text", "txt", "plaintext", "plain"})


def parse_plain_text(text: str, taken: Callable[[tuple[int, int]], bool] = lambda span: False) -> list[RawGrounding]:
    """Every ``x1,y1,x2,y2 label`` line of ``text``, in order, unless ``taken(span)``.

    Consecutive such lines (only whitespace between) form one block, which
    :func:`grounding.readable` shows as one note.
    """
    if "," not in text:
        return []
    code = [m.span() for m in _CODE_FENCE_RE.finditer(text) if m.group("lang").lower() not in _TEXT_LANGUAGES]
    found: list[RawGrounding] = []
    runs: list[list[int]] = []
    fence = 0
    for m in LINE_RE.finditer(text):
        while fence < len(code) and code[fence][1] <= m.start():
            fence += 1
        if fence < len(code) and code[fence][0] <= m.start() or taken(m.span()):
            continue
        numbers = tuple(parse_number(m.group(i)) for i in range(1, 5))
        if any(n is None for n in numbers):
            continue
        x1, y1, x2, y2 = numbers  # type: ignore[misc]
        if not (x1 < x2 and y1 < y2):  # type: ignore[operator]
            continue
        if found and not text[found[-1].span[1] : m.start()].strip():
            runs[-1].append(len(found))
        else:
            runs.append([len(found)])
        found.append(RawGrounding(m.group("label").strip(), "box", numbers, m.span(), m.span(), "plain"))  # type: ignore[arg-type]
    for run in runs:
        block = (found[run[0]].span[0], found[run[-1]].span[1])
        for i in run:
            g = found[i]
            found[i] = RawGrounding(g.label, g.kind, g.values, g.span, block, g.source)
    return found
