"""Qwen2.5-VL's XML points.

    <points x1="284" y1="305" alt="rolling pin">rolling pin</points>
    <points x1="10" y1="20" x2="30" y2="40" alt="eggs">eggs</points>

Each ``xN``/``yN`` pair is one point; a lone ``x``/``y`` pair is accepted too, as is
``<point .../>``. The label is the element's text, else its ``alt``. Only complete
elements count; a pair with a missing or non-numeric half is dropped.
"""

from __future__ import annotations

import re

from grounding.raw import RawGrounding, parse_number

POINTS_RE = re.compile(
    r"<(?P<tag>points?)\b(?P<attrs>[^<>]{0,2000}?)(?:/>|>(?P<body>[^<>]{0,1000})</points?\s*>)",
    re.IGNORECASE,
)
_ATTR_RE = re.compile(r"""([A-Za-z_][\w.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_COORD_RE = re.compile(r"([xy])([0-9]{0,6})", re.IGNORECASE)


def parse_points_xml(text: str) -> list[RawGrounding]:
    """Every point of every complete ``<points>`` / ``<point>`` element, in order."""
    found: list[RawGrounding] = []
    for m in POINTS_RE.finditer(text):
        attrs: dict[str, str] = {}
        for a in _ATTR_RE.finditer(m.group("attrs")):
            attrs[a.group(1).lower()] = a.group(2) if a.group(2) is not None else a.group(3)
        xs: dict[int, float | None] = {}
        ys: dict[int, float | None] = {}
        for name, value in attrs.items():
            coord = _COORD_RE.fullmatch(name)
            if coord is None:
                continue
            index = int(coord.group(2)) if coord.group(2) else 0
            (xs if coord.group(1).lower() == "x" else ys)[index] = parse_number(value)
        label = (m.group("body") or "").strip() or attrs.get("alt", "").strip()
        for index in sorted(xs):
            x, y = xs[index], ys.get(index)
            if x is None or y is None:
                continue
            found.append(RawGrounding(label, "point", (x, y), m.span(), m.span(), "points-xml"))
    return found
