"""Where label tags go on a picture: beside what they name, never over one another.

Pure geometry, no Pillow. :func:`place_tags` takes each tag's size and the places it would
like, in order of preference (above its box, inside its top, below it...), and gives each tag
the first of them that no earlier tag covers; failing all, the nearest free place straight
above or below the first one, within a few tags' heights; failing that, none (the caller
leaves that tag out: its box is still drawn, and the list under the picture names it).
Tags are placed in the order given, so earlier detections keep their preferred places.
"""

from __future__ import annotations

from collections.abc import Sequence

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2: the right and bottom edges excluded
#: Free space kept between two tags, in picture pixels.
GAP = 1
#: How far (in tag heights) a tag may be moved up or down from its first choice.
MAX_SHIFT_TAGS = 4
_BAND = 32  # rows of picture pixels per bucket of the index of placed tags


class _Placed:
    """The tags placed so far, bucketed by rows so that a test looks at few of them."""

    def __init__(self) -> None:
        self.rows: dict[int, list[Rect]] = {}

    def free(self, rect: Rect) -> bool:
        x1, y1, x2, y2 = rect
        for band in range((y1 - GAP) // _BAND, (y2 + GAP) // _BAND + 1):
            for a1, b1, a2, b2 in self.rows.get(band, ()):
                if x1 < a2 + GAP and a1 < x2 + GAP and y1 < b2 + GAP and b1 < y2 + GAP:
                    return False
        return True

    def add(self, rect: Rect) -> None:
        for band in range(rect[1] // _BAND, (rect[3] - 1) // _BAND + 1):
            self.rows.setdefault(band, []).append(rect)

    def edges_near(self, x1: int, x2: int, y_low: int, y_high: int) -> list[int]:
        """The top and bottom edges of placed tags overlapping columns ``x1..x2`` between two heights."""
        edges = []
        for band in range(y_low // _BAND, y_high // _BAND + 1):
            for a1, b1, a2, b2 in self.rows.get(band, ()):
                if x1 < a2 + GAP and a1 < x2 + GAP:
                    edges += [b1, b2]
        return edges


def place_tags(
    sizes: Sequence[tuple[int, int]], wishes: Sequence[Sequence[tuple[float, float]]], image_wh: tuple[int, int]
) -> list[Rect | None]:
    """Each tag's rectangle, or None where it finds no room.

    ``sizes[i]`` is tag i's (width, height); ``wishes[i]`` the top-left corners it would like,
    best first: those wholly inside the picture first, then each moved inside it. No two
    rectangles returned overlap or touch (``GAP``).
    """
    width, height = image_wh
    placed = _Placed()
    out: list[Rect | None] = []
    for (w, h), corners in zip(sizes, wishes, strict=True):
        if w > width or h > height or not corners:
            out.append(None)
            continue
        fits = [_inside(x, y, w, h, width, height) for x, y in corners]
        exact = [r for r, (x, y) in zip(fits, corners, strict=True) if r[:2] == (round(x), round(y))]
        rect = next((r for r in (*exact, *fits) if placed.free(r)), None) or _shifted(fits[0], placed, height)
        if rect is not None:
            placed.add(rect)
        out.append(rect)
    return out


def _inside(x: float, y: float, w: int, h: int, width: int, height: int) -> Rect:
    left = int(min(max(round(x), 0), width - w))
    top = int(min(max(round(y), 0), height - h))
    return left, top, left + w, top + h


def _shifted(first: Rect, placed: _Placed, height: int) -> Rect | None:
    """The free place nearest ``first`` in its columns, at most ``MAX_SHIFT_TAGS`` heights away."""
    x1, y1, x2, y2 = first
    h = y2 - y1
    reach = MAX_SHIFT_TAGS * (h + GAP)
    low, high = max(0, y1 - reach), min(height - h, y1 + reach)
    # A free place touches a placed tag's edge (or the picture's): try just past each edge.
    tops = {y for edge in placed.edges_near(x1, x2, low - h, high + h) for y in (edge + GAP, edge - GAP - h)}
    for top in sorted((t for t in tops | {low, high} if low <= t <= high), key=lambda t: (abs(t - y1), t)):
        rect = (x1, top, x2, top + h)
        if placed.free(rect):
            return rect
    return None
