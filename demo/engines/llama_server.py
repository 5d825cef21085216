"""What the app learns from a llama.cpp server (`llama-server`) before its first picture.

llama.cpp resizes every picture by its own rule (`tools/mtmd`: `calc_size_preserved_ratio`, the
same smart resize as Qwen's processors, sides in multiples of patch × merge) between a least and
a greatest number of picture tokens: 8 and 4096 for Qwen2-VL, Qwen2.5-VL and Qwen3-VL unless the
server was started with `--image-min-tokens` / `--image-max-tokens` (it advises
`--image-min-tokens 1024` for grounding). A picture the app already resized within those bounds
is kept exactly as sent, so the boxes' pixels (Qwen2.5-VL answers in the pixels it saw) are the
app's. The app's own least (`OpenAIEngine`: 8 tokens) is llama.cpp's default; a server started
with a larger one would enlarge the app's small pictures, and no endpoint says so (`/props`
lists the modalities, not these bounds). So `picture_floor_tokens` measures it: the prompt
length of one small square picture against the same prompt without it.

What it does not know: the server's greatest bound (measuring it would encode a picture of the
app's largest size at start-up; the app's 1280-token default is below llama.cpp's 4096, keep
`--image-max-tokens` at least that, or lower the app's `--max-pixels` to match).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import urllib.request

from PIL import Image

log = logging.getLogger(__name__)

def is_llama_server(base_url: str, timeout: float = 5.0) -> bool:
    """True when the server at `base_url` (…/v1) answers llama-server's own `/props` endpoint."""
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{root}/props", timeout=timeout) as response:
            props = json.load(response)
    except (OSError, ValueError):  # down, not llama.cpp (404), not JSON: nothing learnt
        return False
    return isinstance(props, dict) and "build_info" in props and "modalities" in props


def _square(side: int) -> dict:
    """A grey square picture of `side` pixels, as an image part."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (128, 128, 128)).save(buffer, format="PNG")
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")}}


def picture_floor_tokens(client, model: str, factor: int, tokens: int) -> int:
    """The least visual tokens a picture must have for the server to keep it as sent: `tokens` when
    it keeps a square of that many (rounded up to a square number), else the square number it
    enlarges such a square to, which covers its own least. `client`: an `openai.OpenAI` on it.

    The prompt's length with a square of k × k tokens, then (k + 1) × (k + 1), at the same place
    in the same words: kept as sent, the second has 2k + 1 tokens more; enlarged to the server's
    least, both have the same. Then the words alone give a side surely above that least, and one
    picture of that side, kept as sent, tells the enlarged square's tokens exactly (what the
    words and the picture's frame cost differs by tokenizer: it cancels out). One-token answers,
    `cache_prompt: false` so that nothing is reused between them.
    """
    side = math.isqrt(tokens - 1) + 1 if tokens > 1 else 1  # a square of at least `tokens` tokens

    def prompt_tokens(*picture: dict) -> int:
        content = [{"type": "text", "text": "Picture 1: "}, *picture, {"type": "text", "text": "?"}]
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}], max_tokens=1, temperature=0,
            extra_body={"cache_prompt": False},
        )
        return answer.usage.prompt_tokens

    small = prompt_tokens(_square(side * factor))
    if prompt_tokens(_square((side + 1) * factor)) - small == 2 * side + 1:
        return tokens
    above = math.isqrt(small - prompt_tokens()) + 1  # the words cost something: this side is above the enlarged one
    enlarged = above * above - (prompt_tokens(_square(above * factor)) - small)
    grid = math.isqrt(max(enlarged, 0))
    if grid * grid != enlarged or grid <= side:
        raise ValueError(f"the server's picture tokens do not follow llama.cpp's rule (a {side * factor}-pixel square: {enlarged})")
    return enlarged
