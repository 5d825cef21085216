"""The :class:`Detection` value that :func:`grounding.parse` returns and :func:`grounding.draw` draws."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Detection:
    """One box or point the model gave, in pixels of the image the person sees.

    Exactly one of ``bbox`` and ``point`` is set. Coordinates are continuous:
    ``0 <= x <= width`` and ``0 <= y <= height``.

    Attributes:
        label: What the model called it (may be ``""``).
        image: 1-based Picture number it belongs to.
        bbox: ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``, clipped to the image.
        point: ``(x, y)`` inside the image.
        quad: For a quad (four corners) the corners, each clipped to the image;
            ``bbox`` is then their bounding box.
        raw: The model's own numbers, unscaled, x first.
        span: ``(start, end)`` of this grounding's markup in the parsed text.
        action: For a point an agent acts on (``"click"``, ``"left_click"``, ``"swipe"``),
            the action as the model named it; else None. ``label`` says it too, with the
            action's text and which end of a two-point action it is (``"swipe start"``).
    """

    label: str
    image: int
    bbox: tuple[float, float, float, float] | None = None
    point: tuple[float, float] | None = None
    quad: tuple[tuple[float, float], ...] | None = None
    raw: tuple[float, ...] = ()
    span: tuple[int, int] = (0, 0)
    action: str | None = None

    def __post_init__(self) -> None:
        if (self.bbox is None) == (self.point is None):
            raise ValueError("a Detection has exactly one of bbox and point")
        if self.image < 1:
            raise ValueError(f"image is a 1-based Picture number, got {self.image}")
        if self.bbox is not None:
            x1, y1, x2, y2 = self.bbox
            if x1 > x2 or y1 > y2:
                raise ValueError(f"bbox corners are inverted: {self.bbox}")
        if self.action is not None and (not isinstance(self.action, str) or not self.action.strip()):
            raise ValueError(f"action is None or an action's name, got {self.action!r}")

    @property
    def kind(self) -> str:
        """``"box"``, ``"quad"`` or ``"point"``."""
        if self.point is not None:
            return "point"
        return "quad" if self.quad is not None else "box"
