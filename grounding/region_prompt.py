"""A region of a picture written into a question, in each generation's own format and coordinates.

A person asks about a box ("what is this?"): the model must be told which box, as it writes boxes
itself, in the space its own boxes are in, so that a box it wrote and a box it is shown mean the
same place. ``region_text`` writes it; :func:`grounding.parse` reads it back to the same pixels
(within half a unit of the space: tests/test_region_question.py).

Which format, per generation:

- Qwen-VL: ``<ref>label</ref><box>(x1,y1),(x2,y2)</box>``, 0-1000 of the picture. A question
  about a region holds a bare ``<box>`` (QwenLM/Qwen-VL#159: fine-tuning data asking
  "请描述图…中<box>(…)</box>区域中的内容", which a maintainer said the model can be trained on);
  ms-swift's Qwen-VL template writes a region as ``<ref>…</ref>`` and ``<box>(x1,y1),(x2,y2)</box>``
  (``swift/llm/template/template/qwen.py``, ``QwenVLTemplate.replace_ref/replace_bbox``).
- Qwen2-VL: ``<|object_ref_start|>label<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``,
  0-1000 (ms-swift's ``Qwen2VLTemplate.replace_ref/replace_bbox``, boxes normalised to 1000 by
  default; the model card's grounding format).
- Qwen2.5-VL: JSON ``{"bbox_2d": [x1, y1, x2, y2], "label": …}`` (the shape its cookbook's
  ``spatial_understanding.ipynb`` answers in) in pixels of the picture as the model saw it, after
  its resize: a Qwen maintainer, QwenLM/Qwen3-VL#782 ("it is the absolute coordinates AFTER
  resizing") and #1126 (in Chinese: absolute coordinates after the resize, not 0-1000 or 0-1
  relative ones); ms-swift's ``Qwen2_5VLTemplate`` sets ``norm_bbox = 'none'``.
- Qwen3-VL, Qwen3.5 (and Qwen4-Exp, taken to be Qwen3.5's): the same JSON, 0-1000 of the picture
  (the Qwen3-VL cookbook ``2d_grounding.ipynb``; QwenLM/Qwen3-VL#1927 asks
  ``What is inside {"bbox_2d": [74, 361, 324, 808]}?`` and a maintainer answers that coordinates are
  plain text the model learned; QwenLM/Qwen3-VL#2008, a maintainer: coordinates are normalised to
  1000, whatever the resolution; QwenLM/Qwen3-VL#1427, cited by issue 25 as confirming region
  prompts work, was not found in the stored copies read for this module).

A region without a label is the box alone (Qwen-VL#159's form; the JSON without ``label``). The
picture is named before the box ("About this region of Picture 2: …"), as ``add_vision_id`` names
the pictures, so a parser reading the question would place it on that picture too.

Pure: numbers and text only.
"""

from __future__ import annotations

import json
import re

from grounding.generations import RELATIVE_SCALE, generation

Box = tuple[float, float, float, float]
_UNSAFE = re.compile(r"[\x00-\x1f\"<>|\\]")  # no marker, quote or line can be formed by a label


def clean_label(label: str) -> str:
    """A label fit to be written inside the model's markers: no ``<``, ``>``, ``|``, quotes or
    control characters, spaces collapsed, at most 80 characters."""
    return " ".join(_UNSAFE.sub(" ", label or "").split())[:80].strip()


def model_box(bbox_xyxy: Box, image_wh: tuple[int, int], input_wh: tuple[int, int] | None, family: str) -> tuple[int, int, int, int]:
    """The box (pixels of the picture as the person sent it) as the four integers ``family`` writes:
    0-1000 of the picture, or, for Qwen2.5-VL, pixels of the ``input_wh`` picture the model saw.
    Clipped to the space; each side at least one unit long."""
    width, height = image_wh
    if generation(family).relative:
        space_w, space_h = RELATIVE_SCALE, RELATIVE_SCALE
    else:
        if input_wh is None:
            raise ValueError(f"{family} writes pixels of the picture as it saw it: input_wh is required")
        space_w, space_h = input_wh
    x1, y1, x2, y2 = bbox_xyxy
    xs = [min(max(round(v / width * space_w), 0), int(space_w)) for v in (x1, x2)]
    ys = [min(max(round(v / height * space_h), 0), int(space_h)) for v in (y1, y2)]
    if xs[1] <= xs[0]:
        xs = [xs[0], xs[0] + 1] if xs[0] < space_w else [xs[0] - 1, xs[0]]
    if ys[1] <= ys[0]:
        ys = [ys[0], ys[0] + 1] if ys[0] < space_h else [ys[0] - 1, ys[0]]
    return xs[0], ys[0], xs[1], ys[1]


def region_text(family: str, box: tuple[int, int, int, int], label: str = "") -> str:
    """The region ``box`` (already in ``family``'s space: `model_box`) as ``family`` writes one."""
    x1, y1, x2, y2 = box
    label = clean_label(label)
    if family == "qwen-vl":
        return (f"<ref>{label}</ref>" if label else "") + f"<box>({x1},{y1}),({x2},{y2})</box>"
    if family == "qwen2-vl":
        ref = f"<|object_ref_start|>{label}<|object_ref_end|>" if label else ""
        return f"{ref}<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"
    generation(family)  # an unknown family is refused
    return json.dumps({"bbox_2d": [x1, y1, x2, y2], **({"label": label} if label else {})}, ensure_ascii=False)


def region_question(
    family: str, picture: int, bbox_xyxy: Box, image_wh: tuple[int, int], input_wh: tuple[int, int] | None, question: str, label: str = ""
) -> str:
    """The question as the model reads it: the picture named, then the region in ``family``'s format
    and space, then the person's words."""
    box = model_box(bbox_xyxy, image_wh, input_wh, family)
    return f"About this region of Picture {picture}: {region_text(family, box, label)}\n{question}"
