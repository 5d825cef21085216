"""Toasts are inert, in Chromium (issue 26): a refused reference file whose sentence quotes the file's
own values (an `<a href=…>`, an `<img onerror=…>`) shows them as text in the warning toast.

Gradio 6.31 renders a toast's message as HTML. Before, the inspector passed the refusal as it was
(`gr.Warning(str(e))`): the planted link was a clickable element in the toast, the image an element
whose handler the page's Content-Security-Policy alone kept from running. The page's policy is
switched off here (`bypass_csp`), so that the escaping alone is on trial. (Every toast the app
raises is checked in its source by tests/test_inert.py.)
"""

from __future__ import annotations

import json

import pytest

from tests.fakes import ScriptedEngine
from tests.test_browser import ask, ready_page

pytestmark = pytest.mark.browser

LINK = '<a id="planted-link" href="http://127.0.0.1:9/phish">log in again</a>'
IMAGE = "<img id=planted-img src=x onerror=\"document.title='pwned'\">"


@pytest.fixture(scope="module")
def app():
    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.page.ui import CSS, build_ui
    from demo.web import serve
    from demo.web.guard import GuardSettings

    engine = ScriptedEngine([])
    slot = EngineSlot("scripted")
    slot.fill(engine)
    demo = build_ui(ChatHandlers(slot), concurrency=2)
    _, url, _ = serve.launch(
        demo, GuardSettings(max_pending=64), max_queue=None, prevent_thread_lock=True, css=CSS, server_name="127.0.0.1", quiet=True
    )
    yield {"url": url, "engine": engine}
    demo.close()


@pytest.fixture
def page(browser, app, photos):
    with ready_page(browser, app["url"], viewport={"width": 1440, "height": 1000}, bypass_csp=True) as page:
        # The inspector (and its ground-truth panel) shows once an answer has a box (issue 25).
        app["engine"].answers.append(["In Picture 1, <|object_ref_start|>cat<|object_ref_end|><|box_start|>(10,10),(500,500)<|box_end|>"])
        ask(page, "Find the cat.", [photos["chelsea"]])
        page.locator("#inspector").wait_for(timeout=10_000)
        yield page


def hostile_reference_file(tmp_path, planted: str) -> str:
    """A COCO file refused because an annotation names an image `planted`, which `images` does not list."""
    data = {"images": [{"id": 1, "file_name": "cat.png"}], "annotations": [{"image_id": planted, "bbox": [0, 0, 1, 1]}], "categories": []}
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("planted", [LINK, IMAGE], ids=["link", "image with a handler"])
def test_a_refused_files_values_are_text_in_the_warning_toast(page, tmp_path, planted):
    page.locator("#truth").get_by_text("Compare with ground truth").click()
    with page.expect_file_chooser() as chooser:
        page.locator("#truth-upload").click()
    chooser.value.set_files(hostile_reference_file(tmp_path, planted))

    toast = page.get_by_test_id("toast-body").filter(has_text="is not a reference file")
    toast.wait_for(timeout=15_000)
    text = toast.get_by_test_id("toast-text").inner_text()
    assert f"annotation 1 is on image {planted!r}, which `images` does not list" in text  # what the file says, as text
    assert toast.locator("a, img, [onerror], [href]").count() == 0  # no element came from the file
    assert page.locator("#planted-link, #planted-img").count() == 0  # anywhere on the page
    assert page.title() != "pwned"
    # The status line under the upload says the same, inert too.
    status = page.locator("#truth-status")
    assert repr(planted) in status.inner_text() and status.locator("a, img").count() == 0
