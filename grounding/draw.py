"""Draw detections on a picture: coloured boxes, point markers, labels on filled tags.

Line widths and label sizes are chosen for where the picture will be seen. By default that
is the picture at its own size (lines of 2 px and labels of 12 px, growing with big
pictures). A picture shown smaller, say a 4000×3000 photo in a 200 px high thumbnail, is
drawn for that: pass ``fit=(width, height)``, the box it is shown in, and lines come out
about 2 px and labels about 13 px there, whatever the picture's own size. Tags are laid out
so that none covers another (:mod:`grounding.tag_layout`), in a distinct colour per label.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from PIL import Image, ImageDraw

from grounding import fonts
from grounding.tag_layout import place_tags
from grounding.types import Detection

RGB = tuple[int, int, int]
_MAX_TAG_CHARS = 40

#: Fixed palette, picked by a CRC-32 of the label, so a label keeps its colour
#: across calls and processes (unlike Python's salted ``hash``).
PALETTE: tuple[RGB, ...] = (
    (230, 25, 75),  # red
    (60, 180, 75),  # green
    (0, 130, 200),  # blue
    (245, 130, 48),  # orange
    (145, 30, 180),  # purple
    (70, 240, 240),  # cyan
    (240, 50, 230),  # magenta
    (210, 245, 60),  # lime
    (0, 128, 128),  # teal
    (170, 110, 40),  # brown
    (128, 0, 0),  # maroon
    (0, 0, 128),  # navy
    (255, 225, 25),  # yellow
    (128, 128, 0),  # olive
)


def label_color(label: str) -> RGB:
    """The palette colour of ``label``: the same in every call and every process."""
    return PALETTE[_palette_index(label)]


def label_colors(labels: Iterable[str]) -> dict[str, RGB]:
    """A colour per distinct label, distinct while the palette lasts: each label its own
    :func:`label_color` unless an earlier label of ``labels`` has it, then the next free one."""
    colors: dict[str, RGB] = {}
    for label in labels:
        if label in colors:
            continue
        own, taken = _palette_index(label), set(colors.values())
        free = (PALETTE[(own + step) % len(PALETTE)] for step in range(len(PALETTE)))
        colors[label] = next((c for c in free if c not in taken), PALETTE[own])
    return colors


def _palette_index(label: str) -> int:
    return zlib.crc32(label.encode("utf-8", "surrogatepass")) % len(PALETTE)


#: Where a picture is shown smaller than its size: line width and label size on the screen.
SHOWN_LINE_PX = 2.2
SHOWN_LABEL_PX = 13


def shrink(width: int, height: int, fit: tuple[int, int] | None) -> float:
    """Picture pixels per screen pixel when ``width × height`` is shown within ``fit`` (at least 1)."""
    if fit is None:
        return 1.0
    box_w, box_h = fit
    if box_w < 1 or box_h < 1:
        raise ValueError(f"fit must be a positive (width, height), got {fit}")
    return max(1.0, width / box_w, height / box_h)


def line_width(width: int, height: int, fit: tuple[int, int] | None = None) -> int:
    """Box outline width in picture pixels (2 px up to ~500 px at its own size; ~2 px on screen within ``fit``)."""
    own, scale = max(2, round((width + height) / 2 / 250)), shrink(width, height, fit)
    return own if scale <= 1 else max(own, round(SHOWN_LINE_PX * scale))


def font_size(width: int, height: int, fit: tuple[int, int] | None = None) -> int:
    """Label text size in picture pixels (at least 12 px at its own size; ~13 px on screen within ``fit``)."""
    own, scale = max(12, round((width + height) / 2 / 36)), shrink(width, height, fit)
    return own if scale <= 1 else max(own, round(SHOWN_LABEL_PX * scale))


def draw(image: Image.Image, detections: Iterable[Detection], fit: tuple[int, int] | None = None) -> Image.Image:
    """A new RGB copy of ``image`` with ``detections`` drawn on it; ``image`` is not changed.

    ``fit`` is the box (width, height) the picture will be shown within, when smaller than
    the picture: lines and labels are then sized to read there.

    Pass only the detections of this image (``d.image``) in its own pixel coordinates
    (the orientation the person sees: apply ``ImageOps.exif_transpose`` first).
    Boxes get an outline, quads a polygon, points a filled circle with a white
    outline; each labelled one gets its label on a tag of its colour (an agent's
    click or swipe end: its label, which names the action), distinct labels distinct
    colours (:func:`label_colors`). Tags never cover one another
    (:mod:`grounding.tag_layout`): above the box, else inside its top, below it...;
    a tag with no room near its box is left out. Transparent images are flattened on white.
    """
    out = _rgb_copy(image)
    detections = list(detections)
    width, height = out.size
    line = line_width(width, height, fit)
    size = font_size(width, height, fit)
    canvas = ImageDraw.Draw(out)
    colors = label_colors(d.label for d in detections)
    tags: list[tuple[str, RGB, tuple[float, float, float, float], bool]] = []  # label, colour, box, is a point
    for d in detections:
        color = colors[d.label]
        tag = " ".join((d.label or d.action or "").split())  # an agent's point says its action
        if d.point is not None:
            x, y = d.point
            r = max(4, 3 * line)
            outline = max(1, line // 2 + 1)
            canvas.ellipse((x - r, y - r, x + r, y + r), fill=color, outline=(255, 255, 255), width=outline)
            box = (x - r, y - r, x + r, y + r)
        elif d.quad is not None:
            canvas.polygon([(x, y) for x, y in d.quad], outline=color, width=line)
            box = d.bbox  # type: ignore[assignment]
        elif d.bbox is not None:
            canvas.rectangle(_pixel_box(d.bbox, width, height), outline=color, width=line)
            box = d.bbox
        else:
            continue
        if tag:
            tags.append((tag, color, box, d.point is not None))
    _draw_tags(canvas, tags, size, out.size)  # tags last, so no outline crosses them
    return out


def _rgb_copy(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        out = image.convert("RGB")
    except ValueError:  # modes with no direct RGB conversion (16-bit, float)
        out = image.convert("L").convert("RGB")
    return out if out is not image else image.copy()


def _pixel_box(bbox: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Continuous ``[x1, x2]`` edges to the inclusive pixel rows/columns they cover."""
    x1, y1, x2, y2 = bbox
    left = min(max(round(x1), 0), width - 1)
    top = min(max(round(y1), 0), height - 1)
    right = min(max(round(x2) - 1, left), width - 1)
    bottom = min(max(round(y2) - 1, top), height - 1)
    return left, top, right, bottom


def _text_color(color: RGB) -> RGB:
    r, g, b = color
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def _short(label: str) -> str:
    """One line of at most ``_MAX_TAG_CHARS`` characters (OCR labels can be paragraphs)."""
    label = " ".join(label.split())
    return label if len(label) <= _MAX_TAG_CHARS else label[: _MAX_TAG_CHARS - 1] + "…"


def _draw_tags(
    canvas: ImageDraw.ImageDraw,
    tags: list[tuple[str, RGB, tuple[float, float, float, float], bool]],
    size: int,
    image_wh: tuple[int, int],
) -> None:
    """Filled tags of ``size`` px labels, each beside its box (label, colour, box, is a point), none over another."""
    texts, sizes, wishes = [], [], []
    pad = max(2, size // 6)
    for label, _, box, point in tags:
        label = _short(label)
        font = fonts.label_font(label, size)
        try:
            left, top, right, bottom = canvas.textbbox((0, 0), label, font=font)
        except (UnicodeEncodeError, ValueError, OSError):  # a bitmap font without the glyphs
            label = label.encode("ascii", "replace").decode("ascii")
            left, top, right, bottom = canvas.textbbox((0, 0), label, font=font)
        _, tall, _, deep = canvas.textbbox((0, 0), "Hg", font=font)  # every tag as high: "nose" as "Hg"
        top, bottom = min(top, tall), max(bottom, deep)
        w, h = right - left + 2 * pad, bottom - top + 2 * pad
        texts.append((label, font, left, top))
        sizes.append((w, h))
        wishes.append(_wishes(box, w, h, point))
    placed = place_tags(sizes, wishes, image_wh)
    for (label, font, left, top), (_, color, _, _), rect in zip(texts, tags, placed, strict=True):
        if rect is None:
            continue  # no room near its box: the box is drawn, the list beside the picture names it
        x1, y1, x2, y2 = rect
        canvas.rectangle((x1, y1, x2 - 1, y2 - 1), fill=color)
        canvas.text((x1 + pad - left, y1 + pad - top), label, fill=_text_color(color), font=font)


def _wishes(box: tuple[float, float, float, float], w: int, h: int, point: bool) -> list[tuple[float, float]]:
    """Where a ``w × h`` tag's top-left corner may go for ``box``, best first."""
    x1, y1, x2, y2 = box
    if point:  # beside the marker: right of it above, right of it below, left of it
        return [(x2, y1 - h), (x2, y2), (x1 - w, y1 - h), (x1 - w, y2), (x2, (y1 + y2 - h) / 2)]
    return [
        (x1, y1 - h),  # above, on its left edge
        (x1, y1),  # inside its top-left corner
        (x1, y2),  # below
        (x2 - w, y1 - h),  # above, on its right edge
        (x2 - w, y1),  # inside its top-right corner
        (x2 - w, y2),  # below, on its right edge
        (x1, y2 - h),  # inside its bottom-left corner
    ]
