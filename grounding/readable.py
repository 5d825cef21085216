"""Show an answer with groundings as prose: short tags instead of markers, numbers and JSON."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from grounding.json_format import balanced_end
from grounding.mentions import find_mentions, mask_reasoning
from grounding.parse import find_groundings, picture_named
from grounding.raw import RawGrounding
from grounding.tags import MARKERS
from grounding.types import Detection

_MAX_LABELS = 8
_BOX_ELEMENT_RE = re.compile(
    r"(?:<box>|<\|box_start\|>|<quad>|<\|quad_start\|>)[^<>]{0,400}?(?:</box>|<\|box_end\|>|</quad>|<\|quad_end\|>)"
)
_POINTS_ELEMENT_RE = re.compile(r"<points?\b[^<>]*?(?:/>|>([^<>]*)</points?\s*>)", re.IGNORECASE)
#: A box, quad or <points> element still being written at the end of the text.
_UNFINISHED_ELEMENT_RE = re.compile(
    r"(?:<box>|<\|box_start\|>|<quad>|<\|quad_start\|>)[^<>]*\Z|<points?\b[^<>]*(?<!/)(?:>[^<>]*)?\Z",
    re.IGNORECASE,
)
_MARKER_AT_END_RE = re.compile(r"(?:</?ref>|</?box>|</?quad>|</?tool_call>|<\|[A-Za-z0-9_]{1,40}\|>)\Z")
_MARKER_TAIL = 44  # longest marker
_TOOL_CALL = ("<tool_call>", "</tool_call>")
_PARTIAL_TARGETS = (*MARKERS, *_TOOL_CALL, "<think>", "</think>", "<points", "<point", "</points>", "</point>")
_PARTIAL_GENERIC_RE = re.compile(r"<\|[A-Za-z0-9_]{0,40}\|?")
_DETECTION_KEYS = (
    "bbox_2d", "point_2d", "bbox", "label", "name", "name_en", "name_zh", "names", "text_content", "action", "object",
)  # fmt: skip
_DETECTION_STARTS = tuple(f'{bracket}{{"{key}"' for bracket in ("[", "") for key in _DETECTION_KEYS)
#: A JSON object listing boxes under a key (:mod:`grounding.keyed_boxes`), as its start looks without spaces.
_KEYED_START_RE = re.compile(r'\[?\{"[^"]{1,80}":\[\[?[-+]?[0-9]')
_TWO_POINT_END_RE = re.compile(r" (?:start|end)(?=:|$)")
#: A ``data-bbox`` attribute no complete element claimed (one still being written).
_DATA_BBOX_RE = re.compile(r"""\s+data-bbox\s*=\s*(?:"[^"<>]{0,200}"?|'[^'<>]{0,200}'?)""", re.IGNORECASE)


def readable(text: str, family: str, detections: Sequence[Detection] | None = None, pictures: int | None = None) -> str:
    """``text`` for display: groundings become short bracketed notes, markers go.

    - ``<ref>the man</ref><box>…</box>`` (either spelling), ``<points …>the man</points>``
      and the bare ``the man(1,2),(3,4)`` become ``the man [Picture 1]``, or
      ``two apples [2 boxes on Picture 1]`` for several boxes;
    - a JSON detection list (fenced or not), a tool call with a box, a JSON object
      listing boxes under keys and a run of plain-text ``x1,y1,x2,y2 label`` lines
      become ``[3 boxes on Picture 2: cat, cup ×2]`` (a keyed object parse kept no box
      of stays as written);
    - an agent's tool call becomes ``[click on Picture 1]`` / ``[swipe on Picture 1]``;
    - a QwenVL Markdown ``<!-- Table (…) -->`` comment becomes ``Table [Picture 1]``;
    - a QwenVL HTML document stays a document: only its ``data-bbox`` attributes go;
    - every other ``<|…|>`` marker, ref/box/tool_call tag and malformed box is removed;
    - the end of a partial answer loses whatever is half-written: a marker like
      ``<|box_st``, an unclosed box, ``<points`` element or tool call, an
      unfinished JSON list.

    Picture numbers come from ``detections`` (what :func:`grounding.parse` returned for
    the same text); a grounding with no detection (dropped, or ``detections`` not
    given) gets no Picture number. Given ``pictures`` (how many the answer could be
    about), a grounding that names a picture that does not exist, which ``parse``
    leaves out, is flagged: ``the cat [box on Picture 5 — there is no Picture 5]``.
    Counts and labels are what the model wrote. ``<think>`` reasoning is left as it
    is, less its markers.
    """
    pictures_at: dict[tuple[int, int], set[int]] = {}
    for d in detections or ():
        pictures_at.setdefault(d.span, set()).add(d.image)
    groundings = find_groundings(text, family)
    missing_at = _missing_pictures(text, groundings, pictures_at, pictures)
    pieces: list[str] = []
    cursor = 0
    for start, end, group in _merged_blocks(groundings):
        on = sorted(set().union(*(pictures_at.get(g.span, set()) for g in group)))
        missing = sorted({missing_at[g.span] for g in group if g.span in missing_at})
        if detections is not None and not on and all(g.source == "keyed" for g in group):
            continue  # parse kept none of these numbers as boxes: the JSON stays as written
        pieces.append(_clean(text[cursor:start], at_end=False))
        note = _note(group, on, missing)
        before = next((p for p in reversed(pieces) if p), "")
        if note and before and not before[-1].isspace() and (note.startswith("[") or before.endswith("]")):
            note = " " + note
        if note and end < len(text) and (text[end].isalnum() or text[end] in "([{"):
            note += " "
        pieces.append(note)
        cursor = end
    pieces.append(_clean(text[cursor:], at_end=True, fenced=text.count("```", 0, cursor) % 2 == 1))
    return _strip_markers("".join(pieces), at_end=True)


def _merged_blocks(groundings: list[RawGrounding]) -> list[tuple[int, int, list[RawGrounding]]]:
    merged: list[tuple[int, int, list[RawGrounding]]] = []
    for g in sorted(groundings, key=lambda g: g.block):
        if merged and g.block[0] < merged[-1][1]:
            start, end, group = merged[-1]
            merged[-1] = (start, max(end, g.block[1]), [*group, g])
        else:
            merged.append((g.block[0], g.block[1], [g]))
    return merged


def _missing_pictures(
    text: str, groundings: list[RawGrounding], drawn: dict[tuple[int, int], set[int]], count: int | None
) -> dict[tuple[int, int], int]:
    """The span of each grounding with no detection that names a picture not among ``count``, and that number."""
    if count is None:
        return {}
    mentions = find_mentions(mask_reasoning(text))
    missing = {}
    for g in groundings:
        named = picture_named(g, mentions, count) if g.span not in drawn else None
        if named is not None and not 1 <= named <= count:
            missing[g.span] = named
    return missing


def _note(group: list[RawGrounding], pictures: list[int], missing: list[int]) -> str:
    """The replacement for one block of markup: its Pictures (``missing``: named ones that do not exist)."""
    if group[0].source == "html":
        return ""  # the attribute goes; the element and its text stay
    named = sorted({*pictures, *missing})
    on = f" on {_pictures(named)}" if named else ""
    flag = f" — there {'is' if len(missing) == 1 else 'are'} no {_pictures(missing)}" if missing else ""
    if all(g.source == "agent" for g in group):  # "[click on Picture 1]", "[swipe on Picture 1]"
        actions = dict.fromkeys(_TWO_POINT_END_RE.sub("", g.label) for g in group)
        return f"[{', '.join(actions)}{on}{flag}]"
    if group[0].source in ("json", "keyed", "plain") or len({g.label for g in group}) > 1:
        labels = _labels(group)
        return f"[{_counts(group)}{on}{': ' + labels if labels else ''}{flag}]"
    label = group[0].label if group[0].source != "bare" else ""
    if not named:
        return label
    if missing:  # "the cat [box on Picture 5 — there is no Picture 5]"
        what = ("point" if group[0].kind == "point" else "box") if len(group) == 1 else _counts(group)
        tag = f"[{what}{on}{flag}]"
    else:
        tag = f"[{_pictures(pictures)}]" if len(group) == 1 else f"[{_counts(group)}{on}]"
    return f"{label} {tag}" if label else tag


def _pictures(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"Picture {numbers[0]}"
    return "Pictures " + ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


def _counts(group: list[RawGrounding]) -> str:
    boxes = sum(g.kind != "point" for g in group)
    points = len(group) - boxes
    parts = [f"{boxes} box{'es' if boxes != 1 else ''}"] if boxes else []
    parts += [f"{points} point{'s' if points != 1 else ''}"] if points else []
    return " and ".join(parts)


def _labels(group: list[RawGrounding]) -> str:
    counts = Counter(g.label for g in group if g.label)
    shown = [f"{label} ×{n}" if n > 1 else label for label, n in counts.items()]
    more = ", …" if len(shown) > _MAX_LABELS else ""
    return ", ".join(shown[:_MAX_LABELS]) + more


def _clean(segment: str, at_end: bool, fenced: bool = False) -> str:
    """Remove markup no grounding claimed; at the end of the text, also half-written markup.

    ``fenced``: the segment starts inside a code fence opened before it (a QwenVL
    HTML document, whose ``data-bbox`` attributes split it into segments).
    """
    if at_end:
        cut = len(segment)
        unfinished = _UNFINISHED_ELEMENT_RE.search(segment)
        if unfinished is not None:
            cut = unfinished.start()
        tool_call = segment.rfind(_TOOL_CALL[0])
        if tool_call != -1 and _TOOL_CALL[1] not in segment[tool_call:]:
            cut = min(cut, tool_call)
        segment = segment[: min(cut, _unfinished_json(segment, fenced))]
    segment = _DATA_BBOX_RE.sub("", segment)
    segment = _BOX_ELEMENT_RE.sub("", segment)
    segment = _POINTS_ELEMENT_RE.sub(lambda m: m.group(1) or "", segment)
    return _strip_markers(segment, at_end)


def _strip_markers(text: str, at_end: bool) -> str:
    """Remove every marker in one pass, nested ones too (``<|a<|b|>|>`` goes entirely).

    A stack: each time a ``>`` completes a marker at the end of the output, it is
    popped, so no marker can be left, even one formed by removing another.
    """
    if "<" not in text:
        return text
    out: list[str] = []
    for c in text:
        out.append(c)
        if c == ">":
            tail = "".join(out[-_MARKER_TAIL:])
            m = _MARKER_AT_END_RE.search(tail)
            if m is not None:
                del out[len(out) - (len(tail) - m.start()) :]
    stripped = "".join(out)
    return _cut_partial_marker(stripped) if at_end else stripped


def _cut_partial_marker(text: str) -> str:
    """Drop the start of markers at the end, such as ``<|box_st``, ``<re`` or ``<``."""
    end = len(text)
    while True:
        less = text.rfind("<", max(0, end - _MARKER_TAIL), end)
        if less == -1:
            return text[:end]
        tail = text[less:end]
        if _PARTIAL_GENERIC_RE.fullmatch(tail) or any(t.startswith(tail) and t != tail for t in _PARTIAL_TARGETS):
            end = less
        else:
            return text[:end]


def _unfinished_json(segment: str, fenced: bool = False) -> int:
    """Where an unfinished detection list (fenced or not) at the end starts, else len."""
    if (segment.count("```") + fenced) % 2 == 1 and "```" in segment:
        fence = segment.rfind("```")
        header_end = segment.find("\n", fence)
        body = "" if header_end == -1 else segment[header_end + 1 :]
        if _looks_like_detections(body):
            return fence
    for bracket in re.finditer(r"[\[{]", segment[-2000:]):
        start = bracket.start() + max(0, len(segment) - 2000)
        if _looks_like_detections(segment[start : start + 200]) and balanced_end(segment, start) is None:
            return start
    return len(segment)


def _looks_like_detections(body: str) -> bool:
    compact = re.sub(r"\s", "", body[:200]).replace("'", '"')
    return any(s.startswith(compact) or compact.startswith(s) for s in _DETECTION_STARTS) or bool(
        _KEYED_START_RE.match(compact)
    )
