"""Groundings of the conversation: each turn's boxes and points, drawn over their pictures.

`turn_detections` parses one answer against the pictures the model had seen when it gave
it (their sizes for the person and for the model). A finished answer is parsed once: its
detections are cached by (answer, family, picture sizes, model input sizes), so a streamed
update re-parses only the answer still being written. `annotated_png` draws a picture's
detections into a PNG file whose name is derived from what it shows, so a streaming answer
redraws a picture only when one of its boxes changes. Knows nothing of Gradio or of engines.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from demo.conversation import Attachment, Conversation
from demo.markup import table_cell
from grounding import Detection, draw, find_groundings, parse

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


def annotated_png(
    attachment: Attachment,
    detections: list[Detection],
    fit: tuple[int, int] | None = None,
    out_dir: Path = ANNOTATED_DIR,
) -> str:
    """A PNG of `attachment` with `detections` drawn on it, to be shown within `fit` (None: at
    its own size); drawn once per distinct content."""
    path = out_dir / _png_name(attachment.path, attachment.name, attachment.size_wh, tuple(detections), fit)
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        draw(attachment.image, detections, fit).save(partial, format="PNG")
        partial.replace(path)  # atomic: a reader never sees half a file
    return str(path)


@lru_cache(maxsize=CACHED_TURNS)
def _png_name(path: str, name: str, size_wh: tuple[int, int], detections: tuple[Detection, ...], fit) -> str:
    """A file name derived from what the drawing shows (stable across processes)."""
    key = repr((path, tuple(size_wh), [(d.label, d.bbox, d.point, d.quad) for d in detections], fit))
    return f"{Path(name or path).stem[:40]}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.png"


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
