"""Compare predicted boxes with reference boxes: IoU, one-to-one matching, precision and recall.

Matching is greedy by IoU: every (prediction, reference) pair whose IoU reaches the threshold
(and, when labels must match, whose labels are equal up to case and whitespace) is considered
from the highest IoU down, and taken when neither box is taken yet. Equal IoUs go to the
earlier prediction, then the earlier reference, so the result never depends on chance.
COCO and VOC match the same way within an image and a class, but visit predictions in the
order of their scores; Qwen answers carry no scores, so the IoU orders them here.

Boxes are ``(x1, y1, x2, y2)`` in one coordinate system (pixels of the same picture).
Points and quads are not boxes: the caller leaves points out and passes a quad's bounding
box. What this cannot know: whether two differently worded labels name the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes; 0 when they do not overlap or both have no area."""
    _check_box(a), _check_box(b)
    return _iou(a, b)


def _iou(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def same_label(a: str, b: str) -> bool:
    """Labels equal up to case and whitespace ("Coffee  cup" is "coffee cup")."""
    return _key(a) == _key(b)


@dataclass(frozen=True)
class Match:
    """A prediction matched to a reference, with their IoU."""

    prediction: int
    reference: int
    iou: float


@dataclass(frozen=True)
class Matching:
    """The outcome of `match`: indices into the prediction and reference lists."""

    matches: tuple[Match, ...]
    extra: tuple[int, ...]  # predictions that match no reference (false positives)
    missed: tuple[int, ...]  # references no prediction matches (false negatives)
    predicted: int
    references: int

    @property
    def precision(self) -> float | None:
        """Matched / predicted; None when nothing was predicted."""
        return len(self.matches) / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        """Matched / references; None when there is no reference."""
        return len(self.matches) / self.references if self.references else None

    @property
    def mean_iou(self) -> float | None:
        """Mean IoU of the matches; None when nothing matched."""
        return sum(m.iou for m in self.matches) / len(self.matches) if self.matches else None

    def of_prediction(self, index: int) -> Match | None:
        return next((m for m in self.matches if m.prediction == index), None)

    def of_reference(self, index: int) -> Match | None:
        return next((m for m in self.matches if m.reference == index), None)


def match(
    predictions: Sequence[tuple[Box, str]],
    references: Sequence[tuple[Box, str]],
    threshold: float = 0.5,
    labels: bool = True,
) -> Matching:
    """Match (box, label) predictions to (box, label) references one to one, greedily by IoU.

    A pair counts when its IoU is at least `threshold` (in (0, 1]) and, if `labels`, its
    labels are the same up to case and whitespace. Raises ValueError for a threshold out of
    range or a box that is not four finite numbers with x1 <= x2 and y1 <= y2.
    """
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ValueError(f"threshold must be within (0, 1], got {threshold!r}")
    for box, _ in (*predictions, *references):
        _check_box(box)
    pairs = []
    for p, (p_box, p_label) in enumerate(predictions):
        for r, (r_box, r_label) in enumerate(references):
            if labels and not same_label(p_label, r_label):
                continue
            overlap = _iou(p_box, r_box)
            if overlap >= threshold:
                pairs.append((-overlap, p, r))
    pairs.sort()
    taken_p: set[int] = set()
    taken_r: set[int] = set()
    matches = []
    for negative, p, r in pairs:
        if p not in taken_p and r not in taken_r:
            taken_p.add(p), taken_r.add(r)
            matches.append(Match(prediction=p, reference=r, iou=-negative))
    return Matching(
        matches=tuple(sorted(matches, key=lambda m: m.prediction)),
        extra=tuple(p for p in range(len(predictions)) if p not in taken_p),
        missed=tuple(r for r in range(len(references)) if r not in taken_r),
        predicted=len(predictions),
        references=len(references),
    )


def _key(label: str) -> str:
    return " ".join(label.split()).casefold()


def _check_box(box: Box) -> None:
    if len(box) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
        raise ValueError(f"a box is four finite numbers (x1, y1, x2, y2), got {box!r}")
    if box[0] > box[2] or box[1] > box[3]:
        raise ValueError(f"box corners are inverted: {box!r}")
