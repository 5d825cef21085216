"""One home for each Qwen VL generation's facts: the registry every other module reads.

A :class:`Generation` is a frozen record of what one generation of the model is: which
transformers ``model_type`` values and server model names mean it, its vision patch geometry
(the resize factor), the coordinate space its boxes are written in, the special tokens an
answer must keep, the grounding prompts it was trained on, its video conventions and whether
it thinks before answering. Adding a generation means adding a record here, its tiny
checkpoint (``demo/engines/tiny/``) and its tests.

Pure data and look-ups: no gradio, no torch. It lives in ``grounding`` because that is the
lowest layer (``grounding`` reads the coordinate spaces, ``demo`` reads everything).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

#: The size of the relative coordinate space (0-1000 of the original image).
RELATIVE_SCALE = 1000.0

#: Grounding prompt presets, in the order the page shows them.
PRESETS: tuple[str, ...] = ("Detect categories", "Locate one object", "Point to", "Count by boxes", "Caption with grounding")

# Each preset names the object(s) to find once, marked «like this»: the page selects the marked
# words when it writes a preset, so that typing replaces them.
# Qwen-VL and Qwen2-VL answer box requests with their grounding markup (REFERENCE.md §1, the
# Qwen2-VL model card): "Detect the bounding box of ...", "Generate the caption in English with
# grounding:". Neither has a point format, so "Point to" asks for a box.
_TOKEN_PRESETS = MappingProxyType(
    {
        "Detect categories": "Detect the bounding box of «every cat and every cup».",
        "Locate one object": "Detect the bounding box of «the cat».",
        "Point to": "Detect the bounding box of «the cat», so I can see where it is.",
        "Count by boxes": "Detect the bounding box of «every cup», then tell me how many there are.",
        "Caption with grounding": "Generate the caption in English with grounding:",
    }
)
# Qwen2.5-VL, Qwen3-VL and Qwen3.5 answer JSON when asked for it (the official cookbooks'
# spatial-understanding prompts).
_JSON_PRESETS = MappingProxyType(
    {
        "Detect categories": "Locate every instance that belongs to the following categories: '«cat, cup»'. "
        "Report bbox coordinates in JSON format.",
        "Locate one object": "Locate «the cat», output its bbox coordinates using JSON format.",
        "Point to": "Point to «the cat», output its coordinates in JSON format.",
        "Count by boxes": "Output the bbox of «every cup» in JSON format first, then count them.",
        "Caption with grounding": "Describe the image in detail. Then output the bbox of every object you mentioned, "
        "with its label, in JSON format.",
    }
)

# The first 14 added tokens of every Qwen vocabulary since Qwen2 (ids 151643..151656 in
# Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's; 248044..248057 in Qwen3.5's), all special.
QWEN2_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen2-VL's grounding markers: special tokens an engine must keep in the answer text.
QWEN2_VL_MARKERS = QWEN2_SPECIALS[3:9]
QWEN_VL_MARKERS = ("<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>")
REASONING_TAGS = ("<think>", "</think>")
TOOL_CALL_TAGS = ("<tool_call>", "</tool_call>")

VideoTiming = Literal["none", "absolute-time", "timestamps"]
Thinking = Literal["none", "checkpoint", "switch"]


@dataclass(frozen=True)
class Generation:
    """What one Qwen VL generation is, for every part of the app.

    Attributes:
        family: the short name used everywhere (``"qwen2.5-vl"``).
        title: how the page names it (``"Qwen2.5-VL"``).
        model_types: transformers ``config.model_type`` values (checkpoints and their text parts).
        name_pattern: a regular expression matching the generation in a server's model name
            (lower-cased; tried newest generation first).
        patch_size / merge_size: the vision patch side and the spatial merge; sides of every
            image and video frame are multiples of their product, and each token covers
            ``merge_size**2`` patches.
        relative: True when boxes are 0-1000 of the original image; False when they are
            absolute pixels of the resized image the model saw (Qwen2.5-VL).
        bare_form: decoding with ``skip_special_tokens=True`` strips this generation's markers,
            leaving ``label(x1,y1),(x2,y2)``, which the parser then reads.
        keep_tokens: special tokens an answer keeps when the others are removed.
        presets: grounding prompt per name of :data:`PRESETS`, in the shape it was trained on.
        has_points: it answers "point to" requests with points.
        video_timing: how the model knows when a frame was: not at all (``"none"``, Qwen2-VL),
            by temporal positions aligned to absolute time (``"absolute-time"``, Qwen2.5-VL's
            ``second_per_grid_ts``), or by ``<t seconds>`` text before each frame pair
            (``"timestamps"``, Qwen3-VL, Qwen3.5).
        thinking: ``"none"``; ``"checkpoint"`` (Thinking checkpoints always reason, Instruct ones
            never: Qwen3-VL); ``"switch"`` (the chat template's ``enable_thinking`` turns it on or
            off: Qwen3.5).
        tiny_checkpoints: the ``--model`` names of its offline tiny random checkpoints
            (``demo/engines/tiny/``), the main one first (Qwen3-VL also has a Thinking one).
        local: transformers can run it in this process (Qwen-VL needs remote code: servers only).
    """

    family: str
    title: str
    model_types: tuple[str, ...]
    name_pattern: str
    patch_size: int
    merge_size: int
    relative: bool
    bare_form: bool = False
    keep_tokens: tuple[str, ...] = ()
    presets: Mapping[str, str] = field(default_factory=lambda: _JSON_PRESETS)
    has_points: bool = True
    video_timing: VideoTiming = "none"
    thinking: Thinking = "none"
    tiny_checkpoints: tuple[str, ...] = ()
    local: bool = True

    @property
    def tiny_checkpoint(self) -> str | None:
        """The main tiny checkpoint's ``--model`` name, if any."""
        return self.tiny_checkpoints[0] if self.tiny_checkpoints else None

    @property
    def resize_factor(self) -> int:
        """Sides of images and frames are multiples of this: 28 (patch 14) or 32 (patch 16)."""
        return self.patch_size * self.merge_size


GENERATIONS: tuple[Generation, ...] = (
    Generation(
        family="qwen-vl",
        title="Qwen-VL",
        model_types=("qwen", "qwen_vl"),
        name_pattern=r"qwen[-_.]?vl",
        patch_size=14,
        merge_size=2,
        relative=True,
        bare_form=True,
        keep_tokens=QWEN_VL_MARKERS,
        presets=_TOKEN_PRESETS,
        has_points=False,
        local=False,
    ),
    Generation(
        family="qwen2-vl",
        title="Qwen2-VL",
        model_types=("qwen2_vl", "qwen2_vl_text"),
        name_pattern=r"qwen2[-_.]?vl",
        patch_size=14,
        merge_size=2,
        relative=True,
        bare_form=True,
        keep_tokens=QWEN2_VL_MARKERS,
        presets=_TOKEN_PRESETS,
        has_points=False,
        tiny_checkpoints=("tiny-random",),
    ),
    Generation(
        family="qwen2.5-vl",
        title="Qwen2.5-VL",
        model_types=("qwen2_5_vl", "qwen2_5_vl_text"),
        name_pattern=r"qwen2[-_.]?5[-_.]?vl",
        patch_size=14,
        merge_size=2,
        relative=False,
        keep_tokens=TOOL_CALL_TAGS,
        video_timing="absolute-time",
        tiny_checkpoints=("tiny-random-qwen2.5-vl",),
    ),
    Generation(
        family="qwen3-vl",
        title="Qwen3-VL",
        model_types=("qwen3_vl", "qwen3_vl_text", "qwen3_vl_moe", "qwen3_vl_moe_text"),
        name_pattern=r"qwen3[-_.]?vl",
        patch_size=16,
        merge_size=2,
        relative=True,
        keep_tokens=REASONING_TAGS + TOOL_CALL_TAGS,
        video_timing="timestamps",
        thinking="checkpoint",
        tiny_checkpoints=("tiny-random-qwen3-vl", "tiny-random-qwen3-vl-thinking"),
    ),
    Generation(
        family="qwen3.5",
        title="Qwen3.5",
        model_types=("qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text"),
        # Qwen3.5 and every later Qwen3.x (3.6, 3.8...) are natively multimodal: no "VL" in their names.
        # The minor version is one digit of 5-9 not followed by a size ("Qwen3-8B" is a text Qwen3),
        # and an Omni name is not this app's format.
        name_pattern=r"qwen3[-_.]?[5-9](?![\d.]*b)(?!\d)(?!.*omni)",
        patch_size=16,
        merge_size=2,
        relative=True,
        keep_tokens=REASONING_TAGS + TOOL_CALL_TAGS,
        video_timing="timestamps",
        thinking="switch",
        tiny_checkpoints=("tiny-random-qwen3.5",),
    ),
    # transformers' `qwen4_exp` (models/qwen4_exp/), published as Qwen3.8-Flash-Next: Qwen3.5-MoE's
    # classes with hyper-connections, QSA sparse attention, Per-Layer n-gram Embeddings. Its vision
    # tower, processor (`Qwen3VLProcessor`) and tokenizer (`Qwen3_5Tokenizer`) are Qwen3.5's, so are
    # its patch geometry, video timestamps and vision token ids; its boxes are taken to be Qwen3.5's
    # 0-1000 (no source says otherwise), its thinking the `enable_thinking` switch of its template.
    Generation(
        family="qwen4-exp",
        title="Qwen4-Exp",
        model_types=("qwen4_exp", "qwen4_exp_text"),
        name_pattern=r"qwen4[-_.]?exp|qwen3[-_.]?8[-_.]?flash[-_.]?next",
        patch_size=16,
        merge_size=2,
        relative=True,
        keep_tokens=REASONING_TAGS + TOOL_CALL_TAGS,
        video_timing="timestamps",
        thinking="switch",
        tiny_checkpoints=("tiny-random-qwen4-exp",),
    ),
)

#: Family names, oldest first.
FAMILIES: tuple[str, ...] = tuple(g.family for g in GENERATIONS)
#: The family assumed before a model has loaded (the default model's).
DEFAULT_FAMILY = "qwen2-vl"

_BY_FAMILY = {g.family: g for g in GENERATIONS}
_BY_MODEL_TYPE = {t: g for g in GENERATIONS for t in g.model_types}
_BY_TINY_NAME = {name: g for g in GENERATIONS for name in g.tiny_checkpoints}
#: Every ``--model`` name of an offline tiny checkpoint, oldest generation first.
TINY_CHECKPOINTS: tuple[str, ...] = tuple(_BY_TINY_NAME)
#: The resize factor assumed before a model has loaded (the default model's: 28).
DEFAULT_RESIZE_FACTOR: int = _BY_FAMILY[DEFAULT_FAMILY].resize_factor


def generation(family: str) -> Generation:
    """The record of ``family``; ValueError for an unknown name."""
    try:
        return _BY_FAMILY[family]
    except (KeyError, TypeError):
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}") from None


def check_family(family: str) -> str:
    """Return ``family`` unchanged if known; raise ValueError otherwise."""
    return generation(family).family


def family_from_model_type(model_type: str) -> str:
    """The family of a transformers ``config.model_type`` (case and ``-``/``_`` ignored).

    >>> family_from_model_type("qwen2_5_vl")
    'qwen2.5-vl'

    Raises ValueError for anything else, including Qwen models without vision (``qwen2``, ``qwen3``).
    """
    if not isinstance(model_type, str):
        raise ValueError(f"model_type must be a string, not {type(model_type).__name__}")
    key = model_type.strip().lower().replace("-", "_")
    if key not in _BY_MODEL_TYPE:
        known = ", ".join(sorted(_BY_MODEL_TYPE))
        raise ValueError(f"unknown model_type {model_type!r}; known: {known}")
    return _BY_MODEL_TYPE[key].family


def family_from_name(name: str) -> str | None:
    """The family named by a model id or path ("Qwen/Qwen2.5-VL-7B-Instruct" -> "qwen2.5-vl"), or None.

    The last part of a path decides, else the whole; the newest generation whose pattern
    matches wins, so "qwen2.5-vl" is never read as "qwen2-vl".
    """
    whole = name.strip().rstrip("/").lower()
    last = whole.rsplit("/", 1)[-1]
    for text in (last, whole):
        for g in reversed(GENERATIONS):
            if re.search(g.name_pattern, text):
                return g.family
    return None


def tiny_checkpoint_family(name: str) -> str | None:
    """The family of a ``--model`` name of a tiny checkpoint ("tiny-random-qwen3-vl"), else None."""
    g = _BY_TINY_NAME.get(name)
    return g.family if g else None


def grounding_prompt(preset: str, family: str) -> str:
    """The prompt for ``preset`` (one of :data:`PRESETS`) in ``family``'s shape; ValueError for unknown names."""
    g = generation(family)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    return g.presets[preset]
