"""What the app learns from a llama.cpp server (`llama-server`) before its first picture.

llama.cpp resizes every picture by its own rule (`tools/mtmd`: `calc_size_preserved_ratio`, the
same smart resize as Qwen's processors, sides in multiples of patch × merge) between a least and
a greatest number of picture tokens: 8 and 4096 for Qwen2-VL, Qwen2.5-VL and Qwen3-VL unless the
server was started with `--image-min-tokens` / `--image-max-tokens` (it advises
`--image-min-tokens 1024` for grounding). A picture the app already resized within those bounds
is kept exactly as sent, so the boxes' pixels (Qwen2.5-VL answers in the pixels it saw) are the
app's. The app's own least (`OpenAIEngine`: 8 tokens) is llama.cpp's default; a server started
with a larger one would enlarge the app's small pictures, and no endpoint says so (`/props`
lists the modalities, not these bounds). So `picture_floor_tokens` measures it, from the prompt
lengths the server reports for a few small pictures.

What it does not know: the server's greatest bound (measuring it would encode a picture of the
app's largest size at start-up; the app's 1280-token default is below llama.cpp's 4096, keep
`--image-max-tokens` at least that, or lower the app's `--max-pixels` to match).
"""

from __future__ import annotations

import base64
import io
import json
import math
import urllib.request

from PIL import Image


def is_llama_server(base_url: str, timeout: float = 5.0) -> bool:
    """True when the server at `base_url` (…/v1) answers llama-server's own `/props` endpoint."""
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{root}/props", timeout=timeout) as response:
            props = json.load(response)
    except (OSError, ValueError):  # down, not llama.cpp (404), not JSON: nothing learnt
        return False
    return isinstance(props, dict) and "build_info" in props and "modalities" in props


def image_part(image: Image.Image) -> dict:
    """An OpenAI `image_url` part carrying `image` as a PNG data URL, as every server here is sent pictures."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")}}


def _picture(width: int, height: int) -> dict:
    """A grey picture, as an image part."""
    return image_part(Image.new("RGB", (width, height), (128, 128, 128)))


def picture_floor_tokens(client, model: str, factor: int, tokens: int) -> int:
    """The least visual tokens a picture must have for the server to keep it as sent: `tokens` when
    it keeps a picture of that many, else a number of tokens at least its own least (the square it
    enlarges a small square to). `client`: an `openai.OpenAI` on the server.

    Kept as sent, pictures of r × c, r × (c + 1) and r × (c + 2) tokens (r × c = `tokens`) make
    prompts r tokens apart, at the same place in the same words; one the server enlarges breaks
    that. Then: the words alone give a side surely above the server's least, and a square of that
    side, kept as sent, against a small square it enlarged, tells the enlarged square's tokens
    exactly (what the words and a picture's frame cost differs by tokenizer: it cancels out).
    One-token answers, `cache_prompt: false` so that nothing is reused between them.
    """

    def prompt_tokens(*picture: dict) -> int:
        content = [{"type": "text", "text": "Picture 1: "}, *picture, {"type": "text", "text": "?"}]
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}], max_tokens=1, temperature=0,
            extra_body={"cache_prompt": False},
        )
        return answer.usage.prompt_tokens

    rows = max(d for d in range(1, math.isqrt(tokens) + 1) if tokens % d == 0)
    lengths = [prompt_tokens(_picture((tokens // rows + more) * factor, rows * factor)) for more in (0, 1, 2)]
    if lengths[1] - lengths[0] == lengths[2] - lengths[1] == rows:
        return tokens
    side = math.isqrt(tokens - 1) + 1  # a square of at least `tokens` tokens
    small = prompt_tokens(_picture(side * factor, side * factor))
    above = math.isqrt(small - prompt_tokens()) + 1  # the words cost something: a side above the enlarged square's
    enlarged = above * above - (prompt_tokens(_picture(above * factor, above * factor)) - small)
    grid = math.isqrt(max(enlarged, 0))
    if grid * grid != enlarged or grid < side:
        raise ValueError(f"the server's picture tokens do not follow llama.cpp's rule (a {side * factor}-pixel square: {enlarged})")
    return enlarged
