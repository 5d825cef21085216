"""The zoom loop's app side: a call to the zoom tool in an answer becomes a crop sent back.

When the model (one whose engine `zooms`, with the setting on) ends a round of its answer with a
call to `image_zoom_in_tool` (`grounding.zoom`), `zoom_from_call` crops the named picture there:
the box is read in the generation's coordinate space by `grounding.parse` (``img_idx`` names the
picture, crops of earlier zooms included), the region is cut from the picture as sent (decoded
again from the upload at full size) and enlarged as Qwen-Agent's tool does, and the crop becomes
a picture of the conversation (`Turn.zooms`) that the handlers send back as the tool's answer
before the answer goes on. `MAX_ZOOMS` bounds the crops of one answer. The person's own "Zoom into
this box" (`demo.page.regions`) cuts and saves its crop with the same `crop_picture` and `save_crop`.
Knows nothing of Gradio.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from PIL import Image

from demo.media.errors import UploadError
from demo.media.pictures import load_picture
from demo.record.conversation import Attachment, Conversation, Turn, Zoom
from demo.record.sessions import folder_of
from demo.views.annotations import ANNOTATED_DIR
from grounding import parse
from grounding.zoom import crop_region_xyxy, crop_size_wh, find_zoom_calls

log = logging.getLogger(__name__)

CROPS_DIR = ANNOTATED_DIR.parent / "crops"  # for pictures in no session's folder


def zoom_from_call(conversation: Conversation, turn: Turn, start: int, family: str) -> Zoom | None:
    """The zoom asked for by the first complete zoom call in `turn.answer[start:]` (the round just
    written), with its crop made; None when there is none, or when its box names no region of a
    picture (then the answer stays as the model wrote it)."""
    spans = find_zoom_calls(turn.answer[start:])
    if not spans:
        return None
    call_start, call_end = (start + i for i in spans[0])
    pictures = conversation.images()
    sizes = [a.size_wh for a in pictures]
    inputs = turn.input_sizes if len(turn.input_sizes) == len(pictures) else sizes
    found = [d for d in parse(turn.answer[call_start:call_end], family, sizes, inputs) if d.bbox is not None]
    if not found:
        log.info("a zoom call with no box on a picture: %r", turn.answer[call_start:call_end][:200])
        return None
    box = found[0]
    source = pictures[box.image - 1]
    try:
        region = crop_region_xyxy(box.bbox, source.size_wh)
        crop = crop_picture(source, region)
    except (ValueError, UploadError) as e:
        log.info("the zoom's crop could not be made: %s", e)
        return None
    name = f"crop of Picture {box.image}"
    attachment = Attachment(path=str(save_crop(crop, source, region)), image=crop, name=name)
    return Zoom(at=call_end, source=box.image, region_xyxy=region, attachment=attachment, reasoning=turn.reasoning)


def crop_picture(source: Attachment, region: tuple[int, int, int, int]) -> Image.Image:
    """`region` (pixels of the picture as sent) cut from the upload decoded whole (the kept picture when
    the upload is gone), enlarged to the tool's size."""
    try:
        whole, _ = load_picture(source.path, source.name or None, keep_all=True)
    except (UploadError, OSError):
        whole = source.image
    scale_x, scale_y = whole.width / source.size_wh[0], whole.height / source.size_wh[1]
    left, top, right, bottom = region
    cut = whole.crop((round(left * scale_x), round(top * scale_y), round(right * scale_x), round(bottom * scale_y)))
    return cut.resize(crop_size_wh((right - left, bottom - top)), Image.Resampling.BICUBIC)


def save_crop(crop: Image.Image, source: Attachment, region: tuple[int, int, int, int], name: str = "") -> Path:
    """The crop as a PNG beside its session's files (shown in the chat, saved with the conversation);
    `name` (without ".png") names the file, in a folder of its own, where the file's name is what
    the person reads (an upload's name is its file's)."""
    session = folder_of(source.path)
    folder = session / "crops" if session is not None else CROPS_DIR
    key = hashlib.sha256(f"{source.path}|{region}|{crop.size}".encode()).hexdigest()[:16]
    if name:
        folder = folder / key
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{name}.png" if name else f"crop-{key}.png")
    if not path.exists():
        partial = path.with_suffix(".tmp")
        crop.save(partial, format="PNG")
        partial.replace(path)
    return path
