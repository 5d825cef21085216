"""Exports for annotation tools: Label Studio predictions, a YOLO dataset, and one zip of every export.

Records (`label_studio_tasks`, `label_studio_config`, `yolo_labels`, `yolo_data_yaml`; `picture_files`
reads the pictures' headers to tell which are copied as sent) plus `write_all`, which writes
`write_exports`' files (detections.json, COCO, annotated PNGs), the Label Studio files, and
`all-exports.zip` holding all of them and the YOLO dataset in `yolo/`.

- **Label Studio**: one task per picture (`data.image` points at `yolo/images/<file>` of the
  unzipped archive through Label Studio's local-files serving), one prediction per turn that
  grounded on it (`model_version` is the family); boxes are `rectanglelabels`, points
  `keypointlabels`, in percent of the picture. Qwen gives no confidence, so no `score` is written.
  The format is the one Label Studio's own converters write (label_studio_sdk.converter.imports:
  yolo.py, coco.py) and documented in its guide (Import pre-annotated data).
- **YOLO**: `classes.txt`, an Ultralytics-style `data.yaml`, `images/` and `labels/<stem>.txt`
  (`class cx cy w h`, 0-1, six decimals). Points are not YOLO boxes and are left out (they are in
  detections.json and Label Studio's keypoints). Written here rather than with supervision's
  `DetectionDataset.as_yolo`: supervision is a test-only package, and as_yolo re-encodes every
  picture (`cv2.imwrite`); the pictures are copied as sent instead.

Like COCO, YOLO gathers every turn's boxes on a picture; a quad is exported as its bounding box.
Labels become class names with their whitespace collapsed ("object" when empty). Knows nothing of
Gradio.
"""

from __future__ import annotations

import json
import re
import zipfile
from io import BytesIO
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import yaml
from PIL import Image

from demo.record.conversation import Attachment, Conversation
from demo.views.annotations import by_picture, turn_detections
from demo.views.export import write_exports
from demo.views.ground_truth import References

IMAGE_ROOT = "/data/local-files/?d=yolo/images/"  # Label Studio's local-files URL of the zip's yolo/images
POINT_WIDTH = 1.0  # a keypoint's drawn size, percent of the picture's width (Label Studio's converter's default)
COPIED_AS_SENT = (".jpg", ".jpeg", ".png")  # what every reader takes; other formats are written as PNG
ARCHIVE = "all-exports.zip"
LS_TASKS, LS_CONFIG = "label-studio-tasks.json", "label-studio-config.xml"
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')  # characters a file name cannot carry everywhere


def class_name(label: str) -> str:
    """A label as a class name: whitespace collapsed (no newline can split classes.txt), "object" when empty."""
    return " ".join(label.split()) or "object"


def picture_files(conversation: Conversation) -> list[str]:
    """A distinct file name per picture for `images/`, in Picture order: the uploaded name, with
    "pictureN-" before it when another picture has the same stem; ".png" when it is written as PNG."""
    names, stems = [], set()
    for number, attachment in enumerate(conversation.images(), 1):
        sent = Path(attachment.name or Path(attachment.path).name).name
        stem = _UNSAFE.sub("_", Path(sent).stem).strip(" .") or f"picture{number}"
        while stem.casefold() in stems:
            stem = f"picture{number}-{stem}"
        stems.add(stem.casefold())
        suffix = Path(attachment.path).suffix.lower() if _copyable(attachment) else ".png"
        names.append(stem + suffix)
    return names


def label_studio_tasks(conversation: Conversation, family: str, image_root: str = IMAGE_ROOT) -> list[dict]:
    """Label Studio's import file: a task per picture, a prediction per turn with groundings on it."""
    images, files = conversation.images(), picture_files(conversation)
    tasks = [{"data": {"image": image_root + quote(name)}} for name in files]  # quoted, as Label Studio's local storage writes it
    for index in range(len(conversation.turns)):
        for number, detections in by_picture(turn_detections(conversation, index, family)).items():
            width, height = images[number - 1].size_wh
            result = []
            for d in detections:
                common = {
                    "id": f"p{number}t{index + 1}n{len(result) + 1}",
                    "from_name": "label" if d.bbox is not None else "keypoint",
                    "to_name": "image",
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                }
                if d.bbox is not None:
                    x1, y1, x2, y2 = d.bbox
                    value = {"x": _percent(x1, width), "y": _percent(y1, height), "width": _percent(x2 - x1, width),
                             "height": _percent(y2 - y1, height), "rotation": 0, "rectanglelabels": [class_name(d.label)]}
                    result.append({**common, "type": "rectanglelabels", "value": value})
                else:
                    x, y = d.point
                    value = {"x": _percent(x, width), "y": _percent(y, height), "width": POINT_WIDTH,
                             "keypointlabels": [class_name(d.label)]}
                    result.append({**common, "type": "keypointlabels", "value": value})
            tasks[number - 1].setdefault("predictions", []).append({"model_version": family, "result": result})
    return tasks


def label_studio_config(conversation: Conversation, family: str) -> str:
    """The labeling config those tasks fit: an Image, RectangleLabels ("label") with the box labels,
    KeyPointLabels ("keypoint") with the point labels when there are points."""
    boxes, points = set(), set()
    for index in range(len(conversation.turns)):
        for d in turn_detections(conversation, index, family):
            (boxes if d.bbox is not None else points).add(class_name(d.label))
    tags = [("RectangleLabels", "label", boxes or {"object"})]  # a project needs a label to start from
    if points:
        tags.append(("KeyPointLabels", "keypoint", points))
    body = ""
    for tag, name, labels in tags:
        body += f'  <{tag} name="{name}" toName="image">\n'
        for index, label in enumerate(sorted(labels)):
            # Label Studio's own COCO and YOLO exports of keypoints need each keypoint label's model_index.
            order = f' model_index="{index}"' if tag == "KeyPointLabels" else ""
            body += f"    <Label value={quoteattr(label)}{order}/>\n"
        body += f"  </{tag}>\n"
    return f'<View>\n  <Image name="image" value="$image" zoom="true"/>\n{body}</View>\n'


def yolo_labels(conversation: Conversation, family: str) -> tuple[list[str], list[str]]:
    """The class names (sorted; a class's number is its place) and, per picture in Picture order,
    its label file's text: a `class cx cy w h` line per box of every turn, normalised to 0-1."""
    images = conversation.images()
    boxes = [d for turn in range(len(conversation.turns)) for d in turn_detections(conversation, turn, family) if d.bbox is not None]
    names = sorted({class_name(d.label) for d in boxes})
    number = {name: i for i, name in enumerate(names)}
    lines: list[list[str]] = [[] for _ in images]
    for d in boxes:
        width, height = images[d.image - 1].size_wh
        x1, y1, x2, y2 = d.bbox
        numbers = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
        lines[d.image - 1].append(" ".join([str(number[class_name(d.label)])] + [f"{min(max(v, 0.0), 1.0):.6f}" for v in numbers]))
    return names, ["".join(f"{line}\n" for line in picture) for picture in lines]


def yolo_data_yaml(names: list[str]) -> str:
    """An Ultralytics-style data.yaml: the same pictures for train and val, the classes by number."""
    header = "# Written by Qwen VL chat. For Ultralytics, add `path:` with this folder's absolute path.\n"
    data = {"train": "images", "val": "images", "nc": len(names), "names": dict(enumerate(names))}
    return header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def write_all(
    conversation: Conversation,
    family: str,
    out_dir: Path,
    references: References | None = None,
    threshold: float = 0.5,
    labels: bool = True,
) -> list[Path]:
    """Write every export into `out_dir`; return all-exports.zip first, then detections.json, the COCO
    file, the two Label Studio files and the annotated PNGs. The YOLO dataset is only in the zip."""
    written = write_exports(conversation, family, out_dir, references, threshold, labels)
    tasks, config = out_dir / LS_TASKS, out_dir / LS_CONFIG
    tasks.write_text(json.dumps(label_studio_tasks(conversation, family), indent=2, ensure_ascii=False), encoding="utf-8")
    config.write_text(label_studio_config(conversation, family), encoding="utf-8")
    files = [*written[:2], tasks, config, *written[2:]]
    archive = out_dir / ARCHIVE
    partial = archive.with_suffix(".tmp")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            zf.write(path, path.name, compress_type=_compression(path.name))
        _write_yolo(zf, conversation, family)
    partial.replace(archive)
    return [archive, *files]


def _write_yolo(zf: zipfile.ZipFile, conversation: Conversation, family: str) -> None:
    """The YOLO dataset into `zf` under yolo/: its pictures are copied, never written to the folder first."""
    names, texts = yolo_labels(conversation, family)
    zf.writestr("yolo/classes.txt", "".join(f"{name}\n" for name in names))
    zf.writestr("yolo/data.yaml", yolo_data_yaml(names))
    for attachment, file, text in zip(conversation.images(), picture_files(conversation), texts, strict=True):
        if _copyable(attachment):
            zf.write(attachment.path, f"yolo/images/{file}", compress_type=zipfile.ZIP_STORED)
        else:
            png = BytesIO()
            attachment.image.save(png, format="PNG")
            zf.writestr(f"yolo/images/{file}", png.getvalue(), compress_type=zipfile.ZIP_STORED)
        zf.writestr(f"yolo/labels/{Path(file).stem}.txt", text)


def _copyable(attachment: Attachment) -> bool:
    """Whether the file as sent can go into images/: there, in a format every reader takes, at the
    size the boxes are in, and not turned by an EXIF orientation (readers disagree on those)."""
    path = Path(attachment.path) if attachment.path else None
    if path is None or path.suffix.lower() not in COPIED_AS_SENT or not path.is_file():
        return False
    try:
        with Image.open(path) as opened:  # the header only
            return opened.size == tuple(attachment.size_wh) and opened.getexif().get(0x0112, 1) == 1
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _percent(value: float, whole: int) -> float:
    return round(value / whole * 100, 6)


def _compression(name: str) -> int:
    return zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
