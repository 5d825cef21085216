"""Model families, their coordinate spaces, and the mapping from transformers' model_type."""

from __future__ import annotations

from typing import Literal

Family = Literal["qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl"]

#: The family strings :func:`grounding.parse` accepts, oldest first.
FAMILIES: tuple[str, ...] = ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl")

#: Families whose numbers are relative, 0-1000 of the original image. The others
#: (Qwen2.5-VL) write absolute pixels of the resized image the model saw.
RELATIVE_FAMILIES: frozenset[str] = frozenset({"qwen-vl", "qwen2-vl", "qwen3-vl"})

#: The size of the relative coordinate space.
RELATIVE_SCALE = 1000.0

#: Families whose special tokens are often stripped by decoding with
#: ``skip_special_tokens=True``, leaving the bare ``label(x1,y1),(x2,y2)`` form.
BARE_FORM_FAMILIES: frozenset[str] = frozenset({"qwen-vl", "qwen2-vl"})

_MODEL_TYPES: dict[str, str] = {
    "qwen": "qwen-vl",  # Qwen-VL / Qwen-VL-Chat (remote code)
    "qwen_vl": "qwen-vl",
    "qwen2_vl": "qwen2-vl",
    "qwen2_vl_text": "qwen2-vl",
    "qwen2_5_vl": "qwen2.5-vl",
    "qwen2_5_vl_text": "qwen2.5-vl",
    "qwen3_vl": "qwen3-vl",
    "qwen3_vl_text": "qwen3-vl",
    "qwen3_vl_moe": "qwen3-vl",
    "qwen3_vl_moe_text": "qwen3-vl",
}


def check_family(family: str) -> str:
    """Return ``family`` unchanged if known; raise ValueError otherwise."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    return family


def family_from_model_type(model_type: str) -> str:
    """The family string for a transformers ``config.model_type``.

    >>> family_from_model_type("qwen2_5_vl")
    'qwen2.5-vl'

    Case and ``-``/``_`` are ignored. Raises ValueError for anything else, including
    Qwen models without grounding (``qwen2``, ``qwen3``).
    """
    if not isinstance(model_type, str):
        raise ValueError(f"model_type must be a string, not {type(model_type).__name__}")
    key = model_type.strip().lower().replace("-", "_")
    try:
        return _MODEL_TYPES[key]
    except KeyError:
        known = ", ".join(sorted(_MODEL_TYPES))
        raise ValueError(f"unknown model_type {model_type!r}; known: {known}") from None
