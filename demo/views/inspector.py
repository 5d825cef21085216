"""The grounding inspector's content: one turn's boxes and points on one picture, as plain data.

`inspect(conversation, family, picks, references)` gives an `Inspection`: the choices of the
turn and picture pickers and of the label toggles, the picture view's value (a JSON-able dict
that `demo/page/inspector.js` draws: the picture at full resolution, each box, point and reference
box with its colour and match, and the turn's raw answer cut into plain text, model markers
and the span of each grounding), the list of groundings (label, the model's own numbers, the
pixels they became, match and IoU) and, with reference boxes, the figures per turn and
picture. `Picks` is what the person chose (turn, picture, hidden labels, selection...); a
choice made before the conversation changed shape (a new turn, undo, load) is dropped, so the
inspector follows the latest answer with groundings again (an answer with none leaves the last one
that has some in view). A box the person drew (`Picks.drawn`) is shown and selectable like the
model's, to ask about it or zoom into it (`demo/page/regions.py`). Pure: no Gradio; model text
stays text (the page sets it as text, never as HTML).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from PIL import Image

from demo.record.conversation import Attachment, Conversation
from demo.record.sessions import folder_of
from demo.views.annotations import by_picture, turn_detections
from demo.views.ground_truth import References, compare, scores
from grounding import Detection, label_color
from grounding.generations import generation

# For pictures in no session's folder (the handlers put every picture in one; tests may not).
SERVED_DIR = Path(tempfile.gettempdir()) / "qwen-vl-chat" / "inspector"
HEADERS = ["#", "label", "kind", "model's numbers", "pixels", "size", "reference", "IoU"]
SCORE_HEADERS = ["turn", "picture", "references", "predicted", "matched", "missed", "extra", "precision", "recall", "mean IoU"]
STATUS_COLORS = {"matched": "#16a34a", "extra": "#dc2626", "missed": "#f59e0b"}
LATEST = "Latest answer with boxes"  # the turn picker's automatic choice
_MARKER = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|</?(?:ref|box|quad|think)>")
_BROWSER_FORMATS = {"PNG", "JPEG", "WEBP"}


@dataclass(frozen=True)
class Picks:
    """What the person chose in the inspector. `turn` and `picture` are 1-based, 0 for automatic:
    the latest turn with groundings, the first picture it grounded on. `selected` is an item id
    ("d3": the turn's fourth grounding, "r0": the picture's first reference box, "drawn": the box
    the person drew, `drawn`, in the picture's pixels). `shape` is the conversation's `shape()`
    when turn, picture, selection and drawn box were chosen."""

    turn: int = 0
    picture: int = 0
    selected: str | None = None
    shape: tuple = ()
    hidden: frozenset[str] = field(default_factory=frozenset)
    labels: bool = True
    references: bool = True
    threshold: float = 0.5
    match_labels: bool = True
    drawn: tuple[int, int, int, int] | None = None
    opened: bool = False  # the person opened the inspector before any answer had groundings

    def current(self, conversation: Conversation) -> Picks:
        """These picks, less the turn, picture and selection if the conversation changed shape since."""
        now = shape(conversation)
        return self if self.shape == now else replace(self, turn=0, picture=0, selected=None, drawn=None, shape=now)


def shape(conversation: Conversation) -> tuple:
    """What the inspector's picks refer to: the questions and their pictures (an answer may change:
    streaming, regenerate). A new turn, undo, clear or load changes it."""
    return tuple((turn.text, tuple(a.path for a in turn.attachments)) for turn in conversation.turns)


@dataclass
class Inspection:
    """Everything the inspector shows, for one conversation and one set of picks."""

    turns: list[tuple[str, int]]
    turn: int
    pictures: list[tuple[str, int]]
    picture: int
    labels: list[tuple[str, str]]
    shown_labels: list[str]
    view: dict
    rows: list[list[str]]
    scores: list[list[str]]
    headers: list[str] = field(default_factory=lambda: HEADERS[:6])  # the match columns only with references
    has_groundings: bool = False  # some answer of the conversation has boxes or points
    answering: bool = False  # the last turn's answer is still being written


def inspect(conversation: Conversation, family: str, picks: Picks, references: References | None) -> Inspection:
    """The inspector for `conversation` as `picks` asks (see the module docstring)."""
    picks = picks.current(conversation)
    shown = _inspect(conversation, family, picks, references)
    shown.answering = bool(conversation.turns) and conversation.turns[-1].status in ("waiting", "streaming")
    return shown


def _inspect(conversation: Conversation, family: str, picks: Picks, references: References | None) -> Inspection:
    turns = [(LATEST, 0)] + [(_turn_name(conversation, i), i + 1) for i in range(len(conversation.turns))]
    grounded = latest_grounded(conversation, family)
    index = picks.turn - 1 if 0 < picks.turn <= len(conversation.turns) else grounded if grounded >= 0 else len(conversation.turns) - 1
    figures = _score_rows(conversation, family, references, picks) if references is not None else []
    if index < 0:
        return Inspection(turns, 0, [], 0, [], [], _empty("Ask about a picture: its boxes and points show here."), [], figures)
    turn = conversation.turns[index]
    images = conversation.images_until(index)
    detections = turn_detections(conversation, index, family)
    grouped = by_picture(detections)
    pictures = [(_picture_name(n, a, len(grouped.get(n, []))), n) for n, a in enumerate(images, 1)]
    number = _picture_number(picks, turn, images, grouped)
    chosen_turn = picks.turn if picks.turn else 0
    if number == 0:
        view = _empty("No picture in the conversation yet." if not images else "")
        return Inspection(turns, chosen_turn, pictures, 0, [], [], view, [], figures, has_groundings=grounded >= 0)
    attachment = images[number - 1]
    on_picture = [(i, d) for i, d in enumerate(detections) if d.image == number]
    counts = Counter(d.label for _, d in on_picture)
    labels = [(f"{label or '(no label)'} ×{n}" if n > 1 else label or "(no label)", label) for label, n in counts.items()]
    shown = [(i, d) for i, d in on_picture if d.label not in picks.hidden]
    refs = references.for_picture(attachment) if references is not None else None
    matching = compare([d for _, d in on_picture], refs, picks.threshold, picks.match_labels) if refs is not None else None
    items, reference_items = _items(on_picture, shown, refs, matching, picks)
    view = {
        "picture": {"path": servable_path(attachment.path, attachment.size_wh, attachment.image), "meta": {"_type": "gradio.FileData"}},
        "width": attachment.size_wh[0],
        "height": attachment.size_wh[1],
        "title": f"Turn {index + 1} · Picture {number}" + (f" · {attachment.name}" if attachment.name else ""),
        "about": _about(family, turn.input_sizes, number, attachment, on_picture, shown),
        "truth": _truth_line(references, refs, matching, picks),
        "items": items,
        "references": reference_items if picks.references else [],
        "labels": picks.labels,
        "selected": picks.selected if picks.selected != "drawn" or picks.drawn else None,
        "drawn": list(picks.drawn) if picks.drawn else None,
        "answer": answer_segments(turn.answer, detections, number),
        "streaming": turn.status in ("waiting", "streaming"),
    }
    rows = _rows(detections, shown, number, matching, refs, picks)
    headers = HEADERS if matching is not None else HEADERS[:6]
    shown_labels = [lb for _, lb in labels if lb not in picks.hidden]
    return Inspection(turns, chosen_turn, pictures, number, labels, shown_labels, view, rows, figures, headers, grounded >= 0)


def latest_grounded(conversation: Conversation, family: str) -> int:
    """The index of the latest turn whose answer has boxes or points (so far), -1 when none has."""
    for index in range(len(conversation.turns) - 1, -1, -1):
        if turn_detections(conversation, index, family):
            return index
    return -1


def answer_segments(answer: str, detections: list[Detection], picture: int) -> list[dict]:
    """The raw answer in pieces: {"t": text, "id": grounding id or None, "marker": bool, "here": on this picture}."""
    spans = sorted((d.span, i, d.image == picture) for i, d in enumerate(detections) if d.span[1] > d.span[0])
    pieces: list[dict] = []
    cursor = 0
    for (start, end), i, here in spans:
        if start < cursor:  # overlapping spans (one block, several groundings): the first keeps it
            continue
        pieces += _plain(answer[cursor:start], None, False)
        pieces += _plain(answer[start:end], f"d{i}", here)
        cursor = end
    return pieces + _plain(answer[cursor:], None, False)


@lru_cache(maxsize=256)
def _served(path: str, size_wh: tuple[int, int]) -> str | None:
    """`path` itself when a browser shows it as the person sees it (PNG, JPEG, WebP, no EXIF turn)."""
    try:
        with Image.open(path) as opened:
            fine = opened.format in _BROWSER_FORMATS and opened.size == tuple(size_wh)
            turned = opened.getexif().get(0x0112, 1) not in (1, None)
        return path if fine and not turned else None
    except OSError:
        return None


def servable_path(path: str, size_wh: tuple[int, int], image: Image.Image) -> str:
    """A file the browser can show at full resolution: the upload itself, else a PNG of the picture,
    in the folder of the session the picture belongs to (served to its owner only, deleted with it)."""
    served = _served(path, tuple(size_wh))
    if served is not None:
        return served
    session = folder_of(path)
    out_dir = session / "inspector" if session is not None else SERVED_DIR
    copy = out_dir / f"{hashlib.sha1(repr((path, tuple(size_wh))).encode()).hexdigest()[:20]}.png"
    if not copy.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = copy.with_suffix(f".{os.getpid()}.tmp")
        image.save(partial, format="PNG")
        partial.replace(copy)
    return str(copy)


# -- pieces -------------------------------------------------------------------------------------


def _empty(message: str) -> dict:
    return {"picture": None, "message": message, "items": [], "references": [], "answer": []}


def _turn_name(conversation: Conversation, index: int) -> str:
    turn = conversation.turns[index]
    question = " ".join(turn.text.split())
    question = question if len(question) <= 40 else question[:39] + "…"
    return f"Turn {index + 1}" + (f" · {question}" if question else "")


def _picture_name(number: int, attachment: Attachment, count: int) -> str:
    name = f" · {attachment.name}" if attachment.name else ""
    return f"Picture {number}{name} · {count} grounding{'s' * (count != 1)}"


def _picture_number(picks: Picks, turn, images: list[Attachment], grouped: dict[int, list]) -> int:
    if 0 < picks.picture <= len(images):
        return picks.picture
    if grouped:
        return min(grouped)
    sent = [images.index(a) + 1 for a in turn.attachments if not a.is_video]
    return sent[-1] if sent else len(images)


def _plain(text: str, ident: str | None, here: bool) -> list[dict]:
    """`text` cut at model markers (<|box_start|>, <ref>...), which the page shows dimmed."""
    pieces, cursor = [], 0
    for m in _MARKER.finditer(text):
        if m.start() > cursor:
            pieces.append({"t": text[cursor : m.start()], "id": ident, "marker": False, "here": here})
        pieces.append({"t": m.group(), "id": ident, "marker": True, "here": here})
        cursor = m.end()
    if cursor < len(text):
        pieces.append({"t": text[cursor:], "id": ident, "marker": False, "here": here})
    return pieces


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _ink(color: str) -> str:
    """Black or white, whichever reads on `color` (#rrggbb)."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#fff"


def _items(on_picture, shown, refs, matching, picks: Picks) -> tuple[list[dict], list[dict]]:
    boxes = [i for i, d in on_picture if d.point is None]  # the order compare() saw them in
    items = []
    for i, d in shown:
        item = {
            "id": f"d{i}",
            "n": i + 1,
            "kind": d.kind,
            "label": d.label,
            "color": _hex(label_color(d.label)),
            "box": list(d.bbox) if d.bbox is not None else None,
            "point": list(d.point) if d.point is not None else None,
            "quad": [list(c) for c in d.quad] if d.quad is not None else None,
            "status": None,
            "iou": None,
        }
        if matching is not None and d.point is None:
            found = matching.of_prediction(boxes.index(i))
            item["status"] = "matched" if found else "extra"
            item["iou"] = round(found.iou, 3) if found else None
            item["color"] = STATUS_COLORS[item["status"]]
        item["ink"] = _ink(item["color"])
        items.append(item)
    references = []
    for r, reference in enumerate(refs or ()):
        found = matching.of_reference(r) if matching is not None else None
        references.append(
            {
                "id": f"r{r}",
                "n": r + 1,
                "label": reference.label,
                "box": list(reference.bbox),
                "status": "matched" if found else "missed",
                "match": f"d{boxes[found.prediction]}" if found else None,
                "iou": round(found.iou, 3) if found else None,
            }
        )
    return items, references


def _about(family: str, input_sizes, number: int, attachment: Attachment, on_picture, shown) -> str:
    width, height = attachment.size_wh
    kinds = Counter("point" if d.point is not None else "box" for _, d in on_picture)
    count = ", ".join(f"{n} {kind}{'es' if kind == 'box' and n != 1 else 's' if n != 1 else ''}" for kind, n in kinds.items())
    hidden = len(on_picture) - len(shown)
    parts = [f"{width}×{height} px", count or "no groundings", f"{hidden} hidden" if hidden else ""]
    if generation(family).relative:
        parts.append("the model's numbers are 0–1000 of the picture")
    elif number <= len(input_sizes):
        seen_w, seen_h = input_sizes[number - 1]
        parts.append(f"the model's numbers are pixels of the {seen_w}×{seen_h} picture it saw")
    return " · ".join(p for p in parts if p)


def _truth_line(references: References | None, refs, matching, picks: Picks) -> str:
    if references is None:
        return ""
    if refs is None:
        return f"No reference boxes for this picture in {references.source}."
    m = matching
    parts = [
        f"{m.references} reference box{'es' * (m.references != 1)}",
        f"matched {len(m.matches)}",
        f"missed {len(m.missed)}",
        f"extra {len(m.extra)}",
        f"precision {_number(m.precision)}",
        f"recall {_number(m.recall)}",
        f"mean IoU {_number(m.mean_iou)}",
    ]
    rule = f"IoU ≥ {picks.threshold:g}" + (", same label" if picks.match_labels else ", any label")
    return " · ".join(parts) + f" ({rule})"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _coordinates(values) -> str:
    return "(" + ", ".join(f"{v:.1f}" if v != int(v) else f"{v:.0f}" for v in values) + ")"


def _rows(detections, shown, number, matching, refs, picks: Picks) -> list[list[str]]:
    boxes = [i for i, d in enumerate(detections) if d.image == number and d.point is None]
    rows = []
    for i, d in shown:
        where = d.bbox if d.bbox is not None else d.point
        size = f"{d.bbox[2] - d.bbox[0]:.0f}×{d.bbox[3] - d.bbox[1]:.0f}" if d.bbox is not None else ""
        status, overlap = "", ""
        if matching is not None and d.point is None:
            found = matching.of_prediction(boxes.index(i))
            status = f"matched r{found.reference + 1}" if found else "extra"
            overlap = f"{found.iou:.2f}" if found else ""
        raw = "[" + ", ".join(f"{v:g}" for v in d.raw) + "]"
        row = [str(i + 1), d.label or "—", d.kind, raw, _coordinates(where), size]
        rows.append(row + [status, overlap] if matching is not None else row)
    if refs is not None and picks.references:
        for r in matching.missed:
            box = refs[r].bbox
            rows.append([f"r{r + 1}", refs[r].label or "—", "reference", "", _coordinates(box), f"{box[2] - box[0]:.0f}×{box[3] - box[1]:.0f}", "missed", ""])
    return rows


def _score_rows(conversation: Conversation, family: str, references: References, picks: Picks) -> list[list[str]]:
    found = scores(conversation, family, references, picks.threshold, picks.match_labels)
    rows = []
    for s in found:
        m = s.matching
        rows.append(
            [str(s.turn), f"Picture {s.picture}", str(m.references), str(m.predicted), str(len(m.matches)), str(len(m.missed)),
             str(len(m.extra)), _number(m.precision), _number(m.recall), _number(m.mean_iou)]
        )
    if len(found) > 1:
        matched = sum(len(s.matching.matches) for s in found)
        predicted = sum(s.matching.predicted for s in found)
        total = sum(s.matching.references for s in found)
        ious = [m.iou for s in found for m in s.matching.matches]
        rows.append(
            ["all", "", str(total), str(predicted), str(matched), str(total - matched), str(predicted - matched),
             _number(matched / predicted if predicted else None), _number(matched / total if total else None),
             _number(sum(ious) / len(ious) if ious else None)]
        )
    return rows
