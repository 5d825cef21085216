"""Groundings of the conversation: each turn's boxes and points, drawn over their pictures.

`turn_detections` parses one answer against the pictures the model had seen when it gave
it (their sizes for the person and for the model). A finished answer is parsed once: its
detections are cached by (answer, family, picture sizes, model input sizes), so a streamed
update re-parses only the answer still being written. `annotated_image` draws a picture's
detections into a file whose name is derived from what it shows, so a streaming answer
redraws a picture only when one of its boxes changes: a JPEG for the chat (a 1-megapixel PNG
took 0.15-0.36 s to encode, so a loaded conversation of 1,000 answers with boxes took minutes
to show; a JPEG with full colour resolution takes about 10 ms), a PNG for exports. It draws on the picture as kept (see
`demo.media.pictures`), the boxes scaled from the original's pixels, and writes into the folder
of the session the picture belongs to (deleted with it). Knows nothing of Gradio or of engines.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from demo.record.conversation import Attachment, Conversation
from demo.record.sessions import folder_of
from demo.views.markup import table_cell
from grounding import Detection, draw, find_groundings, parse

# For pictures in no session's folder (the handlers put every picture in one; tests may not).
ANNOTATED_DIR = Path(tempfile.gettempdir()) / "qwen-vl-chat" / "annotated"
CACHED_TURNS = 4096  # finished answers whose detections are kept, over all sessions
STILL_CHANGING = ("waiting", "streaming")


def turn_detections(conversation: Conversation, turn_index: int, family: str) -> list[Detection]:
    """The boxes and points in turn `turn_index`'s answer, in pixels of the pictures they are on."""
    turn = conversation.turns[turn_index]
    images = conversation.images_until(turn_index)
    if not turn.answer or not images or len(turn.input_sizes) != len(images):
        return []
    sizes = tuple(tuple(a.size_wh) for a in images)
    input_sizes = tuple(tuple(size) for size in turn.input_sizes)
    if turn.status in STILL_CHANGING:  # a new text at every update: caching it would only evict others
        return parse(turn.answer, family, list(sizes), list(input_sizes))
    return list(parsed(turn.answer, family, sizes, input_sizes))


@lru_cache(maxsize=CACHED_TURNS)
def parsed(
    answer: str, family: str, image_sizes: tuple[tuple[int, int], ...], input_sizes: tuple[tuple[int, int], ...]
) -> tuple[Detection, ...]:
    """`grounding.parse` of a finished answer, remembered (Detections are frozen, so shared safely)."""
    return tuple(parse(answer, family, list(image_sizes), list(input_sizes)))


def by_picture(detections: list[Detection]) -> dict[int, list[Detection]]:
    """Detections grouped by Picture number, pictures in ascending order."""
    grouped: dict[int, list[Detection]] = {}
    for detection in sorted(detections, key=lambda d: d.image):
        grouped.setdefault(detection.image, []).append(detection)
    return grouped


def annotated_image(
    attachment: Attachment,
    detections: list[Detection],
    fit: tuple[int, int] | None = None,
    out_dir: Path | None = None,
    *,
    lossless: bool = True,
) -> str:
    """A picture of `attachment` with `detections` (in the original's pixels) drawn on it, to be shown
    within `fit` (None: at its own size), in `out_dir` (default: its session's folder): a PNG, or
    unless `lossless` a JPEG (quality 92, colour not subsampled: thin coloured lines stay sharp) at
    about twice `fit` when it is bigger; drawn once per distinct content."""
    if out_dir is None:
        session = folder_of(attachment.path)
        out_dir = session / "annotated" if session is not None else ANNOTATED_DIR
    image = attachment.image
    key_size = (tuple(attachment.size_wh), image.size)
    name = _png_name(attachment.path, attachment.name, key_size, tuple(detections), fit)
    path = out_dir / (name if lossless else f"{name.removesuffix('.png')}.jpg")
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        if not lossless and fit is not None:  # shown within `fit`: twice that is sharp on a high-density screen
            factor = int(max(image.width / (2 * fit[0]), image.height / (2 * fit[1])))
            if factor >= 2:
                image = image.reduce(factor)  # a box filter by a whole factor: a millisecond, where resize took 6
        drawn = draw(image, scaled(detections, attachment.size_wh, image.size), fit)
        if lossless:
            drawn.save(partial, format="PNG")
        else:
            drawn.convert("RGB").save(partial, format="JPEG", quality=92, subsampling=0)
        partial.replace(path)  # atomic: a reader never sees half a file
    return str(path)


@lru_cache(maxsize=CACHED_TURNS)
def _png_name(path: str, name: str, size_wh: tuple, detections: tuple[Detection, ...], fit) -> str:
    """A file name derived from what the drawing shows (stable across processes)."""
    key = repr((path, tuple(size_wh), [(d.label, d.bbox, d.point, d.quad) for d in detections], fit))
    return f"{Path(name or path).stem[:40]}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.png"


def scaled(detections: list[Detection], from_wh: tuple[int, int], to_wh: tuple[int, int]) -> list[Detection]:
    """The detections moved from pixels of a `from_wh` picture to pixels of the same picture at `to_wh`."""
    if from_wh == to_wh:
        return detections
    sx, sy = to_wh[0] / from_wh[0], to_wh[1] / from_wh[1]
    xy = lambda x, y: (x * sx, y * sy)  # noqa: E731
    return [
        replace(
            d,
            bbox=(*xy(*d.bbox[:2]), *xy(*d.bbox[2:])) if d.bbox is not None else None,
            point=xy(*d.point) if d.point is not None else None,
            quad=tuple(xy(*corner) for corner in d.quad) if d.quad is not None else None,
        )
        for d in detections
    ]


@lru_cache(maxsize=CACHED_TURNS)
def detections_markdown(detections: tuple[Detection, ...]) -> str:
    """A compact table: label, Picture, pixel box or point."""
    rows = ["| | label | picture | pixels (x1, y1, x2, y2) or point (x, y) |", "|---|---|---|---|"]
    for number, d in enumerate(detections, 1):
        where = d.bbox if d.bbox is not None else d.point
        rows.append(f"| {number} | {table_cell(d.label) or '—'} | Picture {d.image} | ({', '.join(f'{v:.0f}' for v in where)}) |")
    return "\n".join(rows)


def undrawn_groundings(answer: str, family: str, drawn: list[Detection]) -> str:
    """A table of the boxes and points of `answer` on no picture (about a video, say), as written."""
    spans = {d.span for d in drawn}
    rest = [g for g in find_groundings(answer, family) if g.span not in spans]
    if not rest:
        return ""
    rows = [
        "Groundings not drawn (about a video, or on no picture), in the model's own coordinates:",
        "",
        "| | label | values |",
        "|---|---|---|",
    ]
    for number, g in enumerate(rest, 1):
        rows.append(f"| {number} | {table_cell(g.label) or '—'} | ({', '.join(f'{v:g}' for v in g.values)}) |")
    return "\n".join(rows)
