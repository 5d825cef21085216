"""Reference boxes: COCO files and this app's export, hostile files, scores per turn and picture."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from demo.record.conversation import Attachment, Conversation, Turn
from demo.views.export import detections_record
from demo.views.ground_truth import MAX_BOXES, MAX_BOXES_PER_IMAGE, ReferenceFileError, load_references, scores

MB = 1_000_000


def picture(name: str, size=(400, 200)) -> Attachment:
    return Attachment(path=f"/uploads/{name}", image=Image.new("RGB", size), name=name)


def coco(annotations, images=None, categories=None) -> dict:
    return {
        "images": images if images is not None else [{"id": 1, "file_name": "val/cat.png", "width": 400, "height": 200}],
        "annotations": annotations,
        "categories": categories if categories is not None else [{"id": 1, "name": "cat"}, {"id": 2, "name": "cup"}],
    }


def write(tmp_path, data, name="reference.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_a_coco_file_gives_each_picture_its_boxes_by_file_name(tmp_path):
    data = coco(
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 50]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [200, 0, 50, 50]},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 0, 400, 200], "iscrowd": 1},  # a crowd region: left out
        ]
    )
    references = load_references(write(tmp_path, data), 20 * MB)
    boxes = references.for_picture(picture("cat.png"))  # the folder in file_name does not matter
    assert [(r.label, r.bbox) for r in boxes] == [("cat", (10, 20, 110, 70)), ("cup", (200, 0, 250, 50))]
    assert references.for_picture(picture("dog.png")) is None
    assert references.for_picture(picture("CAT.PNG")) == boxes  # a name that differs in case alone
    assert references.describe(Conversation([Turn("q", [picture("cat.png")])])) == (
        "reference.json: 2 reference boxes on 1 image (COCO); 1 of them is a picture of this chat."
    )


def test_boxes_are_scaled_when_the_reference_image_had_another_size(tmp_path):
    data = coco([{"image_id": 1, "category_id": 1, "bbox": [100, 50, 100, 50]}])  # on a 400×200 image
    references = load_references(write(tmp_path, data), 20 * MB)
    (half,) = references.for_picture(picture("cat.png", (200, 100)))
    assert half.bbox == (50, 25, 100, 50)


def test_this_apps_export_is_a_reference_file_and_matches_itself(tmp_path):
    answer = '[{"bbox_2d": [0, 0, 500, 500], "label": "cat"}, {"point_2d": [900, 900], "label": "tail"}]'
    turns = [
        Turn("find", [picture("cat.png")], answer=answer.replace("500, 500", "250, 250"), status="done", input_sizes=[(56, 28)]),
        Turn("again", answer=answer, status="done", input_sizes=[(56, 28)]),  # the latest boxes are the reference
    ]
    conversation = Conversation(turns)
    path = write(tmp_path, detections_record(conversation, "qwen3-vl"), "detections.json")
    references = load_references(path, 20 * MB)
    assert [(r.label, r.bbox) for r in references.for_picture(picture("cat.png"))] == [("cat", (0, 0, 200, 100))]
    (first, second) = scores(conversation, "qwen3-vl", references, 0.5, True)
    assert (first.turn, first.matching.precision, first.matching.recall) == (1, 0.0, 0.0)  # a quarter of the box: IoU 0.25
    assert (second.turn, second.matching.precision, second.matching.recall) == (2, 1.0, 1.0)
    assert second.matching.matches[0].iou == 1.0


def test_scores_cover_the_turns_with_boxes_on_their_pictures_and_the_pictures_sent_with_them():
    from demo.views.ground_truth import Reference, References

    references = References("r.json", "COCO", {"a.png": (Reference("cat", (0, 0, 200, 100)),), "b.png": ()}, {})
    turns = [
        Turn("look", [picture("a.png"), picture("b.png")], answer="A cat.", status="done", input_sizes=[(56, 28)] * 2),
        Turn("find", answer='In Picture 1 [{"bbox_2d": [0, 0, 500, 500], "label": "cat"}]', status="done", input_sizes=[(56, 28)] * 2),
        Turn("and this", [picture("c.png")], answer='[{"bbox_2d": [0, 0, 9, 9], "label": "cat"}]', status="done", input_sizes=[(56, 28)] * 3),
    ]
    found = [(s.turn, s.picture, len(s.matching.matches), s.matching.extra, s.matching.missed) for s in scores(Conversation(turns), "qwen3-vl", references, 0.5, True)]
    # turn 1 has no box: not scored; turn 2's box is on Picture 1 (b.png has references but was not
    # grounded nor sent with turn 2); turn 3's box is on c.png, which has no references.
    assert found == [(2, 1, 1, (), ())]


@pytest.mark.parametrize(
    "content, says",
    [
        ("{not json", "could not be read as JSON"),  # not JSON at all
        (b"\xff\xfe\x00garbage".decode("latin-1"), "could not be read as JSON"),  # not text
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # a parser bomb
        ('{"annotations": [], "images": NaN}', "NaN, which is not a finite number"),  # NaN
        ('{"annotations": [{"image_id": 1, "bbox": [0, 0, Infinity, 1]}], "images": []}', "Infinity"),  # Infinity
        (json.dumps(coco([{"image_id": 1, "bbox": [0, 0, 1e999, 1]}])).replace("Infinity", "1e999"), "four finite numbers"),  # overflows to inf
        (json.dumps(coco([{"image_id": 1, "bbox": [1e308, 0, 1e308, 10]}])), "a coordinate beyond 1,000,000 pixels"),  # x + w overflowed: crashed the scores
        (json.dumps(coco([{"image_id": 1, "bbox": [0, -2e6, 1, 1]}])), "a coordinate beyond 1,000,000 pixels"),
        (json.dumps(coco([], images=[{"id": 1, "file_name": "a.png", "width": 1e-300, "height": 5}])), "outside 1 to 1,000,000 pixels"),  # scales boxes to infinity
        (json.dumps({"detections": [{"picture": 1, "turn": 1, "label": "x", "bbox_xyxy": [0, 0, 1e308, 1]}], "images": [{"picture": 1, "file_name": "a.png"}]}), "beyond 1,000,000 pixels"),  # export
        (json.dumps(coco([{"image_id": 1, "bbox": [1, 1, 1, 1]}] * (MAX_BOXES_PER_IMAGE + 1))), "'cat.png' has more than the 1,000 boxes allowed on one picture"),
        ('{"images": []}', "neither COCO `annotations` nor this app's `detections`"),  # no boxes at all
        ('[1, 2, 3]', "neither COCO"),  # not an object
        (json.dumps(coco([{"image_id": 9, "bbox": [0, 0, 1, 1]}])), "on image 9, which `images` does not list"),  # dangling image
        (json.dumps(coco([{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]}])), "category 7"),  # dangling category
        (json.dumps(coco([{"image_id": 1, "bbox": [0, 0, -5, 1]}])), "negative width"),  # negative size
        (json.dumps(coco([{"image_id": 1, "bbox": [0, 0, "1", 1]}])), "four finite numbers"),  # a string for a number
        (json.dumps(coco([{"image_id": 1, "bbox": [0, 0, 1]}])), "four finite numbers"),  # three numbers
        (json.dumps(coco([], images=[{"id": 1, "file_name": 5}])), "image 1 has no id and file_name"),  # a number for a name
        (json.dumps(coco([], images=[{"id": 1, "file_name": "a.png", "width": 0, "height": 5}])), "not a positive number"),  # zero width
        (json.dumps(coco([], images=[{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "x/a.png"}])), "repeats"),  # ambiguous names
        (json.dumps(coco([], categories={"1": "cat"})), "`categories` is not a list"),  # wrong shape
        (json.dumps({"annotations": [{}] * (MAX_BOXES + 1), "images": []}), "more than the 100,000 allowed"),  # huge count
        (json.dumps({"detections": [{"picture": 1, "turn": 1, "label": "x", "bbox_xyxy": [5, 5, 1, 1]}], "images": [{"picture": 1, "file_name": "a.png"}]}), "inverted corners"),  # export, inverted
        (json.dumps({"detections": [{"picture": 2, "turn": 1, "label": "x", "bbox_xyxy": [0, 0, 1, 1]}], "images": []}), "picture 2"),  # export, dangling picture
    ],
)
def test_a_bad_reference_file_is_refused_with_one_sentence(tmp_path, content, says):
    with pytest.raises(ReferenceFileError) as refused:
        load_references(write(tmp_path, content), 20 * MB)
    message = str(refused.value)
    assert says in message and message.startswith("reference.json ") and "\n" not in message
    assert message.endswith(".") and len(message) < 300


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    with pytest.raises(ReferenceFileError, match=r"reference.json is 0.0 MB, more than the 1e-05 MB allowed\."):
        load_references(write(tmp_path, coco([])), 10)


def test_the_export_carries_the_comparison(tmp_path):
    from demo.views.export import write_exports
    from demo.views.ground_truth import Reference, References

    answer = '[{"bbox_2d": [0, 0, 500, 500], "label": "cat"}, {"bbox_2d": [600, 600, 900, 900], "label": "cat"}, {"point_2d": [5, 5], "label": "eye"}]'
    conversation = Conversation([Turn("find", [picture("cat.png")], answer=answer, status="done", input_sizes=[(56, 28)])])
    references = References("ref.json", "COCO", {"cat.png": (Reference("cat", (0, 0, 200, 100)), Reference("dog", (0, 0, 10, 10)))}, {})
    paths = write_exports(conversation, "qwen3-vl", tmp_path / "out", references, 0.5, True)
    record = json.loads(paths[0].read_text())
    truth = record["ground_truth"]
    assert (truth["source"], truth["iou_threshold"], truth["labels_must_match"]) == ("ref.json", 0.5, True)
    assert truth["scores"] == [
        {"turn": 1, "picture": 1, "file_name": "cat.png", "references": 2, "predicted": 2, "matched": 1, "missed": 1,
         "extra": 1, "precision": 0.5, "recall": 0.5, "mean_iou": 1.0}
    ]
    assert truth["missed"] == [{"turn": 1, "picture": 1, "reference": 1, "label": "dog", "bbox_xyxy": [0, 0, 10, 10]}]
    matches = [d.get("reference_match") for d in record["detections"]]
    assert matches == [{"status": "matched", "reference": 0, "iou": 1.0}, {"status": "extra"}, None]  # a point is not compared
    assert "ground_truth" not in detections_record(conversation, "qwen3-vl")  # none loaded, none written


def test_100000_boxes_load_score_and_show_within_seconds(tmp_path):
    """The most a file may hold (100,000 boxes, 1,000 on each of 100 pictures) through what the page does
    with it: loaded, scored, the picture's view and its table (a Dataframe). Before, a picture with more
    boxes than pandas' Styler renders (262,144 cells) made the table's update crash."""
    import time

    import gradio as gr

    from demo.page.inspector_ui import _table
    from demo.views.inspector import Picks, inspect

    images = [{"id": i, "file_name": f"photo{i}.png", "width": 400, "height": 200} for i in range(100)]
    annotations = [{"image_id": i // 1000, "category_id": 1, "bbox": [i % 390, (i // 7) % 190, 10, 10]} for i in range(MAX_BOXES)]
    path = write(tmp_path, coco(annotations, images=images))
    answer = "".join(f'{{"bbox_2d": [{k}, {k}, {k + 40}, {k + 40}], "label": "cat"}}, ' for k in range(0, 900, 9))
    conversation = Conversation([Turn("find", [picture("photo3.png"), picture("photo7.png")], answer=f"[{answer[:-2]}]", status="done", input_sizes=[(56, 28)] * 2)])
    start = time.perf_counter()
    references = load_references(path, 20 * MB)
    shown = inspect(conversation, "qwen3-vl", Picks(), references)
    table = _table(shown.rows, shown.headers, shown.view.get("selected"))
    gr.Dataframe(headers=shown.headers).postprocess(table)
    took = time.perf_counter() - start
    assert references.count == MAX_BOXES and len(shown.rows) >= MAX_BOXES_PER_IMAGE  # its references are listed
    assert took < 15, f"{took:.1f} s"  # 3-4 s here (the file alone: 1.5-3 s)


def test_a_picture_with_more_boxes_than_allowed_is_refused_at_once(tmp_path):
    import time

    annotations = [{"image_id": 1, "category_id": 1, "bbox": [i % 390, i % 190, 10, 10]} for i in range(MAX_BOXES)]
    path = write(tmp_path, coco(annotations))
    start = time.perf_counter()
    with pytest.raises(ReferenceFileError, match="'cat.png' has more than the 1,000 boxes allowed on one picture"):
        load_references(path, 20 * MB)
    assert time.perf_counter() - start < 3
