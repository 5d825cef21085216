"""Qwen-VL tags, Qwen2-VL special tokens, and the bare form left when tokens are stripped.

Qwen-VL:   ``<ref>Two apples</ref><box>(302,257),(582,671)</box><box>(603,252),(878,642)</box>``
Qwen2-VL:  ``<|object_ref_start|>the man<|object_ref_end|><|box_start|>(123,235),(324,546)<|box_end|>``
Stripped:  ``the man(123,235),(324,546)``

Quads (``<quad>``/``<|quad_start|>``, four corners) are read too. The two tag
spellings may be mixed. Only complete elements count: a box whose closing tag has
not arrived yet (streaming) is not a grounding.

Fine-tuned Qwen2.5-VL, Qwen3-VL and Qwen3.5 models write these tokens too: ms-swift's
default ``QWENVL_BBOX_FORMAT='legacy'`` trains every Qwen2-VL-derived template on
``<|object_ref_start|>a dog<|object_ref_end|><|box_start|>(432,991),(1111,2077)<|box_end|>``
(modelscope/ms-swift ``swift/template/templates/qwen.py``, ``replace_ref`` /
``replace_bbox``), and LLaMA-Factory users write the same text in their data
(hiyouga/LlamaFactory#7015, QwenLM/Qwen3-VL#762). The numbers are in the family's
usual space: ms-swift's ``norm_bbox`` is ``'none'`` (pixels of the image as the
model gets it) for ``Qwen2_5VLTemplate`` and ``'norm1000'`` for the others
(``swift/template/base.py``, ``normalize_bbox``), as the Qwen maintainers advise
(QwenLM/Qwen3-VL#721 for Qwen2.5-VL, #1427 for Qwen3-VL).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from grounding.raw import ARITY, NUMBER_PATTERN, NUMBER_RE, RawGrounding, parse_number

REF_OPEN = ("<ref>", "<|object_ref_start|>")
REF_CLOSE = ("</ref>", "<|object_ref_end|>")
BOX_OPEN = ("<box>", "<|box_start|>")
BOX_CLOSE = ("</box>", "<|box_end|>")
QUAD_OPEN = ("<quad>", "<|quad_start|>")
QUAD_CLOSE = ("</quad>", "<|quad_end|>")

#: Every marker of these formats, for callers that strip or recognise them.
MARKERS: tuple[str, ...] = REF_OPEN + REF_CLOSE + BOX_OPEN + BOX_CLOSE + QUAD_OPEN + QUAD_CLOSE


def _any(markers: tuple[str, ...]) -> str:
    return "(?:" + "|".join(re.escape(m) for m in markers) + ")"


_STOP = _any(REF_OPEN + REF_CLOSE)
TAG_RE = re.compile(
    rf"(?P<ref>{_any(REF_OPEN)}(?P<label>(?:(?!{_STOP}).){{0,1000}}?){_any(REF_CLOSE)})"
    rf"|(?P<box>{_any(BOX_OPEN)}(?P<box_body>[^<>]{{0,200}}?){_any(BOX_CLOSE)})"
    rf"|(?P<quad>{_any(QUAD_OPEN)}(?P<quad_body>[^<>]{{0,400}}?){_any(QUAD_CLOSE)})",
    re.DOTALL,
)

_PAIR = rf"\(\s*{NUMBER_PATTERN}\s*,\s*{NUMBER_PATTERN}\s*\)"
#: Two corner pairs, optionally two more (a stripped quad), comma-separated.
BARE_RE = re.compile(rf"{_PAIR}\s*,\s*{_PAIR}(?:\s*,\s*{_PAIR}\s*,\s*{_PAIR})?")
#: Where a bare label starts: after the last of these.
_BARE_LABEL_BOUNDARY = re.compile(r"[\n.!?;:,。！？；：，、()\[\]{}<>\"]")
_BARE_LABEL_MAX_WORDS = 6
_BARE_LABEL_SKIP = frozenset({"and", "or", "&", "和", "与", "以及"})
_GAP_JOINS_CHAIN = re.compile(r"[\s,;]*")
#: After a box at the end of a partial text: more corner pairs on their way (a quad being written).
_MORE_PAIRS_AT_END = re.compile(rf"(?:\s*,\s*{_PAIR})?\s*,\s*(?:\([^()]*)?\Z")


def _numbers(body: str, arity: int) -> tuple[float, ...] | None:
    found = NUMBER_RE.findall(body)
    if len(found) != arity:
        return None
    numbers = tuple(parse_number(n) for n in found)
    return None if any(n is None for n in numbers) else numbers  # type: ignore[return-value]


def parse_tags(text: str) -> list[RawGrounding]:
    """Boxes and quads in ``<ref>``/``<box>`` tags or Qwen2-VL special tokens.

    A box takes the label of the ref right before it, or of the box chain it
    continues (only whitespace or commas between); any other box gets label ``""``.
    A box whose body does not hold exactly 4 numbers (8 for a quad) is dropped.
    """
    found: list[RawGrounding] = []
    label = ""
    chain_end: int | None = None
    group_start = 0
    for m in TAG_RE.finditer(text):
        if m.group("ref") is not None:
            label = m.group("label").strip()
            chain_end, group_start = m.end(), m.start()
            continue
        kind = "box" if m.group("box") is not None else "quad"
        body = m.group("box_body") if kind == "box" else m.group("quad_body")
        if chain_end is None or not _GAP_JOINS_CHAIN.fullmatch(text, chain_end, m.start()):
            label, group_start = "", m.start()
        chain_end = m.end()
        numbers = _numbers(body, ARITY[kind])
        if numbers is None:
            continue
        found.append(RawGrounding(label, kind, numbers, m.span(), (group_start, m.end()), "tags"))
    return _close_blocks(found)


def _close_blocks(found: list[RawGrounding]) -> list[RawGrounding]:
    """Make every grounding of one group share the group's full (start, end) block."""
    ends: dict[int, int] = {}
    for g in found:
        ends[g.block[0]] = max(ends.get(g.block[0], 0), g.block[1])
    return [
        RawGrounding(g.label, g.kind, g.values, g.span, (g.block[0], ends[g.block[0]]), g.source)
        for g in found
    ]


def parse_bare(text: str, taken: Sequence[tuple[int, int]] = (), attached_only: bool = False) -> list[RawGrounding]:
    """Boxes in the stripped form ``label(x1,y1),(x2,y2)`` (and four-pair quads).

    The label is a guess: the words before the numbers back to the previous
    grounding or punctuation, at most six words. A box right after another one
    (``(..),(..)(..),(..)``) shares its label. Matches overlapping a ``taken`` span
    (markup another parser already read) are skipped, and so is a box followed by a
    comma at the end of the text (a quad still being written).

    ``attached_only``: read only numbers written right after a character or at the
    start of a line, as stripping ``<|object_ref_end|><|box_start|>`` leaves them
    (``the man(1,2),(3,4)``), not after a space (``solve for (1,2),(3,4)``).
    """
    if taken:  # blank out other markup with a label boundary, keeping offsets
        chars = list(text)
        for start, end in set(taken):
            chars[start:end] = "\n" * (end - start)
        text = "".join(chars)
    found: list[RawGrounding] = []
    previous_end = 0
    for m in BARE_RE.finditer(text):
        numbers = tuple(parse_number(n) for n in NUMBER_RE.findall(m.group()))
        if any(n is None for n in numbers):
            continue
        if attached_only and m.start() > 0 and text[m.start() - 1] in " \t\r\f\v":
            continue
        kind = "box" if len(numbers) == 4 else "quad"
        if kind == "box" and _MORE_PAIRS_AT_END.match(text, m.end()):
            continue
        before = text[previous_end : m.start()]
        if found and not before.strip():  # continues the previous box's chain
            label, group_start = found[-1].label, found[-1].block[0]
        else:
            label, group_start = _bare_label(before), m.start()
        found.append(RawGrounding(label, kind, numbers, m.span(), (group_start, m.end()), "bare"))  # type: ignore[arg-type]
        previous_end = m.end()
    return _close_blocks(found)


def _bare_label(before: str) -> str:
    cut = 0
    for b in _BARE_LABEL_BOUNDARY.finditer(before):
        cut = b.end()
    words = before[cut:].split()[-_BARE_LABEL_MAX_WORDS:]
    while words and words[0].lower() in _BARE_LABEL_SKIP:
        words = words[1:]
    return " ".join(words)
