"""Exports for annotation tools, read back by the tools' own readers.

YOLO and COCO go through supervision's `DetectionDataset.from_yolo` / `from_coco`. Label Studio's
converter cannot be installed beside requirements.txt: `label-studio-sdk`, its home now, pins OpenCV
4.12, which needs numpy < 2.3 (requirements.txt: 2.4.6), and the older standalone
`label-studio-converter` installs a top-level `tests` package that hides this project's. So the
labeling config goes through Label Studio's own parser (`label-studio-tools`), and the tasks are read
as its converter reads them (`read_label_studio` says where from). Every box and point must come back
within 1 px of the pixels the app drew it at.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import supervision as sv
from PIL import Image

from demo.record.conversation import Attachment, Conversation, Turn
from demo.views.annotations import turn_detections
from demo.views.export_tools import (
    ARCHIVE,
    LS_CONFIG,
    LS_TASKS,
    class_name,
    label_studio_config,
    label_studio_tasks,
    picture_files,
    write_all,
    yolo_labels,
)

FAMILY = "qwen3-vl"  # 0-1000 of the picture: any size can be asked for exactly


@dataclass(frozen=True)
class Picture:
    name: str
    size: tuple[int, int]
    stored: str  # "png", "jpeg", "webp": a file as sent; "memory": only the kept picture (a loaded conversation)


@dataclass(frozen=True)
class Case:
    pictures: tuple[Picture, ...]
    answers: tuple[str, ...]  # one turn each, all pictures sent with the first
    boxes: int  # how many boxes and points the answers hold (so no case passes by exporting nothing)
    points: int
    coco: bool = True  # supervision keys COCO images by file_name: two pictures of one name are one image there


def box(x1, y1, x2, y2, label):
    return {"bbox_2d": [x1, y1, x2, y2], "label": label}


def point(x, y, label):
    return {"point_2d": [x, y], "label": label}


def on(picture: int, *items: dict) -> str:
    return f"In Picture {picture}:\n```json\n{json.dumps(list(items), ensure_ascii=False)}\n```\n"


CASES = {
    # Three sizes (one odd, kept only in memory), boxes over two turns, two on one picture.
    "pictures of different sizes": Case(
        (Picture("wide.png", (640, 360), "png"), Picture("tall.jpg", (300, 500), "jpeg"), Picture("odd.png", (97, 61), "memory")),
        (on(1, box(100, 100, 400, 600, "cat"), box(500, 0, 900, 333, "dog")) + on(2, box(123, 456, 789, 987, "cat")),
         on(3, box(10, 20, 990, 980, "cup")) + on(1, box(0, 500, 250, 1000, "cup"))),
        boxes=5, points=0,
    ),
    # Points: Label Studio keypoints; not in YOLO or COCO, whose boxes stay.
    "points": Case(
        (Picture("table.png", (400, 300), "png"),),
        (on(1, point(250, 750, "spoon"), point(600, 100, "fork"), box(300, 300, 700, 700, "plate")),),
        boxes=1, points=2,
    ),
    # Non-ASCII names and labels; XML's special characters; a newline and an empty label.
    "non-ASCII labels": Case(
        (Picture("猫の写真.png", (320, 240), "png"),),
        (on(1, box(0, 0, 500, 500, "猫"), box(500, 500, 1000, 1000, 'Straße & "Café" <b>'),
            box(100, 600, 300, 900, "  two\nlines "), box(700, 50, 950, 400, ""), point(400, 400, "点")),),
        boxes=4, points=1,
    ),
    # An answer with nothing to draw: the picture is still a task and a dataset image, with no labels.
    "empty conversation": Case((Picture("empty.png", (200, 100), "png"),), ("I see nothing worth a box.",), boxes=0, points=0),
    # At the border: the whole picture, a corner pixel, a box past the edge (clipped), points on corners.
    "boxes at the image border": Case(
        (Picture("edge.jpg", (501, 333), "jpeg"),),
        (on(1, box(0, 0, 1000, 1000, "all"), box(0, 0, 2, 3, "corner"), box(998, 997, 1000, 1000, "corner"),
            box(-20, 500, 1020, 1000, "clipped"), point(0, 0, "origin"), point(1000, 1000, "far")),),
        boxes=4, points=2,
    ),
    # Two pictures named alike (one only in memory) and a WebP: distinct dataset names, PNG for the WebP.
    "same names and other formats": Case(
        (Picture("photo.png", (200, 100), "png"), Picture("photo.png", (150, 150), "memory"), Picture("scan.webp", (120, 80), "webp")),
        (on(1, box(0, 0, 500, 500, "a")) + on(2, box(500, 500, 1000, 1000, "b")) + on(3, box(250, 250, 750, 750, "a")),),
        boxes=3, points=0, coco=False,
    ),
}


def conversation_of(case: Case, folder: Path) -> Conversation:
    """The case as the app keeps it: attachments with their file (when sent) and picture, one turn per answer."""
    folder.mkdir(parents=True, exist_ok=True)
    attachments = []
    for number, p in enumerate(case.pictures, 1):
        image = Image.effect_noise(p.size, 40 + number).convert("RGB")
        path = folder / f"{number}-{p.name}"
        if p.stored == "memory":
            path = folder / "gone" / p.name  # the upload is not on disk any more
        else:
            image.save(path, format=p.stored.upper())
        attachments.append(Attachment(path=str(path), image=image, name=p.name))
    sizes = [p.size for p in case.pictures]
    turns = [Turn(f"question {i}", attachments if i == 0 else [], answer=a, status="done", input_sizes=sizes) for i, a in enumerate(case.answers)]
    return Conversation(turns=turns)


def drawn(conversation: Conversation, name=class_name) -> tuple[dict[int, list], dict[int, list]]:
    """Per Picture number, the (`name` of its label, pixels) of every box and every point the app drew."""
    boxes: dict[int, list] = {}
    points: dict[int, list] = {}
    for index in range(len(conversation.turns)):
        for d in turn_detections(conversation, index, FAMILY):
            if d.bbox is not None:
                boxes.setdefault(d.image, []).append((name(d.label), d.bbox))
            else:
                points.setdefault(d.image, []).append((name(d.label), d.point))
    return boxes, points


def assert_within_a_pixel(expected: list, got: list) -> None:
    """The same labelled boxes or points, each coordinate within 1 px, in any order."""
    left = list(got)
    for label, where in expected:
        match = next((g for g in left if g[0] == label and max(abs(a - b) for a, b in zip(g[1], where, strict=True)) <= 1), None)
        assert match is not None, f"{label} {where} not among {left}"
        left.remove(match)
    assert left == []


@pytest.fixture(params=list(CASES), ids=list(CASES))
def exported(request, tmp_path):
    case = CASES[request.param]
    conversation = conversation_of(case, tmp_path / "uploads")
    paths = write_all(conversation, FAMILY, tmp_path / "export")
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(paths[0]) as zf:
        zf.extractall(unzipped)
    boxes, points = drawn(conversation)
    assert sum(map(len, boxes.values())) == case.boxes and sum(map(len, points.values())) == case.points
    return case, conversation, paths, unzipped


def test_the_zip_comes_first_and_holds_every_file_beside_it_and_the_yolo_dataset(exported):
    case, conversation, paths, unzipped = exported
    names = [p.name for p in paths]
    assert names[:5] == [ARCHIVE, "detections.json", "detections-coco.json", LS_TASKS, LS_CONFIG]
    drawn_on = {(t + 1, d.image) for t in range(len(conversation.turns)) for d in turn_detections(conversation, t, FAMILY)}
    assert names[5:] == [f"turn{t}-picture{n}.png" for t, n in sorted(drawn_on)]
    for path in paths[1:]:
        assert (unzipped / path.name).read_bytes() == path.read_bytes()
    files = picture_files(conversation)
    assert len(set(files)) == len(files) == len(case.pictures)
    assert sorted(p.name for p in (unzipped / "yolo" / "images").iterdir()) == sorted(files)
    assert sorted(p.name for p in (unzipped / "yolo" / "labels").iterdir()) == sorted(Path(f).stem + ".txt" for f in files)


def test_yolo_round_trips_through_supervision(exported):
    case, conversation, paths, unzipped = exported
    yolo = unzipped / "yolo"
    dataset = sv.DetectionDataset.from_yolo(str(yolo / "images"), str(yolo / "labels"), str(yolo / "data.yaml"))
    names, _ = yolo_labels(conversation, FAMILY)
    assert dataset.classes == names == (yolo / "classes.txt").read_text(encoding="utf-8").splitlines()
    boxes, _ = drawn(conversation)
    number = {file: n for n, file in enumerate(picture_files(conversation), 1)}
    assert len(dataset.annotations) == len(case.pictures)
    for path, detections in dataset.annotations.items():
        got = [(dataset.classes[c], tuple(xyxy)) for c, xyxy in zip(detections.class_id if len(detections) else [], detections.xyxy, strict=True)]
        assert_within_a_pixel(boxes.get(number[Path(path).name], []), got)


def test_coco_round_trips_through_supervision(exported):
    case, conversation, paths, unzipped = exported
    if not case.coco:
        pytest.skip("COCO names pictures by their file name: two alike are one image to its readers")
    dataset = sv.DetectionDataset.from_coco(str(unzipped), str(unzipped / "detections-coco.json"))
    boxes, _ = drawn(conversation, lambda label: label or "object")  # COCO's categories are the labels as given
    number = {p.name: n for n, p in enumerate(case.pictures, 1)}
    assert len(dataset.annotations) == len(case.pictures)
    for path, detections in dataset.annotations.items():
        got = [(dataset.classes[c], tuple(xyxy)) for c, xyxy in zip(detections.class_id if len(detections) else [], detections.xyxy, strict=True)]
        assert_within_a_pixel(boxes.get(number[Path(path).name], []), got)


def read_label_studio(tasks: list[dict], config: str, document_root: Path) -> tuple[dict[Path, list], dict[Path, list]]:
    """Per picture file, the (label, pixels) of the boxes and points of every prediction, read the way
    Label Studio reads them. The config goes through `label_studio_tools.core.label_config.parse_config`
    (the parser its converter and ML backends use). The results are read as its converter reads an
    export (label_studio_sdk/converter/converter.py): `annotation_result_from_task` keeps a result
    only if its `from_name` is a control tag of the config (asserted here: none may be dropped), and
    `convert_to_coco` makes pixels of `value` x, y, width, height times original_width or _height
    over 100 (keypoints.py the same for points). A `/data/local-files/?d=` URL is resolved as its
    server's local-files view does: the query's `d`, decoded, under the document root."""
    from label_studio_tools.core.label_config import parse_config

    schema = parse_config(config)
    boxes: dict[Path, list] = {}
    points: dict[Path, list] = {}
    for task in tasks:
        url = urlsplit(task["data"]["image"])
        assert url.path == "/data/local-files/"
        picture = document_root / parse_qs(url.query)["d"][0]
        assert picture.is_file(), picture
        for result in (r for p in task.get("predictions", []) for r in p["result"]):
            control = schema[result["from_name"]]
            assert result["to_name"] in control["to_name"] and control["type"].lower() == result["type"]
            value, w, h = result["value"], result["original_width"], result["original_height"]
            (label,) = value[result["type"]]
            assert label in control["labels"]
            assert result["type"] != "keypointlabels" or "model_index" in control["labels_attrs"][label]  # its COCO export needs it
            if result["type"] == "rectanglelabels":
                assert value["rotation"] == 0
                x, y = value["x"] * w / 100, value["y"] * h / 100
                boxes.setdefault(picture, []).append((label, (x, y, x + value["width"] * w / 100, y + value["height"] * h / 100)))
            else:
                points.setdefault(picture, []).append((label, (value["x"] / 100 * w, value["y"] / 100 * h)))
    return boxes, points


def test_label_studio_round_trips_through_its_readers(exported):
    case, conversation, paths, unzipped = exported
    tasks = json.loads((unzipped / LS_TASKS).read_text(encoding="utf-8"))
    assert len(tasks) == len(case.pictures)
    assert all("score" not in p and all("score" not in r for r in p["result"]) for t in tasks for p in t.get("predictions", []))  # Qwen gives none
    ids = [r["id"] for t in tasks for p in t.get("predictions", []) for r in p["result"]]
    assert len(set(ids)) == len(ids)  # Label Studio wants distinct result ids
    got_boxes, got_points = read_label_studio(tasks, (unzipped / LS_CONFIG).read_text(encoding="utf-8"), unzipped)
    boxes, points = drawn(conversation)
    files = [unzipped / "yolo" / "images" / name for name in picture_files(conversation)]
    for number, file in enumerate(files, 1):
        assert_within_a_pixel(boxes.get(number, []), got_boxes.get(file, []))
        assert_within_a_pixel(points.get(number, []), got_points.get(file, []))


def test_label_studio_sdk_reads_it_back_where_it_is_installed(exported, tmp_path):
    """label-studio-sdk's LabelInterface validates each prediction against the config, and its converter
    exports them to COCO (keypoints included) as a project would once a person accepted them. Skipped
    unless the SDK imports (it cannot be installed beside requirements.txt, see the module docstring);
    run here with it installed apart: `pip install --target DIR --no-deps label-studio-sdk==2.1.2 ujson
    ijson xmljson nltk PyJWT jsf Faker smart_open rstr`, then `PYTHONPATH=DIR pytest tests/test_exports.py`."""
    converter = pytest.importorskip("label_studio_sdk.converter.converter")
    interface = pytest.importorskip("label_studio_sdk.label_interface")
    io = pytest.importorskip("label_studio_sdk._extensions.label_studio_tools.core.utils.io")
    case, conversation, paths, unzipped = exported
    tasks = json.loads((unzipped / LS_TASKS).read_text(encoding="utf-8"))
    config = (unzipped / LS_CONFIG).read_text(encoding="utf-8")
    labels = interface.LabelInterface(config)
    assert all(labels.validate_prediction(p, return_errors=True) == [] for t in tasks for p in t.get("predictions", []))
    export = [
        {"id": i, "data": t["data"], "annotations": [{"id": 100 * i + k, "result": p["result"]} for k, p in enumerate(t.get("predictions", []))]}
        for i, t in enumerate(tasks, 1)
    ]  # the project's export once each prediction was accepted
    (tmp_path / "project.json").write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    root, io.LOCAL_FILES_DOCUMENT_ROOT = io.LOCAL_FILES_DOCUMENT_ROOT, str(unzipped)  # served from the unzipped folder
    try:
        converter.Converter(config=config, project_dir=str(tmp_path), download_resources=False).convert_to_coco(
            str(tmp_path / "project.json"), str(tmp_path / "coco"), is_dir=False
        )
    finally:
        io.LOCAL_FILES_DOCUMENT_ROOT = root
    coco = json.loads((tmp_path / "coco" / "result.json").read_text(encoding="utf-8"))
    number = {file: n for n, file in enumerate(picture_files(conversation), 1)}
    picture = {i["id"]: number[(tmp_path / "coco" / i["file_name"]).resolve().name] for i in coco["images"]}
    categories = {c["id"]: c for c in coco["categories"]}
    got_boxes: dict[int, list] = {}
    got_points: dict[int, list] = {}
    for a in coco["annotations"]:
        if "keypoints" in a:  # one pose per picture and turn: x, y, visibility per keypoint label
            names, values = categories[a["category_id"]]["keypoints"], a["keypoints"]
            got_points.setdefault(picture[a["image_id"]], []).extend(
                (name, tuple(values[3 * i: 3 * i + 2])) for i, name in enumerate(names) if values[3 * i + 2] > 0
            )
        else:
            x, y, w, h = a["bbox"]
            got_boxes.setdefault(picture[a["image_id"]], []).append((categories[a["category_id"]]["name"], (x, y, x + w, y + h)))
    boxes, points = drawn(conversation)
    for n in range(1, len(case.pictures) + 1):
        assert_within_a_pixel(boxes.get(n, []), got_boxes.get(n, []))
        assert_within_a_pixel(points.get(n, []), got_points.get(n, []))


def test_dataset_names_are_distinct_and_read_by_every_tool(tmp_path):
    conversation = conversation_of(CASES["same names and other formats"], tmp_path)
    # the first keeps its name; the second (same stem) gets its number; the WebP is written as PNG
    assert picture_files(conversation) == ["photo.png", "picture2-photo.png", "scan.png"]
    tasks = label_studio_tasks(conversation, FAMILY)
    assert tasks[1]["data"]["image"] == "/data/local-files/?d=yolo/images/picture2-photo.png"
    conversation.turns[0].attachments[0].name = "猫 & 犬.png"  # quoted as Label Studio's local storage quotes it
    assert label_studio_tasks(conversation, FAMILY)[0]["data"]["image"] == "/data/local-files/?d=yolo/images/%E7%8C%AB%20%26%20%E7%8A%AC.png"


def test_records_of_a_conversation_with_nothing_in_it():
    empty = Conversation()
    assert label_studio_tasks(empty, FAMILY) == [] and yolo_labels(empty, FAMILY) == ([], []) and picture_files(empty) == []
    assert '<Label value="object"/>' in label_studio_config(empty, FAMILY)  # a project needs a label to start from
    assert "KeyPointLabels" not in label_studio_config(empty, FAMILY)


def test_the_empty_conversation_writes_a_readable_empty_dataset(tmp_path):
    paths = write_all(Conversation(), FAMILY, tmp_path / "export")
    with zipfile.ZipFile(paths[0]) as zf:
        zf.extractall(tmp_path / "unzipped")
    yolo = tmp_path / "unzipped" / "yolo"
    (yolo / "images").mkdir(exist_ok=True)
    (yolo / "labels").mkdir(exist_ok=True)
    dataset = sv.DetectionDataset.from_yolo(str(yolo / "images"), str(yolo / "labels"), str(yolo / "data.yaml"))
    assert dataset.classes == [] and len(dataset) == 0


@pytest.mark.parametrize(
    "label, name",
    [
        ("cat", "cat"),  # as it is
        ("  two\nlines\t", "two lines"),  # whitespace collapsed: one class a line in classes.txt
        ("", "object"),  # an empty label, as COCO's export names it
        ("猫 ", "猫"),  # non-ASCII kept
    ],
)
def test_class_names(label, name):
    assert class_name(label) == name
