"""Draw detections on a picture: coloured boxes, point markers, labels on filled tags.

Line widths and label sizes are chosen for where the picture will be seen. By default that
is the picture at its own size (lines of 2 px and labels of 12 px, growing with big
pictures). A picture shown smaller, say a 4000×3000 photo in a 200 px high thumbnail, is
drawn for that: pass ``fit=(width, height)``, the box it is shown in, and lines come out
about 2 px and labels about 13 px there, whatever the picture's own size.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from PIL import Image, ImageDraw

from grounding import fonts
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
    return PALETTE[zlib.crc32(label.encode("utf-8", "surrogatepass")) % len(PALETTE)]


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
    click or swipe end: its label, which names the action). Transparent
    images are flattened on white.
    """
    out = _rgb_copy(image)
    detections = list(detections)
    width, height = out.size
    line = line_width(width, height, fit)
    size = font_size(width, height, fit)
    canvas = ImageDraw.Draw(out)
    anchors: list[tuple[str, RGB, float, float, float]] = []
    for d in detections:
        color = label_color(d.label)
        tag = d.label or d.action or ""  # an agent's point says its action
        if d.point is not None:
            x, y = d.point
            r = max(4, 3 * line)
            outline = max(1, line // 2 + 1)
            canvas.ellipse((x - r, y - r, x + r, y + r), fill=color, outline=(255, 255, 255), width=outline)
            anchors.append((tag, color, x + r, y - r, y + r))
        elif d.quad is not None:
            canvas.polygon([(x, y) for x, y in d.quad], outline=color, width=line)
            anchors.append((tag, color, d.bbox[0], d.bbox[1], d.bbox[1]))  # type: ignore[index]
        elif d.bbox is not None:
            canvas.rectangle(_pixel_box(d.bbox, width, height), outline=color, width=line)
            anchors.append((tag, color, d.bbox[0], d.bbox[1], d.bbox[1]))
    for label, color, x, above, below in anchors:  # tags last, so no outline crosses them
        if label.strip():
            _draw_tag(canvas, label, color, (x, above, below), size, out.size)
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


def _draw_tag(
    canvas: ImageDraw.ImageDraw,
    label: str,
    color: RGB,
    anchor: tuple[float, float, float],
    size: int,
    image_wh: tuple[int, int],
) -> None:
    """A filled tag with ``label`` ending at ``above``, or starting at ``below`` when there is no room."""
    x, above, below = anchor
    label = _short(label)
    font = fonts.label_font(label, size)
    try:
        left, top, right, bottom = canvas.textbbox((0, 0), label, font=font)
    except (UnicodeEncodeError, ValueError, OSError):  # a bitmap font without the glyphs
        label = label.encode("ascii", "replace").decode("ascii")
        left, top, right, bottom = canvas.textbbox((0, 0), label, font=font)
    pad = max(2, size // 6)
    tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
    image_w, image_h = image_wh
    tag_x = min(max(x, 0), max(image_w - tag_w, 0))
    tag_y = above - tag_h if above - tag_h >= 0 else below
    tag_y = min(max(tag_y, 0), max(image_h - tag_h, 0))
    canvas.rectangle((tag_x, tag_y, tag_x + tag_w - 1, tag_y + tag_h - 1), fill=color)
    canvas.text((tag_x + pad - left, tag_y + pad - top), label, fill=_text_color(color), font=font)
