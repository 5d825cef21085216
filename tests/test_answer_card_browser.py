"""An answer at a glance, in Chromium: one card per answer (its text, the crop it zoomed into, its
pictures drawn, the list of its groundings) with one Copy, label tags at least 12 px tall as shown
on a desktop and on a phone, and a box on a picture that does not exist flagged, drawn nowhere.

The app runs against a scripted OpenAI-compatible server whose Qwen3-VL zooms into Picture 1, then
answers with a crowd of boxes on Picture 1, one on the crop (Picture 2) and one on "Picture 5".
"""

from __future__ import annotations

import importlib
import itertools
import json

import pytest

from demo.engines.server import OpenAIEngine
from demo.views.chat import CHAT_FIT
from grounding.draw import font_size
from grounding.tag_layout import GAP
from grounding.zoom import tool_call_text
from tests.conftest import serve_app
from tests.helpers import scripted_server
from tests.test_browser import ask, ready_page

pytestmark = pytest.mark.browser

MODEL = "Qwen/Qwen3-VL-2B-Instruct"
CALL = tool_call_text("image_zoom_in_tool", {"bbox_2d": [480, 80, 900, 640], "label": "cat's face", "img_idx": 0})
FACE = [  # a crowd on the cat's face: nested and overlapping boxes, their tags all wanting the same places
    {"bbox_2d": [480 + 20 * i, 80 + 25 * i, 900 - 10 * i, 640 - 20 * i], "label": name}
    for i, name in enumerate(["face", "left eye", "right eye", "nose", "whiskers", "ear", "fur", "mouth"])
]
ANSWER = (
    "In Picture 1:\n```json\n" + json.dumps(FACE) + "\n```\n"
    'In Picture 2, {"bbox_2d": [100, 100, 600, 500], "label": "green eye"}. '
    'And in Picture 5, {"bbox_2d": [1, 2, 300, 400], "label": "ghost"}.'
)
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2},
}


def reply(n: int) -> list[dict]:
    """Each question's first request zooms; the second answers."""
    return [{"content": "A closer look first.\n"}, {"content": CALL}] if n % 2 == 0 else [{"content": ANSWER}]


@pytest.fixture(scope="module")
def card_app():
    with scripted_server(reply) as (url, _bodies):
        with serve_app(OpenAIEngine(url, MODEL, timeout=10), MODEL) as served:
            yield served


@pytest.fixture
def layouts(monkeypatch) -> list[tuple[tuple[int, int], list]]:
    """Every tag layout the app draws while the test runs: (picture size, tag rectangles), in picture pixels."""
    drawing = importlib.import_module("grounding.draw")
    recorded: list = []
    place = drawing.place_tags

    def spy(sizes, wishes, image_wh):
        rects = place(sizes, wishes, image_wh)
        recorded.append((tuple(image_wh), rects))
        return rects

    monkeypatch.setattr(drawing, "place_tags", spy)
    return recorded


def answer_rows(page):
    """The rows of the last answer's card, top to bottom."""
    return page.locator("#chatbot .message-row[data-qvc-card]").evaluate_all(
        """rows => { const start = rows.map(r => r.dataset.qvcCard).lastIndexOf('first');
                     return rows.slice(start).map(r => { const b = r.querySelector('.message').getBoundingClientRect();
                       return {card: r.dataset.qvcCard, kind: r.dataset.qvcKind, top: b.top, bottom: b.bottom, left: b.left, right: b.right}; }); }"""
    )


def shown_pictures(page) -> list[dict]:
    """Each annotated picture in the chat, loaded, with its file's size and the size it is shown at."""
    return page.locator("#chatbot img[alt$=', annotated']").evaluate_all(
        """async imgs => { for (const img of imgs) { img.loading = 'eager'; img.scrollIntoView();
             if (!img.complete) await new Promise(done => { img.onload = img.onerror = done; }); }
           return imgs.map(img => { const b = img.getBoundingClientRect();
             return {alt: img.alt, natural: [img.naturalWidth, img.naturalHeight], shown: [b.width, b.height]}; }); }"""
    )


@pytest.mark.parametrize("size", VIEWPORTS)
def test_one_card_per_answer_with_one_copy_and_readable_tags(browser, card_app, photos, artifacts, layouts, size):
    context = browser.new_context(**VIEWPORTS[size])
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        with ready_page(context, card_app["url"]) as page:
            ask(page, "What is on the cat's face?", [photos["chelsea"]])
            chat = page.locator("#chatbot")
            chat.get_by_text("there is no Picture 5").wait_for(timeout=10_000)

            # The question is a question (Edit under it), the picture's line its label (no buttons).
            kinds = page.locator("#chatbot .message-row.user-row").evaluate_all("rows => rows.map(r => r.dataset.qvcKind)")
            assert kinds == ["caption", "file", "text"]
            rows = answer_rows(page)
            assert [r["card"] for r in rows] == ["first"] + ["middle"] * (len(rows) - 2) + ["last"]
            assert [r["kind"] for r in rows] == ["text", "caption", "file", "caption", "file", "caption", "file", "text"]
            for upper, lower in itertools.pairwise(rows):  # one card: rows edge to edge, the same width
                assert abs(lower["top"] - upper["bottom"]) <= 1, (upper, lower)
                assert abs(lower["left"] - upper["left"]) <= 1 and abs(lower["right"] - upper["right"]) <= 1
            copies = chat.locator(".qvc-copy")
            assert copies.count() == 1  # the one answer's one Copy
            gradio_copies = chat.locator(".message-row[data-qvc-card] ~ .message-buttons button[aria-label^='Copy' i]")
            assert not any(gradio_copies.nth(i).is_visible() for i in range(gradio_copies.count()))

            copies.click()
            copied = page.evaluate("navigator.clipboard.readText()")
            assert "[1 box on Picture 5: ghost — there is no Picture 5]" in copied
            assert "[8 boxes on Picture 1: face, left eye" in copied and "green eye" in copied
            assert "&#" not in copied and "Picture 1 · " not in copied  # the text as read; no pictures' labels

            # A box on a picture that does not exist is drawn nowhere.
            pictures = shown_pictures(page)
            assert [p["alt"] for p in pictures] == ["Picture 1, annotated", "Picture 2, annotated"]
            # Tags: at least 12 px tall as shown, none over another (measured on the drawings the app made).
            drawn = {size_wh: rects for size_wh, rects in layouts}
            for picture in pictures:
                scale = picture["shown"][0] / picture["natural"][0]
                assert font_size(*picture["natural"], CHAT_FIT) * scale >= 12, picture  # the labels' letters
                rects = [r for r in drawn[tuple(picture["natural"])] if r is not None]
                assert rects and min((y2 - y1) * scale for _, y1, _, y2 in rects) >= 12, (picture, rects)  # their tags
                for a, b in itertools.combinations(rects, 2):
                    assert a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]
            page.locator("#chatbot img[alt='Picture 1, annotated']").scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts / f"answer-card-{size}.png"))
    finally:
        context.close()
