"""Qwen3-VL's image zoom-in tool: its schema, its calls in an answer, and the crop it asks for.

Qwen3-VL "thinks with images" (QwenLM/Qwen3-VL ``cookbooks/think_with_images.ipynb``): offered
``image_zoom_in_tool``, it writes::

    <tool_call>
    {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [574, 301, 660, 468], "label": "sign", "img_idx": 0}}
    </tool_call>

and expects the crop back as the tool's answer, then goes on. The schema and the crop follow
Qwen-Agent's implementation of the tool (``qwen_agent/tools/image_zoom_in_qwen3vl.py``): a box
of the ``img_idx``-th picture of the conversation (0-based, crops included), a region smaller
than 32 px on a side widened to 32 around its centre, the crop enlarged to at least
256 × 32 × 32 pixels in multiples of 32. The box is in the generation's own coordinate space
(0-1000 for Qwen3-VL; :func:`grounding.parse` places it).

Pure: no Pillow calls here, only numbers and text.
"""

from __future__ import annotations

import json
import math
import re

from grounding.generations import FAMILIES

ZOOM_TOOL_NAME = "image_zoom_in_tool"
# The generations trained to call it (Qwen3-VL's cookbook; Qwen3.5 and its successors keep the tool format).
ZOOM_FAMILIES = frozenset(FAMILIES[FAMILIES.index("qwen3-vl") :])

ZOOM_TOOL: dict = {
    "type": "function",
    "function": {
        "name": ZOOM_TOOL_NAME,
        "description": "Zoom in on a specific region of an image by cropping it based on a bounding box (bbox) and an optional object label",
        "parameters": {
            "type": "object",
            "properties": {
                "bbox_2d": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 4,
                    "maxItems": 4,
                    "description": "The bounding box of the region to zoom in, as [x1, y1, x2, y2], where (x1, y1) is the "
                    "top-left corner and (x2, y2) is the bottom-right corner",
                },
                "label": {"type": "string", "description": "The name or label of the object in the specified bounding box"},
                "img_idx": {"type": "number", "description": "The index of the zoomed-in image (starting from 0)"},
            },
            "required": ["bbox_2d", "label", "img_idx"],
        },
    },
}

LEAST_SIDE = 32  # a region narrower than this is widened around its centre
_FACTOR = 32  # the crop's sides are multiples of this
_LEAST_PIXELS = 256 * 32 * 32
_MOST_PIXELS = 12845056
_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def find_zoom_calls(text: str) -> list[tuple[int, int]]:
    """The spans of complete ``<tool_call>`` blocks in ``text`` that call the zoom tool, in order.

    Forgiving: ``arguments`` may be an object or a JSON string; a block that is not JSON, or calls
    another tool, is not a zoom call. A block still being written is not returned.
    """
    spans = []
    for match in _CALL_RE.finditer(text):
        try:
            call = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if isinstance(call, dict) and call.get("name") == ZOOM_TOOL_NAME:
            spans.append(match.span())
    return spans


def tool_call_text(name: str, arguments: str | dict) -> str:
    """A structured tool call (an OpenAI-compatible server's ``tool_calls``) as the model's own text
    writes it, so one answer holds every round whichever way the server sent it."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            pass  # kept as the server sent it
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def crop_region_xyxy(bbox_xyxy: tuple[float, float, float, float], image_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """The whole-pixel region to crop for a zoom on ``bbox_xyxy`` (pixels of a ``image_wh`` picture):
    clipped to the picture, widened to ``LEAST_SIDE`` around its centre when narrower (as far as the
    picture allows).

    Raises:
        ValueError: a box with no area inside the picture.
    """
    width, height = image_wh
    left, top = max(0.0, bbox_xyxy[0]), max(0.0, bbox_xyxy[1])
    right, bottom = min(float(width), bbox_xyxy[2]), min(float(height), bbox_xyxy[3])
    if right <= left or bottom <= top:
        raise ValueError(f"the box {bbox_xyxy} has no area inside a {width}×{height} picture")
    if min(right - left, bottom - top) < LEAST_SIDE:
        ratio = LEAST_SIDE / min(right - left, bottom - top)
        cx, cy = (left + right) / 2, (top + bottom) / 2
        half_w, half_h = math.ceil((right - left) * ratio / 2), math.ceil((bottom - top) * ratio / 2)
        wide = (max(0, math.floor(cx - half_w)), max(0, math.floor(cy - half_h)), min(width, math.ceil(cx + half_w)), min(height, math.ceil(cy + half_h)))
        if wide[2] - wide[0] > LEAST_SIDE and wide[3] - wide[1] > LEAST_SIDE:
            return wide
    return math.floor(left), math.floor(top), max(math.ceil(right), math.floor(left) + 1), max(math.ceil(bottom), math.floor(top) + 1)


def crop_size_wh(region_wh: tuple[int, int]) -> tuple[int, int]:
    """The size a cropped region is sent at: its aspect kept, sides in multiples of 32, at least
    256 × 32 × 32 pixels (a small region is enlarged) and at most 12,845,056."""
    width, height = region_wh
    w, h = max(_FACTOR, round(width / _FACTOR) * _FACTOR), max(_FACTOR, round(height / _FACTOR) * _FACTOR)
    if w * h > _MOST_PIXELS:
        beta = math.sqrt(width * height / _MOST_PIXELS)
        w, h = math.floor(width / beta / _FACTOR) * _FACTOR, math.floor(height / beta / _FACTOR) * _FACTOR
    elif w * h < _LEAST_PIXELS:
        beta = math.sqrt(_LEAST_PIXELS / (width * height))
        w, h = math.ceil(width * beta / _FACTOR) * _FACTOR, math.ceil(height * beta / _FACTOR) * _FACTOR
    return w, h
