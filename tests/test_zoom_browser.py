"""The zoom loop as a person sees it in Chromium: the app against a scripted OpenAI-compatible server
whose Qwen3-VL answers by calling `image_zoom_in_tool`, then answers with the crop in view.

The crop shows in the answer with its label, the raw call never does; the crop was sent to the
server as the tool's answer; a reload brings the conversation back with its crop.
"""

from __future__ import annotations

import pytest

from demo.engines.server import OpenAIEngine
from grounding.zoom import tool_call_text
from tests.conftest import serve_app
from tests.helpers import scripted_server
from tests.test_browser import ask, bot_messages, ready_page

MODEL = "Qwen/Qwen3-VL-2B-Instruct"
CALL = tool_call_text("image_zoom_in_tool", {"bbox_2d": [480, 80, 900, 640], "label": "cat's face", "img_idx": 0})


def reply(n: int) -> list[dict]:
    """Even requests (each question's first round) zoom; odd ones answer."""
    if n % 2 == 0:
        return [{"content": "Let me look closer at the face.\n"}, {"content": CALL}]
    return [{"content": "Seen up close: "}, {"content": "the cat's eyes are green."}]


@pytest.fixture(scope="module")
def zoom_app():
    with scripted_server(reply, delay=0.3) as (url, bodies):
        with serve_app(OpenAIEngine(url, MODEL, timeout=10), MODEL) as served:
            yield {**served, "bodies": bodies}


def test_the_model_zooms_and_the_person_sees_the_crop(browser, zoom_app, photos, artifacts):
    with ready_page(browser, zoom_app["url"], viewport={"width": 1200, "height": 1100}) as page:
        ask(page, "What colour are the cat's eyes?", [photos["chelsea"]])
        chat = page.locator("#chatbot")
        chat.get_by_text("the cat's eyes are green.").wait_for(timeout=10_000)
        crop = chat.locator("img[alt='Picture 2, a crop of Picture 1']")
        crop.wait_for(timeout=10_000)
        assert crop.evaluate("img => img.naturalWidth") > 0
        text = chat.inner_text()
        assert "zoomed into Picture 1" in text and "crop of Picture 1" in text
        assert "<tool_call>" not in text and "image_zoom_in_tool" not in text and '"bbox_2d"' not in text
        assert page.locator("#message button.submit-button").is_visible()  # Send is back: the answer has ended
        bodies = zoom_app["bodies"]
        assert bodies[-1]["messages"][-1]["role"] == "tool" and bodies[-2]["tools"][0]["function"]["name"] == "image_zoom_in_tool"
        bot_messages(page).last.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "zoom-loop.png"), full_page=True)

        page.locator("#history .history-open").first.wait_for(state="attached", timeout=15_000)  # kept in the browser
        page.reload()  # the conversation comes back, crop included
        page.get_by_text("is ready").wait_for(timeout=15_000)
        page.locator("#chatbot").get_by_text("the cat's eyes are green.").wait_for(timeout=15_000)
        page.locator("#chatbot img[alt='Picture 2, a crop of Picture 1']").wait_for(timeout=10_000)
