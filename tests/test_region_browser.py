"""Asking about a box, and zooming into one, as a person does it in Chromium, against a scripted
OpenAI-compatible server that records what it is sent.

Qwen2.5-VL (which sees chelsea.png, 451×300, at another size): a box of the answer is selected and
asked about; the server gets it as JSON in the pixels of the picture it was sent, which map back to
the selected box within 1 px, again after a reload (the conversation kept in the browser), and
rewritten by an edit in the chat. Qwen3-VL: before any box, "Inspect a picture" opens the hidden
inspector; a box drawn with "Draw a box", then one with Shift+drag, is asked about in 0-1000;
"Zoom into this box" attaches the crop, sent as Picture 2. The inspector stays hidden until an
answer has boxes and keeps the last turn with boxes in view.
Screenshots in tests/artifacts/region-*.png.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from PIL import Image

from demo.engines.server import OpenAIEngine
from grounding import parse
from tests.conftest import serve_app
from tests.helpers import scripted_server, wait_until
from tests.test_browser import ask, ready_page
from tests.test_inspector_browser import drawn, picture_to_screen

pytestmark = pytest.mark.browser
READABLE = re.compile(r"About (?:\"[^\"]*\" in )?Picture (\d+) \((\d+), (\d+)\)–\((\d+), (\d+)\): ")


@contextmanager
def served(model: str, replies: list[str]) -> Iterator[dict]:
    """The app on a scripted server answering its n-th request with `replies[n]`."""
    with scripted_server(lambda n: [{"content": replies[min(n, len(replies) - 1)]}], delay=0.2) as (url, bodies):
        with serve_app(OpenAIEngine(url, model, timeout=10), model) as app:
            yield {**app, "bodies": bodies}


# The conversation kept in the browser (demo/page/history.js's IndexedDB) holds a question's region.
KEPT_WITH_REGION = """async () => {
  const db = await new Promise((ok, ko) => { const r = indexedDB.open("qwen-vl-chat", 1); r.onsuccess = () => ok(r.result); r.onerror = ko; });
  const files = await new Promise((ok, ko) => { const q = db.transaction("files").objectStore("files").getAll(); q.onsuccess = () => ok(q.result); q.onerror = ko; });
  db.close();
  for (const f of files) if ((await f.blob.text()).includes('"region": {"picture": 1')) return true;
  return false;
}"""


def question_sent(body: dict) -> tuple[str, list[tuple[int, int]]]:
    """The last question's text in a request, and the size of every picture sent, in order."""
    sizes, text = [], ""
    for message in body["messages"]:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part["type"] == "image_url":
                png = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                sizes.append(Image.open(io.BytesIO(png)).size)
            elif message["role"] == "user" and not part["text"].startswith("Picture "):
                text = part["text"]
    return text, sizes


def written_region(page) -> tuple[int, tuple[int, int, int, int]]:
    """The region "Ask about this box" wrote in the textbox: its picture and box."""
    page.wait_for_function("() => document.querySelector('#message textarea').value.startsWith('About ')", timeout=10_000)
    found = READABLE.match(page.locator("#message textarea").input_value())
    assert found, page.locator("#message textarea").input_value()
    return int(found[1]), tuple(int(v) for v in found.groups()[1:])


def click_box(page, box) -> None:
    x, y = picture_to_screen(page, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    page.mouse.click(x, y)


def ask_button_ready(page, name: str = "#inspect-ask") -> None:
    page.wait_for_function(f"() => !document.querySelector('{name}').disabled", timeout=10_000)


def drag(page, start, end, shift: bool) -> None:
    """A drag on the picture from picture pixel `start` to `end`, Shift held or not."""
    (x1, y1), (x2, y2) = picture_to_screen(page, *start), picture_to_screen(page, *end)
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(x1, y1)
    page.mouse.down()
    page.mouse.move(x2, y2, steps=6)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def test_qwen25_a_selected_box_is_asked_about_in_the_pixels_the_model_saw(browser, photos, artifacts):
    face = '```json\n[{"bbox_2d": [80, 25, 359, 302], "label": "the cat\'s face"}]\n```'
    with served("Qwen/Qwen2.5-VL-3B-Instruct", [face, "A tabby cat's face, looking left."]) as app:
        with ready_page(browser, app["url"], viewport={"width": 1440, "height": 1000}) as page:
            assert not page.locator("#inspector").is_visible()  # out of the way until an answer has boxes
            ask(page, "Find the cat's face.", [photos["chelsea"]])
            page.locator("#inspector").wait_for(state="visible", timeout=10_000)
            (shape,) = drawn(page, 1)
            _, sizes = question_sent(app["bodies"][0])
            assert sizes[0] != (451, 300)  # the model saw the picture at another size
            box = parse(face, "qwen2.5-vl", [(451, 300)], sizes)[0].bbox
            click_box(page, box)
            ask_button_ready(page)
            page.locator("#inspect-ask").click()
            picture, region = written_region(page)
            assert picture == 1 and all(abs(a - b) <= 0.5 for a, b in zip(region, box, strict=True))
            page.keyboard.type("what is it doing?")  # the caret waits after the region
            page.screenshot(path=str(artifacts / "region-ask-qwen25.png"))
            page.keyboard.press("Enter")
            page.locator("#chatbot").get_by_text("looking left").wait_for(timeout=15_000)
            text, sizes = question_sent(app["bodies"][-1])
            assert text.startswith('About this region of Picture 1: {"bbox_2d": [') and text.endswith("what is it doing?")
            back = parse(text, "qwen2.5-vl", [(451, 300)], sizes)[0].bbox
            assert all(abs(a - b) <= 1 for a, b in zip(back, region, strict=True)), (text, back, region)
            chat = page.locator("#chatbot").inner_text()
            assert 'About "the cat\'s face" in Picture 1 (' in chat and "bbox_2d" not in chat
            page.screenshot(path=str(artifacts / "region-asked-qwen25.png"), full_page=True)

            # Kept in the browser: a reload brings the question back with its region, and a follow-up
            # sends it to the model again in its format.
            assert wait_until(lambda: page.evaluate(KEPT_WITH_REGION), timeout=15)
            page.reload()
            page.get_by_text("is ready").wait_for(timeout=15_000)
            page.locator("#chatbot").get_by_text("looking left").wait_for(timeout=15_000)
            assert 'About "the cat\'s face" in Picture 1 (' in page.locator("#chatbot").inner_text()
            ask(page, "And its ears?")
            earlier = [
                p["text"] for m in app["bodies"][-1]["messages"] if m["role"] == "user" and isinstance(m["content"], list)
                for p in m["content"] if p["type"] == "text"
            ]
            assert f"{text}" in earlier and earlier[-1] == "And its ears?"

            # Edited in the chat, the region may be rewritten: the model gets the new one.
            row = page.locator("#chatbot .message-row", has_text="what is it doing?").last
            row.locator("xpath=following-sibling::div[contains(@class, 'message-buttons')][1]").get_by_role("button", name="Edit").click()
            box = page.locator("#chatbot textarea.edit-textarea")
            box.wait_for(timeout=10_000)
            assert READABLE.match(box.input_value())  # as the chat shows it, readable
            box.fill("About Picture 1 (0, 0)–(226, 150): what is up there?")
            page.locator("#chatbot").get_by_role("button", name="Submit").click()
            page.locator("#chatbot").get_by_text("what is up there?").wait_for(timeout=15_000)
            assert wait_until(lambda: question_sent(app["bodies"][-1])[0].endswith("what is up there?"), timeout=15)
            text, sizes = question_sent(app["bodies"][-1])
            assert parse(text, "qwen2.5-vl", [(451, 300)], sizes)[0].bbox == pytest.approx((0, 0, 226, 150), abs=1)


def test_qwen3_drawn_boxes_are_asked_about_and_a_box_is_zoomed_into(browser, photos, artifacts):
    ears = '[{"bbox_2d": [250, 60, 420, 330], "label": "ear"}, {"bbox_2d": [560, 50, 760, 330], "label": "ear"}]'
    replies = ["A cat.", ears, "Whiskers.", "Fur, up close."]
    with served("Qwen/Qwen3-VL-2B-Instruct", replies) as app:
        with ready_page(browser, app["url"], viewport={"width": 1440, "height": 1000}) as page:
            ask(page, "Describe it.", [photos["chelsea"]])
            # No box yet: the inspector is out of the way, one button away to draw on the picture.
            opener = page.locator("#open-inspector")
            opener.wait_for(timeout=10_000)
            assert not page.locator("#inspector").is_visible()
            page.screenshot(path=str(artifacts / "region-no-boxes-yet.png"))
            opener.click()
            page.locator("#inspector").wait_for(state="visible", timeout=10_000)
            page.wait_for_function("() => document.querySelector('#inspect-view .qi-img').naturalWidth > 0", timeout=10_000)
            assert not opener.is_visible()

            # "Draw a box", then a plain drag draws (once).
            page.locator("#inspect-view .qi-draw").click()
            drag(page, (300, 200), (420, 290), shift=False)
            ask_button_ready(page)
            assert any(s["id"] == "drawn" for s in drawn(page))
            page.screenshot(path=str(artifacts / "region-drawn-qwen3.png"), clip=page.locator("#inspector").bounding_box())
            page.locator("#inspect-ask").click()
            picture, region = written_region(page)
            assert picture == 1 and all(abs(a - b) <= 2 for a, b in zip(region, (300, 200, 420, 290), strict=True))
            page.keyboard.type("and this?")
            page.keyboard.press("Enter")
            drawn(page, 2)  # the answer's boxes (the ears)
            text, _ = question_sent(app["bodies"][-1])
            assert text == f'About this region of Picture 1: {{"bbox_2d": [{", ".join(str(v) for v in _thousandths(region))}]}}\nand this?'
            back = parse(text, "qwen3-vl", [(451, 300)])[0].bbox
            assert all(abs(a - b) <= 1 for a, b in zip(back, region, strict=True))

            # Shift+drag draws at any time; a plain drag pans.
            drag(page, (40, 150), (200, 280), shift=True)
            ask_button_ready(page)
            page.locator("#inspect-ask").click()
            picture, region = written_region(page)
            assert all(abs(a - b) <= 2 for a, b in zip(region, (40, 150, 200, 280), strict=True))
            page.keyboard.type("what is here?")
            page.keyboard.press("Enter")
            page.locator("#chatbot").get_by_text("Whiskers.").wait_for(timeout=15_000)
            assert question_sent(app["bodies"][-1])[0].startswith('About this region of Picture 1: {"bbox_2d": [')

            # The latest answer has no boxes: the inspector keeps turn 2, which has.
            page.wait_for_function("() => document.querySelector('#inspect-view .qi-title').textContent.startsWith('Turn 2')")
            # Zoom into the model's first ear: the crop is attached, then sent as Picture 2.
            ear = parse(ears, "qwen3-vl", [(451, 300)])[0].bbox
            click_box(page, ear)
            ask_button_ready(page, "#inspect-zoom")
            page.locator("#inspect-zoom").click()
            page.locator("#message .thumbnail-item").first.wait_for(timeout=10_000)
            page.screenshot(path=str(artifacts / "region-zoom-attached.png"))
            page.locator("#message textarea").fill("What is in this crop?")
            page.keyboard.press("Enter")
            page.locator("#chatbot").get_by_text("Fur, up close.").wait_for(timeout=15_000)
            text, sizes = question_sent(app["bodies"][-1])
            assert text == "What is in this crop?" and len(sizes) == 2
            labels = [
                p["text"] for m in app["bodies"][-1]["messages"] if isinstance(m["content"], list)
                for p in m["content"] if p["type"] == "text" and p["text"].startswith("Picture ")
            ]
            assert labels == ["Picture 1: ", "Picture 2: "]
            chat = page.locator("#chatbot").inner_text()
            assert re.search(r"Picture 2 · crop of Picture 1 at \(\d+, \d+\)–\(\d+, \d+\)\.png", chat), chat
            assert 'bbox_2d' not in chat and "About Picture 1 (" in chat
            page.screenshot(path=str(artifacts / "region-zoom-sent.png"), full_page=True)


def _thousandths(box) -> list[int]:
    """A box of chelsea.png (451×300) in 0-1000, as `grounding.region_prompt.model_box` writes it."""
    from grounding.region_prompt import model_box

    return list(model_box(box, (451, 300), None, "qwen3-vl"))
