"""Grounding prompts that work, in the shapes each model family was trained on.

From the official cookbooks and evaluation code (see shared/REFERENCE.md): Qwen-VL and
Qwen2-VL answer box requests with their grounding tokens; Qwen2.5-VL and Qwen3-VL answer
JSON when asked for it. The objects named ('cat, cup', 'the cat') are placeholders for the
person to edit.
"""

from __future__ import annotations

PRESETS = ("Detect categories", "Locate one object", "Point to", "Count by boxes", "Caption with grounding")

_TOKEN_FAMILIES = {
    "Detect categories": "Detect the bounding box of every cat and every cup.",
    "Locate one object": "Detect the bounding box of the cat.",
    "Point to": "Detect the bounding box of the cat, so I can see where it is.",
    "Count by boxes": "Detect the bounding box of every cup, then tell me how many there are.",
    "Caption with grounding": "Generate the caption in English with grounding:",
}
_JSON_FAMILIES = {
    "Detect categories": "Locate every instance that belongs to the following categories: 'cat, cup'. "
    "Report bbox coordinates in JSON format.",
    "Locate one object": "Locate the cat, output its bbox coordinates using JSON format.",
    "Point to": "Point to the cat, output its coordinates in JSON format.",
    "Count by boxes": "Output the bbox of every cup in JSON format first, then count them.",
    "Caption with grounding": "Describe the image in detail. Then output the bbox of every object you mentioned, "
    "with its label, in JSON format.",
}
_BY_FAMILY = {"qwen-vl": _TOKEN_FAMILIES, "qwen2-vl": _TOKEN_FAMILIES, "qwen2.5-vl": _JSON_FAMILIES, "qwen3-vl": _JSON_FAMILIES}


def grounding_prompt(preset: str, family: str) -> str:
    """The prompt for `preset` (one of PRESETS) in `family`'s shape. Raises ValueError for unknown names."""
    if family not in _BY_FAMILY:
        raise ValueError(f"unknown family {family!r}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    return _BY_FAMILY[family][preset]
