"""What the page says and how it looks and behaves, beside its components (demo/page/ui.py).

The title line, the empty chat's hint and examples, the preset buttons' texts, the page's CSS
(demo/page/page.css) and the small JavaScript Gradio runs in the page for one event (Save's download);
demo/page/page.js is run by the intro element (see `build_ui`). Knows no handler and no model.
"""

from __future__ import annotations

import os
from pathlib import Path

from grounding.generations import generation

TITLE = "Qwen VL chat"
HERE = Path(__file__).parent
EXAMPLES_DIR = HERE.parent / "examples"
#: Gradio's Share buttons post to a Hugging Face Spaces discussion: they work on a Space only.
ON_SPACES = bool(os.environ.get("SPACE_ID"))


def page_css(on_spaces: bool = ON_SPACES) -> str:
    """The page's CSS. Off Spaces it hides the per-picture Share buttons, which Gradio's chatbot
    always shows (no parameter turns them off)."""
    no_share = '#chatbot .message-buttons button[aria-label="Share"] { display: none !important; }\n'
    return (HERE / "page.css").read_text("utf-8") + ("" if on_spaces else no_share)


CSS = page_css()
# One click on Save downloads the file the handler wrote (its value arrives as this function's argument).
DOWNLOAD_JS = """(file) => {
  if (!file || !file.url) return;
  const link = Object.assign(document.createElement("a"), {href: file.url, download: file.orig_name || "conversation.json"});
  document.body.append(link); link.click(); link.remove();
}"""


INTRO = (
    f"<h1>{TITLE}</h1><p>Chat with a Qwen vision-language model about pictures and videos: each becomes "
    "<strong>Picture N</strong> or <strong>Video N</strong>, for you and the model alike.</p>"
)
#: What the empty chat says: what the app does and how to start.
HINT = (
    "**Ask a vision-language model about your pictures and videos.** Attach them with the clip "
    "(or drop or paste them), type a question, press Enter. Each becomes *Picture N* or *Video N*; "
    "ask for boxes or points and they are drawn on the picture. Or start with an example:"
)


def limits_tag(image_mb: float, video_mb: float, video_extensions: tuple[str, ...]) -> str:
    """What page.js needs to refuse a file over its size limit when it is attached, not after Send."""
    return (
        f'<div id="qvc-limits" hidden data-image-mb="{image_mb:g}" data-video-mb="{video_mb:g}" '
        f'data-video-extensions="{" ".join(video_extensions)}"></div>'
    )


def examples() -> list[dict]:
    """The examples the empty chat offers: a question and its pictures or video."""
    photo = lambda name: str(EXAMPLES_DIR / name)  # noqa: E731
    return [
        {"text": "What is in Picture 1? Describe it in two sentences.", "files": [photo("chelsea.png")]},
        {"text": "Detect the bounding box of the coffee cup.", "files": [photo("coffee.png")]},
        {"text": "Compare Picture 1 and Picture 2: what do they have in common?", "files": [photo("astronaut.png"), photo("rocket.jpg")]},
        {"text": "What happens in Video 1?", "files": [photo("rocket-launch.mp4")]},
    ]


def preset_label(name: str, family: str) -> str:
    """A preset button's text: its name, or what it asks for when the family cannot do it
    (a family without a point format is asked for a box: "Box to point at")."""
    if name == "Point to" and not generation(family).has_points:
        return "Box to point at"
    return name
