"""Untrusted text made inert for the Chatbot (demo/views/markup.py): the table of escapes, and properties.

What the person reads is `html.unescape` of the Markdown (the browser decodes the entities), so
each row also checks that nothing was lost. The browser half of the proof (the real page, the
network watched) is tests/test_browser_hostile.py.
"""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.views.markup import CHATBOT_SETTINGS, inert, message, table_cell, toast

PORT = 9  # the canary port in the hostile strings (nothing is fetched here)


@pytest.mark.parametrize(
    "raw, markdown",
    [
        # HTML tags are text: no element can form without a literal '<'.
        ("<img src=http://127.0.0.1:9/x>", "&lt;img src=http:&#47;/127.0.0.1:9/x&gt;"),
        # Escaped backticks around HTML (the old bug: the code-span guess was wrong).
        ("\\`<img src=x>\\`", "&#92;&#96;&lt;img src=x&gt;&#92;&#96;"),
        # An unbalanced backtick: nothing pairs, nothing is code, the tag is text.
        ("`<img src=x>", "&#96;&lt;img src=x&gt;"),
        # Double backticks: still characters, never a code span.
        ("``<b>`` x", "&#96;&#96;&lt;b&gt;&#96;&#96; x"),
        # An entity stays the characters written: '&lt;img&gt;' must not become a tag.
        ("&lt;img src=x&gt;", "&amp;lt;img src=x&amp;gt;"),
        # A numeric entity too.
        ("&#60;script&#62;", "&amp;#60;script&amp;#62;"),
        # A stylesheet with a remote import: text.
        ("<style>@import url(http://127.0.0.1:9/s.css)</style>", "&lt;style&gt;&#64;import url(http:&#47;/127.0.0.1:9/s.css)&lt;/style&gt;"),
        # A phishing link in HTML: text.
        ('<a href="http://evil.test/login">log in again</a>', '&lt;a href="http:&#47;/evil.test/login"&gt;log in again&lt;/a&gt;'),
        # A Markdown image: no '[' so no image, no fetch.
        ("![x](http://127.0.0.1:9/i.png)", "!&#91;x&#93;(http:&#47;/127.0.0.1:9/i.png)"),
        # A Markdown link and a reference definition: no '['.
        ("[log in](http://evil.test) [r]\n[r]: http://evil.test", "&#91;log in&#93;(http:&#47;/evil.test) &#91;r&#93;\n&#91;r&#93;: http:&#47;/evil.test"),
        # GFM bare autolinks: the scheme's '//' is broken, 'www.' and '@' too.
        ("see https://evil.test, WWW.evil.test, me@evil.test", "see https:&#47;/evil.test, WWW&#46;evil.test, me&#64;evil.test"),
        # An autolink in angle brackets.
        ("<http://evil.test>", "&lt;http:&#47;/evil.test&gt;"),
        # A frame and an SVG with an event handler.
        ("<iframe src=//evil.test></iframe><svg onload=alert(1)>", "&lt;iframe src=//evil.test&gt;&lt;/iframe&gt;&lt;svg onload=alert(1)&gt;"),
        # Backslashes stay backslashes (no Markdown escape is ever formed).
        ("a\\<b\\\\c", "a&#92;&lt;b&#92;&#92;c"),
        # A tilde fence with Mermaid (raw HTML in Gradio's renderer) is text in inert().
        ("~~~mermaid\n<img src=x>\n~~~", "&#126;&#126;&#126;mermaid\n&lt;img src=x&gt;\n&#126;&#126;&#126;"),
        # LaTeX delimiters (Gradio cuts $$…$$ out before Markdown when LaTeX is on).
        ("$$<img src=x>$$", "&#36;&#36;&lt;img src=x&gt;&#36;&#36;"),
        # Plain words and harmless formatting stay as they are.
        ("plain **bold** text, 1. a list", "plain **bold** text, 1. a list"),
        # Windows line ends become plain ones.
        ("a\r\nb\rc", "a\nb\nc"),
    ],
)
def test_inert_escapes_every_construct_that_makes_html_or_a_link(raw, markdown):
    assert inert(raw) == markdown
    assert html.unescape(markdown) == raw.replace("\r\n", "\n").replace("\r", "\n")  # the person reads what was written


@pytest.mark.parametrize(
    "raw, markdown",
    [
        # A code block stays code: marked escapes a block's text itself.
        ("```python\nprint('<b>')\n```", "```python\nprint('<b>')\n```"),
        # A block holding a fence gets a longer fence: nothing inside can close it.
        ("````\n```\n<img src=x>\n```\n````", "````\n```\n<img src=x>\n```\n````"),
        # A block with a run of five backticks inside: a fence of six.
        ("```\na `````b\n```", "``````\na `````b\n``````"),
        # Mermaid would be raw HTML in Gradio 6.31: the language is dropped, the block stays code.
        ("```mermaid\n<img src=x>\n```", "```\n<img src=x>\n```"),
        # A tilde fence comes out with backticks (and its language, when plain).
        ("~~~js\nx <y>\n~~~", "```js\nx <y>\n```"),
        # A language with odd characters is dropped.
        ("```<img>\ncode\n```", "```\ncode\n```"),
        # A block still being written (streaming) is closed by us.
        ("text\n```\nunclosed <x>", "text\n\n```\nunclosed <x>\n```"),
        # Prose after a block is inert again.
        ("```\na\n```\n<img src=x>", "```\na\n```\n\n&lt;img src=x&gt;"),
        # Inline code: our <code> around escaped text.
        ("run `ls <dir>` now", "run <code>ls &lt;dir&gt;</code> now"),
        # Inline code with double backticks holding one.
        ("``a`b``", "<code>a&#96;b</code>"),
        # An escaped backtick opens nothing.
        ("\\`<img src=x>\\`", "&#92;&#96;&lt;img src=x&gt;&#92;&#96;"),
        # Inline code cannot span lines: both backticks stay text.
        ("`a\nb`", "&#96;a\nb&#96;"),
    ],
)
def test_message_keeps_code_as_code_and_the_rest_inert(raw, markdown):
    assert message(raw) == markdown


def test_emphasised_spans_are_bold_and_still_inert():
    times = re.compile(r"\d:\d\d")
    assert message("at 0:12 <b>", emphasize=times) == "at **0:12** &lt;b&gt;"


def test_a_table_cell_keeps_its_pipe_and_its_line():
    assert table_cell("a|b\n<c>") == "a&#124;b &lt;c&gt;"  # one cell, shown as 'a|b <c>'


def test_a_toast_is_html_escaped():
    assert toast('<img src="http://evil.test/x">.png is not an image.') == "&lt;img src=&quot;http://evil.test/x&quot;&gt;.png is not an image."


def test_the_chatbot_settings_keep_markdown_on_and_latex_off():
    assert CHATBOT_SETTINGS["render_markdown"] is True  # off, Gradio inserts the text as raw HTML
    assert CHATBOT_SETTINGS["latex_delimiters"] == []  # on, Gradio cuts $$…$$ out of the Markdown first
    assert CHATBOT_SETTINGS["sanitize_html"] is True


_PIECES = [*"<>&`~\\[]$@:/.wW!()*_#|-= \n\tabc1;\"'", "www.", "://", "```", "~~~", "&lt;", "&#96;", "<code>"]
hostile = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)


def _outside_our_markup(markdown: str) -> str:
    """The Markdown less our fenced blocks and our <code> tags."""
    lines, kept, fence = markdown.split("\n"), [], None
    for line in lines:
        if fence is None and (m := re.fullmatch(r"(`{3,})[A-Za-z0-9_+#.-]*", line)):
            fence = m.group(1)
        elif fence is not None and line == fence:
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept).replace("<code>", "").replace("</code>", "")


@settings(max_examples=400, deadline=None, derandomize=True)
@given(raw=hostile)
def test_no_html_no_link_no_code_outside_our_markup(raw):
    for markdown in (inert(raw), _outside_our_markup(message(raw)), table_cell(raw)):
        for forbidden in ("<", "`", "~", "\\", "[", "]", "$", "@", "://"):
            assert forbidden not in markdown
        assert "www." not in markdown.lower()
        assert not re.search(r"&(?!amp;|lt;|gt;|#\d+;)", markdown)  # every '&' starts one of our entities
    assert html.unescape(inert(raw)) == raw.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=400, deadline=None, derandomize=True)
@given(raw=hostile)
def test_nothing_inside_a_block_can_close_it(raw):
    fence = None
    for line in message(raw).split("\n"):
        if fence is None:
            if m := re.fullmatch(r"(`{3,})[A-Za-z0-9_+#.-]*", line):
                fence = m.group(1)
        elif line == fence:
            fence = None
        else:
            assert "`" * len(fence) not in line  # no run as long as the fence inside (tildes never close it)


def _notice_calls(tree):
    """Every gr.Warning / gr.Info / gr.Success / gr.Error call: (line, its message argument)."""
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("Warning", "Info", "Success", "Error"):
            if isinstance(node.func.value, ast.Name) and node.func.value.id == "gr":
                message = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "message"), None)
                yield node.lineno, message


def _is_inert(message) -> bool:
    """A literal the app wrote, or text passed through `toast` (HTML-escaped)."""
    import ast

    if message is None or (isinstance(message, ast.Constant) and isinstance(message.value, str)):
        return True
    if isinstance(message, ast.JoinedStr):  # an f-string: only if it interpolates nothing
        return all(isinstance(part, ast.Constant) for part in message.values)
    return isinstance(message, ast.Call) and isinstance(message.func, ast.Name) and message.func.id == "toast"


def test_every_toast_the_app_raises_is_a_literal_or_escaped():
    """Gradio 6.31 shows a toast's message as HTML (gr.Warning: "Can be HTML, which will be rendered"):
    anything from a file or a person must go through `toast`. Before, a refused reference file's
    sentence (which quotes the file) went as it was: a planted link stayed clickable."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    found, unsafe = 0, []
    for path in [root / "app.py", *sorted((root / "demo").rglob("*.py"))]:
        for line, said in _notice_calls(ast.parse(path.read_text("utf-8"))):
            found += 1
            if not _is_inert(said):
                unsafe.append(f"{path.relative_to(root)}:{line}")
    assert found >= 5 and unsafe == []
