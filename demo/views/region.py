"""A question about a region, shown: its picture with the region drawn, under the question in the chat.

The question's words say the region readably (`demo.record.region`); this shows where it is, drawn
as the chat draws an answer's boxes (`demo.views.annotations.annotated_image`): one box, labelled
with the region's label or "asked about". Pure but for the drawing's file, made once.
"""

from __future__ import annotations

from demo.record.conversation import Conversation
from demo.views.annotations import annotated_image
from grounding import Detection


def region_messages(conversation: Conversation, index: int, fit: tuple[int, int]) -> list[dict]:
    """The chat's message showing turn `index`'s region on its picture (within `fit`), or none."""
    region = conversation.turns[index].region
    pictures = conversation.images_until(index)
    if region is None or not 1 <= region.picture <= len(pictures):
        return []
    box = Detection(label=region.label or "asked about", image=region.picture, bbox=tuple(float(v) for v in region.box))
    path = annotated_image(pictures[region.picture - 1], [box], fit, lossless=False)
    return [{"role": "user", "content": {"path": path, "alt_text": f"Picture {region.picture}, the region asked about"}}]
