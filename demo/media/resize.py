"""The image resize rule of the Qwen VL processors, in pure Python (no torch, no numpy).

`smart_resize` behaves exactly like transformers'
`transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize` (the rule Qwen2-VL,
Qwen2.5-VL and Qwen3-VL processors apply to every image): both sides become multiples of
`factor` (patch size x merge size), the pixel count is brought within [min_pixels, max_pixels],
and the aspect ratio is kept as closely as those allow. `tests/test_resize.py` checks the
equality against transformers itself.

Each generation's patch size and merge size live in the registry (`grounding.generations`);
`visual_tokens` counts the tokens an image of a given (already resized) size costs.
"""

from __future__ import annotations

import math

#: Visual tokens one picture may cost unless --max-pixels says otherwise, in every engine (Qwen's own
#: advice for a manageable prompt).
DEFAULT_MAX_VISUAL_TOKENS = 1280


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The (height, width) a Qwen VL processor resizes a `height` x `width` image to.

    Note the order: height first, as in transformers. Raises ValueError when the aspect ratio
    is above 200, as transformers does.
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def visual_tokens(input_wh: tuple[int, int], patch: int, merge: int) -> int:
    """The visual tokens of an image the model sees at `input_wh` (width, height, already resized).

    One token per merge x merge block of patch x patch pixels (a still image: temporal grid 1).
    """
    width, height = input_wh
    return (height // patch) * (width // patch) // (merge * merge)
