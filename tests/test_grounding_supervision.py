"""Differential test: our JSON boxes against supervision's ``Detections.from_vlm``.

supervision 0.31 scales (``/ input_wh * resolution_wh``, 0-1000 for Qwen3-VL) and
orders corners, but neither clips nor drops boxes, and needs a ``label`` and a list;
so the answers here are lists with labels, and its boxes are clipped before comparing.
"""

from __future__ import annotations

import warnings

import pytest

from grounding import parse

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "OpenCV is not installed" on import
    sv = pytest.importorskip("supervision")
np = pytest.importorskip("numpy")

ANSWERS = [
    pytest.param('```json\n[\n  {"bbox_2d": [139, 168, 315, 254], "label": "small cake"},\n'
                 '  {"bbox_2d": [366, 79, 536, 249], "label": "dog"}\n]\n```', id="fenced-list"),
    pytest.param('Here you go:\n```json\n[{"bbox_2d": [10, 20, 200, 260], "label": "cat"}]\n```\nAnything else?',
                 id="prose-around-fence"),
    pytest.param('[{"bbox_2d": [0, 0, 532, 280], "label": "whole"}, '
                 '{"bbox_2d": [100.5, 50.25, 300, 200], "label": "f"}]',
                 id="unfenced-floats"),
    pytest.param('[{"bbox_2d": [400, 200, 100, 50], "label": "inverted"}]', id="inverted-corners"),
    pytest.param('[{"bbox_2d": [-20, 100, 600, 300], "label": "overflowing"}]', id="past-the-edges"),
    pytest.param('```json\n[\n  {"bbox_2d": [1, 2, 30, 40], "label": "a"},\n'
                 '  {"bbox_2d": [5, 6, 70, 80], "label": "b"},\n'
                 '  {"bbox_2d": [9, 10', id="truncated"),
    pytest.param('[{"bbox_2d": [12, 34, 56, 78], "label": "红色的杯子"}, '
                 '{"bbox_2d": [60, 70, 80, 90], "label": "cup"}]',
                 id="cjk-label"),
]
# (original image size, model input size): non-square, smart-resized to multiples of 28.
SIZES = [((1000, 500), (532, 280)), ((640, 427), (644, 420)), ((600, 400), (616, 420))]


def clipped(xyxy, width: float, height: float) -> list[tuple[float, ...]]:
    boxes = np.clip(np.asarray(xyxy, dtype=float).reshape(-1, 4), 0, [width, height, width, height])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return [tuple(b) for b in boxes[keep]]


def assert_same_boxes(ours, theirs) -> None:
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, abs=0.5)


@pytest.mark.parametrize(("image_wh", "input_wh"), SIZES, ids=["1000x500", "640x427", "600x400"])
@pytest.mark.parametrize("answer", ANSWERS)
def test_qwen25_matches_supervision(answer, image_wh, input_wh):
    theirs = sv.Detections.from_vlm(sv.VLM.QWEN_2_5_VL, answer, input_wh=input_wh, resolution_wh=image_wh)
    ours = parse(answer, "qwen2.5-vl", [image_wh], [input_wh])
    assert_same_boxes([d.bbox for d in ours], clipped(theirs.xyxy, *image_wh))
    assert [d.label for d in ours] == list(theirs.data["class_name"])


@pytest.mark.parametrize("image_wh", [wh for wh, _ in SIZES], ids=["1000x500", "640x427", "600x400"])
@pytest.mark.parametrize("answer", ANSWERS)
def test_qwen3_matches_supervision(answer, image_wh):
    theirs = sv.Detections.from_vlm(sv.VLM.QWEN_3_VL, answer, resolution_wh=image_wh)
    ours = parse(answer, "qwen3-vl", [image_wh])
    assert_same_boxes([d.bbox for d in ours], clipped(theirs.xyxy, *image_wh))
