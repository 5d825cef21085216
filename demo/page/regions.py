"""The inspector's "Ask about this box" and "Zoom into this box": plain functions from what is selected
to the textbox's new value.

The box is the one selected in the inspector: one of the model's (clicked on the picture, in the
list or in the answer), a reference box, or one the person drew ("Draw a box", or Shift+drag:
`demo/page/inspector.js`). Asking writes its readable form before the question being typed
(`demo.record.region`: "About Picture 1 (120, 40)–(300, 220): "), which the handlers turn into the
question's region when it is sent. Zooming cuts the box out of the picture as the model's own zoom
does (`grounding.zoom`'s geometry, `demo.page.zooming`'s crop and file) and attaches the crop to the
message, named after where it comes from, so it is sent as the next Picture like any upload.
Knows nothing of Gradio.
"""

from __future__ import annotations

import math

from demo.page.zooming import crop_picture, save_crop
from demo.record.conversation import Conversation
from demo.record.region import Region, split_region, with_question
from demo.views.inspector import Inspection
from grounding.zoom import crop_region_xyxy


def drawn_box(value: object, width: int, height: int) -> tuple[int, int, int, int] | None:
    """A box the page says was drawn (four numbers, picture pixels) in whole pixels inside a
    `width`×`height` picture; None for anything else, or for a box under a pixel wide or high."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    x1, x2 = sorted(min(max(round(v), 0), width) for v in value[0::2])
    y1, y2 = sorted(min(max(round(v), 0), height) for v in value[1::2])
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def selected_region(shown: Inspection) -> Region | None:
    """The box selected in the inspector as a region of its picture (whole pixels, its label), or
    None: nothing selected, or a point."""
    view = shown.view
    selected, number = view.get("selected"), shown.picture
    if not selected or not number or not view.get("width"):
        return None
    if selected == "drawn":
        box, label = view.get("drawn"), ""
    else:
        item = next((i for i in [*view.get("items", []), *view.get("references", [])] if i["id"] == selected), None)
        box, label = (item.get("box"), item.get("label") or "") if item else (None, "")
    whole = drawn_box(box, view["width"], view["height"]) if box else None
    return Region(number, whole, label) if whole else None


def ask_message(region: Region, message: dict | None) -> dict:
    """The textbox with `region` written before the question being typed (a region written there
    before is replaced); its files stay."""
    message = message or {}
    _, text = split_region(message.get("text") or "")
    return {"text": with_question(region, text.lstrip()), "files": list(message.get("files") or [])}


def zoom_message(region: Region, conversation: Conversation, message: dict | None) -> dict:
    """The textbox with a crop of `region` attached after its files (its text stays): the region
    widened and enlarged as Qwen's zoom tool does, in a PNG named "crop of Picture N at (…)–(…)".

    Raises:
        ValueError: the region's picture is not in the conversation, or the box has no area in it.
        UploadError, OSError: the picture cannot be read again.
    """
    pictures = conversation.images()
    if not 1 <= region.picture <= len(pictures):
        raise ValueError(f"there is no Picture {region.picture} in this conversation")
    source = pictures[region.picture - 1]
    cut = crop_region_xyxy(region.box, source.size_wh)
    x1, y1, x2, y2 = cut
    path = save_crop(crop_picture(source, cut), source, cut, f"crop of Picture {region.picture} at ({x1}, {y1})–({x2}, {y2})")
    message = message or {}
    return {"text": message.get("text") or "", "files": [*(message.get("files") or []), str(path)]}
