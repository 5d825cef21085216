"""Reference boxes for the session's pictures, and how each turn's boxes compare with them.

`load_references` reads a COCO detection file (`images[].file_name`, `annotations[].bbox` as
[x, y, width, height], `categories[].name`) or this app's own `detections.json` export, and
keeps the boxes by file name. A picture of the conversation gets the boxes of the reference
image whose file name (without folders) is its uploaded name; when the file gives that image
another size, the boxes are scaled to the picture. Points are not boxes and are left out;
COCO crowd regions (`iscrowd: 1`) too. From an export, each picture's boxes are those of the
latest turn that has boxes on it.

The file is untrusted input: anything off refuses the whole file with one sentence
(`ReferenceFileError`): too big, not JSON, nested too deeply, numbers that are not finite or
beyond any picture (`MAX_COORDINATE` pixels; an image size under one pixel), too many images,
boxes (100,000 in all, loaded in a few seconds) or boxes on one picture (`MAX_BOXES_PER_IMAGE`:
more than any detection dataset gives one image, and as many as a picture's view, its table and
the matching stay quick with), a box that is not four numbers, a category or image that does not
exist. The sentence quotes what the file says: it is shown inert (`demo.views.markup`), toasts
included. Knows nothing of Gradio.

`scores` compares, per turn and picture, the turn's boxes with the picture's references
(`grounding.match`): a turn with no box at all is not scored (it may not have been asked to
find anything); a turn with boxes is scored on the pictures it put boxes on and the pictures
sent with it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from demo.record.conversation import Attachment, Conversation
from demo.views.annotations import turn_detections
from grounding import Detection
from grounding.match import Box, Matching, match

MAX_IMAGES = 10_000
MAX_BOXES = 100_000
MAX_BOXES_PER_IMAGE = 1_000
MAX_COORDINATE = 1_000_000  # pixels: a 64-megapixel picture at the 200:1 the app allows is 113,000 px long
MAX_LABEL_CHARS = 200


class ReferenceFileError(ValueError):
    """A reference file that cannot be used; the message is one sentence for the person."""


@dataclass(frozen=True)
class Reference:
    """One reference box, in pixels of the reference image."""

    label: str
    bbox: Box


@dataclass(frozen=True)
class References:
    """Reference boxes by file name, as loaded from `source` (a COCO file or an export)."""

    source: str
    kind: str  # "COCO" or "export"
    boxes: Mapping[str, tuple[Reference, ...]]  # never changed once loaded (plain dicts: a gr.State may copy them)
    sizes: Mapping[str, tuple[float, float] | None]

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.boxes.values())

    def for_picture(self, attachment: Attachment) -> tuple[Reference, ...] | None:
        """The references of this picture (by file name), in its pixels; None if the file has none for it."""
        name = _base_name(attachment.name or attachment.path)
        key = name if name in self.boxes else _unique_casefold(name, self.boxes)
        if key is None:
            return None
        size = self.sizes.get(key)
        if size is None or tuple(size) == tuple(attachment.size_wh):
            return self.boxes[key]
        sx, sy = attachment.size_wh[0] / size[0], attachment.size_wh[1] / size[1]
        return tuple(Reference(r.label, (r.bbox[0] * sx, r.bbox[1] * sy, r.bbox[2] * sx, r.bbox[3] * sy)) for r in self.boxes[key])

    def describe(self, conversation: Conversation) -> str:
        """'coco.json: 41 boxes on 3 images (COCO); 2 of them are pictures of this chat.'"""
        found = sum(self.for_picture(a) is not None for a in conversation.images())
        images = len(self.boxes)
        return (
            f"{self.source}: {self.count} reference box{'es' * (self.count != 1)} on {images} image{'s' * (images != 1)} "
            f"({self.kind}); {found} of them {'is a picture' if found == 1 else 'are pictures'} of this chat."
        )


def load_references(path: str, max_bytes: int) -> References:
    """The reference boxes in the file at `path`; ReferenceFileError (one sentence) if it cannot be used."""
    name = Path(path).name
    try:
        size = Path(path).stat().st_size
        if size > max_bytes:
            raise ReferenceFileError(f"{name} is {size / 1e6:.1f} MB, more than the {max_bytes / 1e6:g} MB allowed.")
        text = Path(path).read_bytes().decode("utf-8-sig")
        data = json.loads(text, parse_constant=_not_finite)
    except ReferenceFileError:
        raise
    except _Bad as e:
        raise ReferenceFileError(f"{name} is not a reference file: {e}.") from None
    except RecursionError:
        raise ReferenceFileError(f"{name} is nested too deeply to be a reference file.") from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise ReferenceFileError(f"{name} could not be read as JSON (a COCO file or this app's detections.json).") from None
    try:
        if isinstance(data, dict) and isinstance(data.get("detections"), list):
            return _from_export(data, name)
        if isinstance(data, dict) and isinstance(data.get("annotations"), list):
            return _from_coco(data, name)
        raise _Bad("it has neither COCO `annotations` nor this app's `detections`")
    except _Bad as e:
        raise ReferenceFileError(f"{name} is not a reference file: {e}.") from None


# -- scores -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PictureScore:
    """One turn's boxes on one picture against its references."""

    turn: int  # 1-based
    picture: int  # 1-based Picture number
    file_name: str
    predictions: tuple[Detection, ...]  # the turn's boxes on the picture, in the turn's order
    references: tuple[Reference, ...]
    matching: Matching


def compare(detections: Sequence[Detection], references: Sequence[Reference], threshold: float, labels: bool) -> Matching:
    """Match the boxes among `detections` (points left out; a quad by its bounding box) to `references`."""
    boxes = [(d.bbox, d.label) for d in detections if d.point is None]
    return match(boxes, [(r.bbox, r.label) for r in references], threshold, labels)


def scores(conversation: Conversation, family: str, references: References, threshold: float, labels: bool) -> list[PictureScore]:
    """Per turn (with at least one box) and picture (with references), the comparison."""
    out = []
    for index, turn in enumerate(conversation.turns):
        detections = turn_detections(conversation, index, family)
        boxes = [d for d in detections if d.point is None]
        if not boxes:
            continue
        images = conversation.images_until(index)
        sent = {images.index(a) + 1 for a in turn.attachments if not a.is_video}
        for number in sorted({d.image for d in boxes} | sent):
            refs = references.for_picture(images[number - 1])
            if refs is None:
                continue
            on_picture = tuple(d for d in boxes if d.image == number)
            out.append(
                PictureScore(
                    turn=index + 1,
                    picture=number,
                    file_name=images[number - 1].name,
                    predictions=on_picture,
                    references=refs,
                    matching=compare(on_picture, refs, threshold, labels),
                )
            )
    return out


# -- reading ------------------------------------------------------------------------------------


class _Bad(Exception):
    """What is wrong with a file, as the end of a sentence."""


def _not_finite(constant: str):
    raise _Bad(f"it holds {constant}, which is not a finite number")


def _from_coco(data: dict, name: str) -> References:
    images = _list(data, "images")
    annotations = _list(data, "annotations")
    categories = data.get("categories", [])
    if not isinstance(categories, list):
        raise _Bad("`categories` is not a list")
    _count(len(images), MAX_IMAGES, "images"), _count(len(annotations), MAX_BOXES, "annotations")
    category_names = {}
    for i, category in enumerate(categories):
        if not isinstance(category, dict) or not _is_id(category.get("id")) or not isinstance(category.get("name"), str):
            raise _Bad(f"category {i + 1} has no id and name")
        category_names[category["id"]] = category["name"][:MAX_LABEL_CHARS]
    files, sizes = {}, {}
    for i, image in enumerate(images):
        if not isinstance(image, dict) or not _is_id(image.get("id")) or not isinstance(image.get("file_name"), str):
            raise _Bad(f"image {i + 1} has no id and file_name")
        file = _base_name(image["file_name"])
        if image["id"] in files or file in sizes:
            raise _Bad(f"image {i + 1} repeats an id or the file name {file!r}")
        files[image["id"]] = file
        sizes[file] = _size(image, f"image {i + 1}")
    boxes: dict[str, list[Reference]] = {file: [] for file in files.values()}
    for i, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise _Bad(f"annotation {i + 1} is not an object")
        if annotation.get("iscrowd") in (1, True):
            continue
        image_id = annotation.get("image_id")
        if not _is_id(image_id) or image_id not in files:
            raise _Bad(f"annotation {i + 1} is on image {image_id!r}, which `images` does not list")
        category = annotation.get("category_id")
        if category is not None and category not in category_names:
            raise _Bad(f"annotation {i + 1} has category {category!r}, which `categories` does not list")
        x, y, w, h = _numbers(annotation.get("bbox"), f"annotation {i + 1}")
        if w < 0 or h < 0:
            raise _Bad(f"annotation {i + 1} has a negative width or height")
        on_image = boxes[files[image_id]]
        on_image.append(Reference(category_names.get(category, ""), (x, y, x + w, y + h)))
        _per_image(len(on_image), files[image_id])
    return _references(name, "COCO", boxes, sizes)


def _from_export(data: dict, name: str) -> References:
    images = _list(data, "images")
    detections = _list(data, "detections")
    _count(len(images), MAX_IMAGES, "images"), _count(len(detections), MAX_BOXES, "detections")
    files, sizes = {}, {}
    for i, image in enumerate(images):
        if not isinstance(image, dict) or not _is_id(image.get("picture")) or not isinstance(image.get("file_name"), str):
            raise _Bad(f"image {i + 1} has no picture number and file_name")
        file = _base_name(image["file_name"])  # the same photo sent twice is one image here
        if image["picture"] in files:
            raise _Bad(f"image {i + 1} repeats picture number {image['picture']!r}")
        files[image["picture"]] = file
        sizes[file] = _size(image, f"image {i + 1}")
    latest: dict[str, tuple[int, list[Reference]]] = {}
    for i, detection in enumerate(detections):
        if not isinstance(detection, dict):
            raise _Bad(f"detection {i + 1} is not an object")
        if detection.get("bbox_xyxy") is None:
            continue  # a point
        picture, turn, label = detection.get("picture"), detection.get("turn"), detection.get("label", "")
        if not _is_id(picture) or picture not in files:
            raise _Bad(f"detection {i + 1} is on picture {picture!r}, which `images` does not list")
        if not isinstance(turn, int) or isinstance(turn, bool) or not isinstance(label, str):
            raise _Bad(f"detection {i + 1} has no turn number and label")
        x1, y1, x2, y2 = _numbers(detection["bbox_xyxy"], f"detection {i + 1}")
        if x1 > x2 or y1 > y2:
            raise _Bad(f"detection {i + 1} has inverted corners")
        file = files[picture]
        if file not in latest or turn > latest[file][0]:
            latest[file] = (turn, [])
        if turn == latest[file][0]:
            latest[file][1].append(Reference(label[:MAX_LABEL_CHARS], (x1, y1, x2, y2)))
            _per_image(len(latest[file][1]), file)
    boxes = {file: latest.get(file, (0, []))[1] for file in files.values()}
    return _references(name, "export", boxes, sizes)


def _references(name: str, kind: str, boxes: dict[str, list[Reference]], sizes: dict) -> References:
    return References(source=name, kind=kind, boxes={file: tuple(b) for file, b in boxes.items()}, sizes=dict(sizes))


def _list(data: dict, key: str) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise _Bad(f"`{key}` is not a list")
    return value


def _count(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise _Bad(f"it has {n:,} {what}, more than the {limit:,} allowed")


def _per_image(count: int, file: str) -> None:
    if count > MAX_BOXES_PER_IMAGE:
        raise _Bad(f"{file[:80]!r} has more than the {MAX_BOXES_PER_IMAGE:,} boxes allowed on one picture")


def _is_id(value) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and len(value) <= 200)


def _numbers(value, where: str) -> tuple[float, float, float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise _Bad(f"{where} has no box of four finite numbers")
    if not all(abs(v) <= MAX_COORDINATE for v in value):
        raise _Bad(f"{where} has a coordinate beyond {MAX_COORDINATE:,} pixels, which no picture has")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _size(image: dict, where: str) -> tuple[float, float] | None:
    width, height = image.get("width"), image.get("height")
    if width is None and height is None:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in (width, height)):
        raise _Bad(f"{where} has a width or height that is not a positive number")
    if not all(1 <= v <= MAX_COORDINATE for v in (width, height)):
        raise _Bad(f"{where} has a width or height outside 1 to {MAX_COORDINATE:,} pixels")
    return (float(width), float(height))


def _base_name(file_name: str) -> str:
    """'val2017/000000123.jpg' or 'C:\\\\data\\\\cat.png' → the name alone."""
    return PureWindowsPath(PurePosixPath(file_name).name).name


def _unique_casefold(name: str, names: Mapping[str, object]) -> str | None:
    found = [n for n in names if n.casefold() == name.casefold()]
    return found[0] if len(found) == 1 else None
