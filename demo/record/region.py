"""A question about a region of a picture: the region as the record keeps it, and as people write it.

A `Region` is a box on one picture of the conversation, in that picture's pixels (its size as sent,
the space the inspector and the chat show boxes in), with an optional label. The person sees and
writes it readably, before the question:

    About Picture 1 (120, 40)–(300, 220): what is this?
    About "the cat" in Picture 1 (120, 40)–(300, 220): what is it doing?

which is what the inspector's "Ask about this box" writes in the textbox, what the chat shows and
what Undo and an edit give back. `split_region` reads that form once, where a message comes in (the
handlers), into `Turn.region` and the question; the model never gets the readable form but its own
(`grounding.region_prompt`, written by `conversation.to_model_messages`), so nobody types or sees a
special token. Knows nothing of Gradio or of any engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from grounding.region_prompt import clean_label, region_question

_READABLE = re.compile(
    r"""\s*about\s+(?:"(?P<label>[^"\n]{1,80})"\s+in\s+)?picture\s+(?P<picture>\d{1,4})\s*
    \(\s*(?P<x1>\d{1,5})\s*,\s*(?P<y1>\d{1,5})\s*\)\s*[–—-]\s*\(\s*(?P<x2>\d{1,5})\s*,\s*(?P<y2>\d{1,5})\s*\)\s*(?:px\s*)?:[ \t]*""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True)
class Region:
    """A box on Picture `picture` (1-based, over the conversation): (x1, y1, x2, y2) in its pixels."""

    picture: int
    box: tuple[int, int, int, int]
    label: str = ""


def readable(region: Region) -> str:
    """'About Picture 1 (120, 40)–(300, 220)', or with a label 'About "cat" in Picture 1 (…)–(…)'."""
    x1, y1, x2, y2 = region.box
    about = f'About "{region.label}" in ' if region.label else "About "
    return f"{about}Picture {region.picture} ({x1}, {y1})–({x2}, {y2})"


def with_question(region: Region | None, text: str) -> str:
    """The question as the person reads and writes it: the region's readable form, a colon, the words."""
    return f"{readable(region)}: {text}" if region is not None else text


def split_region(text: str) -> tuple[Region | None, str]:
    """(the region written at the start of `text`, the rest): (None, `text`) when it starts with none.

    Forgiving with the person's typing: case, spaces, a hyphen for the dash, corners in any order.
    """
    found = _READABLE.match(text or "")
    if found is None:
        return None, text
    x1, y1, x2, y2 = (int(found[k]) for k in ("x1", "y1", "x2", "y2"))
    box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
    return Region(int(found["picture"]), box, clean_label(found["label"] or "")), text[found.end() :]


def check_region(region: Region, sizes: list[tuple[int, int]]) -> None:
    """ValueError, with one sentence, when `region` is no box inside a picture; `sizes`: each Picture's
    (width, height) as sent, in Picture order."""
    if not 1 <= region.picture <= len(sizes):
        count = f"it has {len(sizes)}" if sizes else "it has none"
        raise ValueError(f"The question is about Picture {region.picture}, and there is no such picture in this conversation ({count}).")
    width, height = sizes[region.picture - 1]
    x1, y1, x2, y2 = region.box
    if not (x2 > x1 and y2 > y1 and x2 <= width and y2 <= height):
        raise ValueError(f"({x1}, {y1})–({x2}, {y2}) is not a box inside Picture {region.picture}, which is {width}×{height} px.")


def model_text(
    region: Region | None, text: str, family: str, image_wh: tuple[int, int] | None, input_wh: tuple[int, int] | None
) -> str:
    """The question as the model reads it: the region in `family`'s format and coordinates
    (`input_wh`, the picture as the model sees it, for Qwen2.5-VL's pixels), then `text`. Without
    a family or the picture's size, the readable form."""
    if region is None:
        return text
    if not family or image_wh is None:
        return with_question(region, text)
    return region_question(family, region.picture, region.box, image_wh, input_wh or image_wh, text, region.label)
