"""Export of a conversation's groundings: our JSON, COCO-style JSON and the annotated PNGs.

Pure records (`detections_record`, `coco_record`) plus `write_exports`, which writes them
and the annotated pictures into a folder. With reference boxes (`demo/views/ground_truth.py`), the
JSON also says, per box, whether it matched a reference and with what IoU, and per turn and
picture the counts, precision, recall and mean IoU, with the missed references. Knows nothing
of Gradio.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from demo.record.conversation import Conversation
from demo.views.annotations import annotated_image, by_picture, turn_detections
from demo.views.ground_truth import References, scores


def detections_record(
    conversation: Conversation,
    family: str,
    references: References | None = None,
    threshold: float = 0.5,
    labels: bool = True,
) -> dict:
    """Every grounding of the conversation: raw model numbers, pixels, Picture, turn; and, given
    reference boxes, the comparison with them (see the module docstring)."""
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
    if references is not None:
        record["ground_truth"] = _comparison(conversation, family, references, threshold, labels, record["detections"])
    return record


def _comparison(conversation, family, references, threshold, labels, detections: list[dict]) -> dict:
    """The comparison's figures; each scored box in `detections` gets its `reference_match`."""
    found = scores(conversation, family, references, threshold, labels)
    rows, missed = [], []
    for s in found:
        m = s.matching
        rows.append(
            {
                "turn": s.turn,
                "picture": s.picture,
                "file_name": s.file_name,
                "references": m.references,
                "predicted": m.predicted,
                "matched": len(m.matches),
                "missed": len(m.missed),
                "extra": len(m.extra),
                "precision": m.precision,
                "recall": m.recall,
                "mean_iou": m.mean_iou,
            }
        )
        entries = [d for d in detections if d["turn"] == s.turn and d["picture"] == s.picture and d["bbox_xyxy"] is not None]
        for index, entry in enumerate(entries):  # the same boxes, in the same order, as the matching saw
            hit = m.of_prediction(index)
            entry["reference_match"] = {"status": "matched", "reference": hit.reference, "iou": hit.iou} if hit else {"status": "extra"}
        for r in m.missed:
            reference = s.references[r]
            missed.append({"turn": s.turn, "picture": s.picture, "reference": r, "label": reference.label, "bbox_xyxy": list(reference.bbox)})
    return {
        "source": references.source,
        "iou_threshold": threshold,
        "labels_must_match": labels,
        "matching": "one to one, greedy by IoU",
        "scores": rows,
        "missed": missed,
    }


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


def write_exports(
    conversation: Conversation,
    family: str,
    out_dir: Path,
    references: References | None = None,
    threshold: float = 0.5,
    labels: bool = True,
) -> list[Path]:
    """Write detections.json, detections-coco.json and one annotated PNG per (turn, picture); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "detections.json", out_dir / "detections-coco.json"]
    record = detections_record(conversation, family, references, threshold, labels)
    written[0].write_text(json.dumps(record, indent=2, ensure_ascii=False))
    written[1].write_text(json.dumps(coco_record(conversation, family), indent=2, ensure_ascii=False))
    images = conversation.images()
    for index in range(len(conversation.turns)):
        for number, on_picture in by_picture(turn_detections(conversation, index, family)).items():
            target = out_dir / f"turn{index + 1}-picture{number}.png"
            shutil.copyfile(annotated_image(images[number - 1], on_picture), target)
            written.append(target)
    return written
