"""Export of a conversation's groundings: our JSON, COCO-style JSON and the annotated PNGs.

Pure records (`detections_record`, `coco_record`) plus `write_exports`, which writes them
and the annotated pictures into a folder. Knows nothing of Gradio.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from demo.annotations import annotated_png, by_picture, turn_detections
from demo.conversation import Conversation


def detections_record(conversation: Conversation, family: str) -> dict:
    """Every grounding of the conversation: raw model numbers, pixels, Picture, turn."""
    images = conversation.images()
    record = {
        "family": family,
        "images": [
            {"picture": n, "file_name": a.name, "width": a.size_wh[0], "height": a.size_wh[1]}
            for n, a in enumerate(images, 1)
        ],
        "detections": [],
    }
    for index, turn in enumerate(conversation.turns):
        for d in turn_detections(conversation, index, family):
            record["detections"].append(
                {
                    "turn": index + 1,
                    "picture": d.image,
                    "label": d.label,
                    "kind": d.kind,
                    "raw": list(d.raw),
                    "model_input_wh": list(turn.input_sizes[d.image - 1]),
                    "bbox_xyxy": list(d.bbox) if d.bbox is not None else None,
                    "point_xy": list(d.point) if d.point is not None else None,
                }
            )
    return record


def coco_record(conversation: Conversation, family: str) -> dict:
    """The boxes as a COCO detection file (bbox = [x, y, width, height]); points are not COCO boxes and are left out."""
    record = detections_record(conversation, family)
    names = sorted({d["label"] for d in record["detections"] if d["bbox_xyxy"] is not None})
    category = {name: i for i, name in enumerate(names, 1)}
    annotations = []
    for d in record["detections"]:
        if d["bbox_xyxy"] is None:
            continue
        x1, y1, x2, y2 = d["bbox_xyxy"]
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": d["picture"],
                "category_id": category[d["label"]],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
        )
    return {
        "images": [
            {"id": i["picture"], "file_name": i["file_name"], "width": i["width"], "height": i["height"]}
            for i in record["images"]
        ],
        "annotations": annotations,
        "categories": [{"id": i, "name": name or "object"} for name, i in category.items()],
    }


def write_exports(conversation: Conversation, family: str, out_dir: Path) -> list[Path]:
    """Write detections.json, detections-coco.json and one annotated PNG per (turn, picture); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "detections.json", out_dir / "detections-coco.json"]
    written[0].write_text(json.dumps(detections_record(conversation, family), indent=2, ensure_ascii=False))
    written[1].write_text(json.dumps(coco_record(conversation, family), indent=2, ensure_ascii=False))
    images = conversation.images()
    for index in range(len(conversation.turns)):
        for number, on_picture in by_picture(turn_detections(conversation, index, family)).items():
            target = out_dir / f"turn{index + 1}-picture{number}.png"
            shutil.copyfile(annotated_png(images[number - 1], on_picture), target)
            written.append(target)
    return written
