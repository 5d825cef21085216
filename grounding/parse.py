"""From model text to :class:`Detection` values: dispatch, image assignment, scaling, clipping."""

from __future__ import annotations

import bisect
import itertools
import math
import numbers
from collections.abc import Callable, Sequence

from grounding.agent_calls import parse_agent_calls
from grounding.document import parse_html_bbox, parse_markdown_comments
from grounding.families import BARE_FORM_FAMILIES, RELATIVE_FAMILIES, RELATIVE_SCALE, check_family
from grounding.json_format import parse_json
from grounding.keyed_boxes import parse_keyed_boxes
from grounding.mentions import find_mentions, mask_reasoning, named_picture
from grounding.plain_text import parse_plain_text
from grounding.points_xml import POINTS_RE, parse_points_xml
from grounding.raw import RawGrounding
from grounding.tags import MARKERS, parse_bare, parse_tags
from grounding.types import Detection

Size = tuple[float, float]


def find_groundings(text: str, family: str) -> list[RawGrounding]:
    """Every grounding in ``text``, unscaled, in text order.

    All explicit formats are read for every family: JSON (tool calls and lists of
    boxes per object too), agents' click/swipe actions, boxes listed under the keys
    of a JSON object (:mod:`grounding.keyed_boxes`), ``<points>``, ``<ref>``/``<box>``
    tags, Qwen2-VL tokens, QwenVL HTML ``data-bbox`` elements and QwenVL Markdown
    ``<!-- Image (…) -->`` comments. Then, where none of those claimed the characters,
    plain-text ``x1,y1,x2,y2 label`` lines; and the bare ``label(x1,y1),(x2,y2)`` form
    that decoding with ``skip_special_tokens=True`` leaves of Qwen2-VL's tokens, only
    when the text has none of the markers (so half a box is never read). Fine-tuned Qwen2.5-VL,
    Qwen3-VL and Qwen3.5 models write those tokens too (see :mod:`grounding.tags`), so
    the bare form is read for every family: leniently for ``qwen-vl`` and ``qwen2-vl``,
    whose own answers use it, and for the others only where the numbers are attached to
    the word before them or start a line (``the man(1,2),(3,4)``, not ``solve for
    (1,2),(3,4)``). Reasoning (``<think>…</think>``) is skipped. Where two formats claim
    the same characters, the first of JSON, agent actions, keyed boxes, tags, XML points,
    HTML, Markdown comments wins.
    """
    check_family(family)
    scan = mask_reasoning(text)
    accepted: list[RawGrounding] = []
    parsers: tuple[Callable[[str], list[RawGrounding]], ...] = (
        parse_json,
        parse_agent_calls,
        lambda t: parse_keyed_boxes(t, _overlap_test([g.span for g in accepted])),
        parse_tags,
        parse_points_xml,
        parse_html_bbox,
        parse_markdown_comments,
    )
    for parser in parsers:
        overlaps = _overlap_test([g.span for g in accepted])
        accepted += [g for g in parser(scan) if not overlaps(g.span)]
    accepted += parse_plain_text(scan, _overlap_test([g.span for g in accepted] + [g.block for g in accepted]))
    if not any(marker in scan for marker in MARKERS):
        taken = [g.block for g in accepted] + [m.span() for m in POINTS_RE.finditer(scan)]
        accepted += parse_bare(scan, taken, attached_only=family not in BARE_FORM_FAMILIES)
    accepted.sort(key=lambda g: g.span)
    return accepted


def _overlap_test(spans: list[tuple[int, int]]) -> Callable[[tuple[int, int]], bool]:
    """A function telling whether a span overlaps any of ``spans`` (in log time)."""
    spans = sorted(spans)
    starts = [start for start, _ in spans]
    furthest = list(itertools.accumulate((end for _, end in spans), max))

    def overlaps(span: tuple[int, int]) -> bool:
        before_end = bisect.bisect_left(starts, span[1])  # spans starting before this one ends
        return before_end > 0 and furthest[before_end - 1] > span[0]

    return overlaps


def parse(
    text: str,
    family: str,
    image_sizes: Sequence[Size],
    input_sizes: Sequence[Size] | None = None,
) -> list[Detection]:
    """The boxes and points in a Qwen-VL-family answer, in pixels of their image.

    Args:
        text: The answer, complete or partial (streaming, or cut by max_new_tokens):
            only complete groundings are returned, never a half-written one.
        family: ``"qwen-vl"``, ``"qwen2-vl"``, ``"qwen2.5-vl"`` or ``"qwen3-vl"``.
        image_sizes: ``(width, height)`` of every image of the conversation as the
            person sees it, in Picture order.
        input_sizes: ``(width, height)`` of each image as the model saw it after its
            resize. Required for ``qwen2.5-vl`` (absolute coordinates) when there are
            images; checked but unused for the relative families.

    Coordinates: ``qwen-vl``, ``qwen2-vl``, ``qwen3-vl`` and later write 0-1000 of
    the image (pixel = v / 1000 * size); ``qwen2.5-vl`` writes pixels of the resized
    input (pixel = v / input size * size). Every shape is read in its family's space,
    agents' clicks and fine-tunes' tokens included. Inverted corners are swapped;
    boxes are clipped to the image; a box with no area left after clipping (so one
    wholly outside), a point outside the image, a box listed under a plain JSON key
    that is not wholly inside the coordinate space, and anything malformed are dropped.

    Which image: the one :func:`picture_named` finds (a tool call's ``img_idx``, else
    the last "Picture N" / "Image N" / 图N / 图片N / 第N张 mention before the
    grounding); with none, the last image. A grounding naming a picture that does not
    exist (``img_idx`` 7 or "Picture 5" with 2 images, "Picture 0") is left out, never
    drawn on another picture (:func:`grounding.readable` flags it when given the number
    of pictures). Nothing else in the output says which image a box is on, so a mention
    placed after its boxes ("... are in Picture 2") is not seen.

    Returns:
        Detections in text order; ``[]`` when there are no images.

    Raises:
        ValueError: unknown family, a size that is not two positive finite numbers,
            ``input_sizes`` of another length than ``image_sizes``, or missing
            ``input_sizes`` for ``qwen2.5-vl``. Model text never raises.
    """
    check_family(family)
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, not {type(text).__name__}")
    sizes = _check_sizes(image_sizes, "image_sizes")
    inputs = None if input_sizes is None else _check_sizes(input_sizes, "input_sizes")
    if inputs is not None and len(inputs) != len(sizes):
        raise ValueError(f"{len(inputs)} input_sizes for {len(sizes)} image_sizes")
    if family not in RELATIVE_FAMILIES and inputs is None and sizes:
        raise ValueError(f"{family} writes absolute coordinates: input_sizes is required")
    if not sizes:
        return []
    mentions = find_mentions(mask_reasoning(text))
    detections = []
    for g in find_groundings(text, family):
        named = picture_named(g, mentions, len(sizes))
        image = len(sizes) if named is None else named
        if not 1 <= image <= len(sizes):
            continue  # a picture that does not exist: flagged in the readable text, drawn nowhere
        space = (RELATIVE_SCALE, RELATIVE_SCALE) if family in RELATIVE_FAMILIES else inputs[image - 1]  # type: ignore[index]
        if g.source == "keyed" and not _within(g.values, space):
            continue  # a number list under a plain key is a box only inside the coordinate space
        detection = to_detection(g, image, space, sizes[image - 1])
        if detection is not None:
            detections.append(detection)
    return detections


def picture_named(g: RawGrounding, mentions: list[tuple[int, int]], count: int) -> int | None:
    """The Picture ``g`` names, which may not exist among ``count``: a tool call's ``img_idx`` + 1,
    else the last mention before its markup (:func:`grounding.mentions.named_picture`, a mention
    inside a ref's label counts); None when nothing names one (then it is on the last picture).
    ``mentions``: :func:`grounding.mentions.find_mentions` of the answer, reasoning masked."""
    return g.picture if g.picture is not None else named_picture(g.span[0], mentions, count)


def to_detection(g: RawGrounding, image: int, space_wh: Size, image_wh: Size) -> Detection | None:
    """Scale ``g`` from the ``space_wh`` coordinate space to ``image_wh`` pixels and clip.

    None when it ends up outside the image, with no area, or not finite.
    """
    (space_w, space_h), (w, h) = space_wh, image_wh
    xs = [v / space_w * w for v in g.values[0::2]]
    ys = [v / space_h * h for v in g.values[1::2]]
    if not all(math.isfinite(v) for v in xs + ys):
        return None
    if g.kind == "point":
        (x,), (y,) = xs, ys
        if not (0 <= x <= w and 0 <= y <= h):
            return None
        return Detection(label=g.label, image=image, point=(x, y), raw=g.values, span=g.span, action=g.action)
    x1, x2 = _clip(min(xs), w), _clip(max(xs), w)
    y1, y2 = _clip(min(ys), h), _clip(max(ys), h)
    if x2 <= x1 or y2 <= y1:
        return None
    quad = None
    if g.kind == "quad":
        quad = tuple((_clip(x, w), _clip(y, h)) for x, y in zip(xs, ys, strict=True))
    return Detection(label=g.label, image=image, bbox=(x1, y1, x2, y2), quad=quad, raw=g.values, span=g.span)


def _within(values: tuple[float, ...], space_wh: Size) -> bool:
    xs, ys = values[0::2], values[1::2]
    return all(0 <= x <= space_wh[0] for x in xs) and all(0 <= y <= space_wh[1] for y in ys)


def _clip(v: float, limit: float) -> float:
    return min(max(v, 0.0), float(limit))


def _check_sizes(sizes: Sequence[Size], name: str) -> list[tuple[float, float]]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise ValueError(f"{name} must be a list of (width, height) pairs")
    checked = []
    for i, size in enumerate(sizes):
        if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
            raise ValueError(f"{name}[{i}] is not a (width, height) pair: {size!r}")
        if not all(_positive(v) for v in size):
            raise ValueError(f"{name}[{i}] must be two positive finite numbers, got {size!r}")
        checked.append((float(size[0]), float(size[1])))
    return checked


def _positive(v: object) -> bool:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return False
    try:
        return math.isfinite(v) and v > 0
    except OverflowError:  # an int too large for a float
        return False
