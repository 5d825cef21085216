"""Making untrusted text inert for the Chatbot's Markdown renderer.

Model answers, questions and file names are shown as text: HTML tags appear as written and
never run, and Markdown images (which a browser would fetch) appear as text too. Code spans
and fenced blocks are left alone: the renderer already shows their content literally.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]*`)", re.S)


def inert(text: str) -> str:
    """Markdown that shows `text` as text: no HTML runs, no image is fetched."""
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):  # the even parts are outside code
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("![", "!\\[")
    return "".join(parts)


def table_cell(text: str) -> str:
    """`text` inert and on one line, safe inside a Markdown table cell."""
    return inert(text.replace("|", "/").replace("\n", " ").strip())
