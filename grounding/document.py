"""Document parsing output: QwenVL HTML ``data-bbox`` elements and QwenVL Markdown comments.

QwenVL HTML (prompt "QwenVL HTML"; Qwen2.5-VL and Qwen3-VL)::

    <h2 data-bbox="310 94 658 132">Qwen2.5 Technical Report</h2>
    <div class="image" data-bbox="108 478 376 592"></div>

QwenVL Markdown (prompt "qwenvl markdown"; Qwen3-VL), boxes of images and tables::

    <!-- Image (50, 100, 450, 300) -->
    <!-- Table (50, 350, 950, 600) -->

An HTML element counts once it is complete: closed, self-closing (``<img …/>``) or
void. Its label is its text (tags stripped, entities decoded, whitespace
collapsed, cut to 40 characters with an ellipsis), else its ``class``, else its
tag name. An element whose box repeats the box of the element holding it (the
cookbook's ``<div class="image" data-bbox=B><img data-bbox=B/></div>``) is not
read twice, and ``<ol>`` is left to its items, as the cookbooks' ``draw_bbox``
does. The grounding's span is the start tag; its block, which
:func:`grounding.readable` replaces, is the ``data-bbox`` attribute alone, so the
document around it stays whole.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from grounding.raw import NUMBER_RE, RawGrounding, parse_number

LABEL_MAX = 40
_TAG_RE = re.compile(
    r"""<(?P<close>/?)(?P<name>[A-Za-z][\w-]{0,30})(?P<attrs>(?:[^<>"']|"[^"<>]{0,500}"|'[^'<>]{0,500}'){0,2000}?)(?P<self>/?)>"""
)
_BBOX_ATTR_RE = re.compile(r"""\s+data-bbox\s*=\s*(?:"(?P<dq>[^"<>]{0,200})"|'(?P<sq>[^'<>]{0,200})')""", re.IGNORECASE)
_HAS_BBOX_RE = re.compile("data-bbox", re.IGNORECASE)
_CLASS_ATTR_RE = re.compile(r"""\bclass\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_VOID = frozenset({"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})
_ANY_TAG_RE = re.compile(r"<[^<>]*>")
_LABEL_WINDOW = 4000  # characters of an element's content looked at for its label
_MAX_OPEN = 200  # deepest nesting tracked; deeper elements are not read
#: Elements a sibling of the same name closes (``<li>a<li>b``), as HTML does.
_SELF_CLOSING_SIBLINGS = frozenset({"li", "p", "tr", "td", "th", "dt", "dd", "option"})
#: Drawn by their items instead, as the cookbook's ``draw_bbox`` does.
_SKIPPED = frozenset({"ol"})
MD_COMMENT_RE = re.compile(
    r"<!--[ \t]*(?P<kind>Image|Table)[ \t]*\((?P<body>[^()\n]{0,100})\)[ \t]*-->", re.IGNORECASE
)


@dataclass
class _Open:
    """An element whose closing tag has not been seen yet."""

    name: str
    tag: tuple[int, int]  # its start tag
    attrs: str
    block: tuple[int, int]  # its data-bbox attribute, or (0, 0)
    values: tuple[float, ...] | None  # its box, if it has one worth reading


def parse_html_bbox(text: str) -> list[RawGrounding]:
    """Every complete element with ``data-bbox="x1 y1 x2 y2"``, in order of its start tag.

    An element left open inside one that closes counts as closed there (``<li>``
    without ``</li>``); one still open at the end of the text (streaming) does not.
    """
    if _HAS_BBOX_RE.search(text) is None:
        return []
    found: list[RawGrounding] = []
    stack: list[_Open] = []
    for m in _TAG_RE.finditer(text):
        name = m.group("name").lower()
        if m.group("close"):
            depth = next((i for i in range(len(stack) - 1, -1, -1) if stack[i].name == name), None)
            if depth is not None:  # else a stray closing tag
                _close(text, stack, depth, m.start(), found)
            continue
        if name in _SELF_CLOSING_SIBLINGS and stack and stack[-1].name == name:
            _close(text, stack, len(stack) - 1, m.start(), found)
        attr = _BBOX_ATTR_RE.search(m.group("attrs"))
        values = _values(attr) if attr is not None and name not in _SKIPPED else None
        if values is not None and any(e.values == values for e in stack):
            values = None  # the same box as an element holding it
        offset = m.start("attrs")
        block = (offset + attr.start(), offset + attr.end()) if attr is not None else (0, 0)
        element = _Open(name, m.span(), m.group("attrs"), block, values)
        if m.group("self") or name in _VOID:
            if values is not None:
                found.append(_grounding(element, _label("", element)))
        elif len(stack) < _MAX_OPEN:
            stack.append(element)
    found.sort(key=lambda g: g.span)
    return found


def _close(text: str, stack: list[_Open], depth: int, end: int, found: list[RawGrounding]) -> None:
    """Close ``stack[depth:]`` where ``end`` is, reading the boxes among them."""
    for element in stack[depth:]:
        if element.values is not None:
            content = text[element.tag[1] : min(end, element.tag[1] + _LABEL_WINDOW)]
            found.append(_grounding(element, _label(content, element)))
    del stack[depth:]


def _values(attr: re.Match[str]) -> tuple[float, ...] | None:
    body = attr.group("dq") if attr.group("dq") is not None else attr.group("sq")
    parts = body.replace(",", " ").split()
    if len(parts) != 4:
        return None
    numbers = tuple(parse_number(p) for p in parts)
    return None if any(n is None for n in numbers) else numbers  # type: ignore[return-value]


def _grounding(element: _Open, label: str) -> RawGrounding:
    return RawGrounding(label, "box", element.values, element.tag, element.block, "html")  # type: ignore[arg-type]


def _label(content: str, element: _Open) -> str:
    """The element's text, cut short; else its class; else its tag name."""
    words = " ".join(html.unescape(_ANY_TAG_RE.sub(" ", content)).split())
    if words:
        return words if len(words) <= LABEL_MAX else words[: LABEL_MAX - 1].rstrip() + "…"
    css = _CLASS_ATTR_RE.search(element.attrs)
    if css is not None:
        classes = " ".join((css.group(1) if css.group(1) is not None else css.group(2)).split())
        if classes:
            return classes
    return element.name


def parse_markdown_comments(text: str) -> list[RawGrounding]:
    """Every ``<!-- Image (x1, y1, x2, y2) -->`` / ``<!-- Table (…) -->`` comment, in order."""
    if "<!--" not in text:
        return []
    found = []
    for m in MD_COMMENT_RE.finditer(text):
        parts = NUMBER_RE.findall(m.group("body"))
        if len(parts) != 4 or m.group("body").count(",") != 3:
            continue
        numbers = tuple(parse_number(p) for p in parts)
        if any(n is None for n in numbers):
            continue
        found.append(RawGrounding(m.group("kind").capitalize(), "box", numbers, m.span(), m.span(), "md-comment"))  # type: ignore[arg-type]
    return found
