"""Untrusted text as Markdown that the Chatbot shows as text: no HTML, no link, no fetch.

Questions, answers, file names, grounding labels, error texts and loaded conversations are
untrusted. Gradio 6.31's Chatbot renders a message with marked (GFM), then sanitizes the HTML;
the sanitizer keeps `<img src=…>`, `<a href=…>` and `<style>`, so the Markdown itself must carry
no HTML and no link. Rather than guess where the renderer will see code spans (the old bug: an
escaped or unbalanced backtick let HTML through), every character that can open a construct
producing HTML or a URL is written as an HTML entity, wherever it is:

- `<` `>` `&` — raw HTML, autolinks `<…>`, and entities (`&lt;img&gt;` stays those 10 characters);
- `` ` `` `~` — code spans and fences (marked passes a ```` ```mermaid ```` block to Mermaid as raw HTML);
- `\\` — backslash escapes; `[` `]` — links, images, reference definitions;
- `@`, `://`, `www.` — GFM's bare autolinks (`user@host.org`, `https://…`, `www.…`);
- `$` — LaTeX delimiters (off in our Chatbot anyway: `CHATBOT_SETTINGS`).

marked passes entities through untouched and the browser decodes them into text, so the person
reads exactly what was written. What stays is formatting that cannot fetch or link: emphasis,
lists, headings, tables. Code blocks in a message are re-emitted by `message`: a fence of more
backticks than any run inside (so nothing inside can close it) and a language from a plain
allow-list (never `mermaid`); marked escapes a code block's text. Inline code becomes our own
`<code>` element around escaped text. Those two, and `**` around emphasised spans, are the
only markup that is ours; everything else that reaches the page went through `_escape`.

This holds for a Chatbot built with `CHATBOT_SETTINGS` (Markdown on, LaTeX off, sanitizer on).
Knows nothing of Gradio beyond those settings.
"""

from __future__ import annotations

import bisect
import html
import re

#: The Chatbot settings the guarantee above assumes (`gr.Chatbot(**CHATBOT_SETTINGS)`): with
#: Markdown off Gradio inserts the text as raw HTML, and its LaTeX pass cuts `$$…$$` out of the
#: Markdown before marked sees it (code blocks included).
CHATBOT_SETTINGS = {"render_markdown": True, "sanitize_html": True, "latex_delimiters": [], "allow_tags": False}

_ENTITIES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "`": "&#96;",
    "~": "&#126;",
    "\\": "&#92;",
    "[": "&#91;",
    "]": "&#93;",
    "$": "&#36;",
    "@": "&#64;",
}
_UNSAFE = re.compile(r"[&<>`~\\\[\]$@]|:/(?=/)|(?i:www)\.")
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,24}")
_BACKTICKS = re.compile(r"`+")


def _entity(match: re.Match) -> str:
    found = match.group()
    if len(found) == 1:
        return _ENTITIES[found]
    if found[0] == ":":
        return ":&#47;"  # '://' -> ':&#47;/': no scheme autolink
    return found[:-1] + "&#46;"  # 'www.' -> 'www&#46;'


def _escape(text: str) -> str:
    return _UNSAFE.sub(_entity, text)


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def inert(text: str) -> str:
    """Markdown that shows `text` as written (line breaks kept): no HTML, no link, no code."""
    return _escape(_lines(text))


def table_cell(text: str) -> str:
    """`text` inert and on one line, safe inside a Markdown table cell (a `|` stays a `|`)."""
    return inert(" ".join(_lines(text).split("\n")).strip()).replace("|", "&#124;")


def toast(text: str) -> str:
    """`text` for `gr.Warning` / `gr.Error`: Gradio shows a toast's message as (sanitized) HTML."""
    return html.escape(text)


def message(text: str, emphasize: re.Pattern | None = None) -> str:
    """Markdown for a question or an answer: inert prose, its code blocks and inline code as code.

    Fenced blocks (```` ``` ```` or `~~~`, closed or still being written) come out as code;
    spans `emphasize` matches in the prose (timestamps in an answer about a video) come out bold.
    """
    lines = _lines(text).split("\n")
    parts: list[str] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            prose.append(lines[i])
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*")
        body: list[str] = []
        i += 1
        while i < len(lines) and not closing.fullmatch(lines[i]):
            body.append(lines[i][min(indent, len(lines[i]) - len(lines[i].lstrip(" "))) :])
            i += 1
        i += 1  # the closing fence (or the end of a block still being written)
        if prose:
            parts.append(_prose("\n".join(prose), emphasize))
            prose = []
        parts.append(_code_block("\n".join(body), opening["info"]))
    if prose:
        parts.append(_prose("\n".join(prose), emphasize))
    return "\n\n".join(part for part in parts if part)


def _code_block(code: str, info: str) -> str:
    """A fenced block nothing in `code` can close; its language only from the allow-list."""
    words = info.split()
    language = words[0] if words and _LANGUAGE.fullmatch(words[0]) and words[0].lower() != "mermaid" else ""
    fence = "`" * max(3, 1 + max((len(run) for run in _BACKTICKS.findall(code)), default=0))
    return f"{fence}{language}\n{code}\n{fence}" if code else f"{fence}{language}\n{fence}"


def _prose(text: str, emphasize: re.Pattern | None) -> str:
    """Inert prose; inline code as `<code>` around escaped text, `emphasize` matches bold."""
    out: list[str] = []
    for line in text.split("\n"):
        cursor = 0
        for start, end, content in _code_spans(line):
            if len(content) > 1 and content[0] == content[-1] == " " and content.strip():
                content = content[1:-1]  # CommonMark strips one space on each side
            out.append(_emphasized(line[cursor:start], emphasize))
            out.append(f"<code>{_escape(content)}</code>")
            cursor = end
        out.append(_emphasized(line[cursor:], emphasize) + "\n")
    return "".join(out).strip("\n")


def _code_spans(line: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of each inline code span of one line: a run of backticks up to the
    next run of the same length (a run after a backslash opens nothing). Linear in the line."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(line)]
    following: dict[int, list[int]] = {}  # run length -> indices of the runs of that length, in order
    for index, (start, end) in enumerate(runs):
        following.setdefault(end - start, []).append(index)
    spans, index = [], 0
    while index < len(runs):
        start, end = runs[index]
        same = following[end - start]
        after = bisect.bisect_right(same, index)
        later = same[after] if after < len(same) else None
        if later is None or (start > 0 and line[start - 1] == "\\"):
            index += 1
            continue
        close_start, close_end = runs[later]
        spans.append((start, close_end, line[end:close_start]))
        index = later + 1
    return spans


def _emphasized(text: str, emphasize: re.Pattern | None) -> str:
    if emphasize is None:
        return _escape(text)
    out: list[str] = []
    cursor = 0
    for span in emphasize.finditer(text):
        out.append(_escape(text[cursor : span.start()]))
        out.append(f"**{_escape(span.group())}**")
        cursor = span.end()
    out.append(_escape(text[cursor:]))
    return "".join(out)
