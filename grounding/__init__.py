"""Boxes and points in Qwen vision-language answers: find them, place them, draw them.

Pure Python on Pillow and the standard library. What each generation writes
(``parse`` reads every explicit format whatever the family; the family sets the
coordinate space):

- Qwen-VL, 0-1000 of the image, several boxes per ref allowed::

      <ref>Two apples</ref><box>(302,257),(582,671)</box><box>(603,252),(878,642)</box>

- Qwen2-VL, 0-1000, special tokens, and the bare form decoding with
  ``skip_special_tokens=True`` leaves::

      <|object_ref_start|>the man<|object_ref_end|><|box_start|>(123,235),(324,546)<|box_end|>
      the man(123,235),(324,546)

  Fine-tuned Qwen2.5-VL / Qwen3-VL / Qwen3.5 write the same tokens (ms-swift's default grounding
  format, LLaMA-Factory data), in their own space; their bare form is read when the numbers follow
  the label directly. Never while any marker is in the text.

- Qwen2.5-VL, ABSOLUTE pixels of the resized image the model saw (``input_sizes``)::

      ```json
      [{"bbox_2d": [139, 768, 315, 954], "label": "small cake"}, {"point_2d": [284, 305], "label": "pin"}]
      ```
      <points x1="284" y1="305" alt="rolling pin">rolling pin</points>

  plain-text lines when the system prompt asks for them (the spatial-understanding cookbook)::

      138,769,315,954 蛋糕

  and QwenVL HTML from document parsing (Qwen3-VL writes it in 0-1000, with
  QwenVL Markdown's ``<!-- Image (x1, y1, x2, y2) -->`` comments as well)::

      <h2 data-bbox="310 94 658 132">Qwen2.5 Technical Report</h2>

- Qwen3-VL, the same JSON, 0-1000 again; its image zoom-in tool call names the
  picture itself (``img_idx`` 0 is Picture 1)::

      <tool_call>
      {"name": "image_zoom_in_tool", "arguments": {"label": "sign", "bbox_2d": [574, 301, 660, 468], "img_idx": 0}}
      </tool_call>

- Phone and computer-use agents (Qwen2.5-VL pixels, Qwen3-VL 0-1000), tags or none, ``arguments``
  an object or a JSON string; each coordinate a point named by its action (``Detection.action``),
  a swipe two (``swipe start``, ``swipe end``); ``type``, ``key``, ``wait``… give nothing::

      <tool_call>
      {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [639, 1095]}}
      </tool_call>

- Lists of boxes per object; boxes under the keys a prompt asked for, labelled with the key
  (4 numbers in order, inside a complete JSON object and the coordinate space)::

      [{"bbox_2d": [[10, 20, 30, 40], [50, 60, 70, 80]], "label": "cup"}]
      {"cars": [[10, 20, 300, 400], [500, 60, 700, 580]], "people": [[50, 50, 120, 300]]}

JSON labels: the first of ``label``, ``name``; ``label_en``/``name_en`` before ``_zh`` and other
languages; ``names``; ``object``, ``category``, ``class``; ``text_content``, ``text``;
``description`` (see :mod:`grounding.json_labels`). ``bbox``, ``boxes``, ``box``… stand for
``bbox_2d``.

Usage::

    from grounding import parse, readable, draw
    detections = parse(answer, family="qwen2.5-vl", image_sizes=[(1000, 500)], input_sizes=[(532, 280)])
    shown = readable(answer, "qwen2.5-vl", detections, pictures=1)  # "... [2 boxes on Picture 1: cat, cup]"
    annotated = draw(picture, [d for d in detections if d.image == 1])  # tags never over one another

What it cannot know:

- which image a box is on, beyond a tool call's ``img_idx`` and "Picture N" /
  "Image N" / 图N mentions before the box in the answer (see :func:`parse`); with
  none it picks the last image. A box that names a picture that does not exist
  (``img_idx`` past the last one, "Picture 5" of 2, "Picture 0") is never drawn on
  another: ``parse`` leaves it out and ``readable(..., pictures=2)`` flags it,
  ``the cat [box on Picture 5 — there is no Picture 5]``. Numbers above 99 (and the
  number of pictures) name none ("an image 1024 pixels wide");
- where a ref begins in the bare stripped form (the label is a guess: the few
  words before the numbers);
- whether a box is right: only that it is well-formed. Boxes are clipped to the
  image; those left with no area, points outside the image, and half-written
  groundings (streaming, max_new_tokens) are dropped;
- the model's input size: the caller gives it (``image_grid_thw`` × patch size).
"""

from grounding.draw import PALETTE, draw, label_color, label_colors
from grounding.families import FAMILIES, family_from_model_type
from grounding.parse import find_groundings, parse
from grounding.readable import readable
from grounding.types import Detection

__all__ = [
    "FAMILIES",
    "PALETTE",
    "Detection",
    "draw",
    "family_from_model_type",
    "find_groundings",
    "label_color",
    "label_colors",
    "parse",
    "readable",
]
