"""Fair shares as a person sees them, in Chromium: the place in the queue, and the cap's sentence.

The app runs a scripted engine with one answer at a time and a cap of two pending requests
per client (tests/test_guard.py `launch`). Three tabs of one client: the first is answered,
the second waits and sees its place in the queue on the chat, the third is refused with
one sentence and keeps its message.
"""

from __future__ import annotations

import pytest

from tests.test_browser import send
from tests.test_guard import SLOW, launch

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def fair():
    app = launch(max_pending=2)
    yield app
    app["demo"].close()


def open_tab(browser, app):  # noqa: F811 - the fixture
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(app["url"])
    page.get_by_text("is ready").wait_for(timeout=15_000)
    return page


def test_a_waiting_person_sees_their_place_and_one_too_many_is_refused(browser, fair, artifacts):  # noqa: F811
    fair["engine"].answers = [SLOW * 3, SLOW * 3, ["ok"]]
    first, second, third = (open_tab(browser, fair) for _ in range(3))
    try:
        send(first, "A long answer, please.")
        first.locator("#message button.stop-button").wait_for(timeout=10_000)
        send(second, "Me too.")
        # its message is read and checked at once, then waits for the model, saying how many answers are before it
        place = second.locator("#chatbot").get_by_text("Waiting for the model: 1 answer before yours.")
        place.first.wait_for(timeout=10_000)
        second.screenshot(path=str(artifacts / "queue-position.png"))
        send(third, "And me.")
        refusal = third.get_by_text("You already have 2 requests waiting or running")
        refusal.first.wait_for(timeout=10_000)
        assert third.locator("#message textarea").input_value() == "And me."  # the message is kept
        assert third.locator("#chatbot [data-testid='user']").count() == 0  # and the conversation unchanged
        third.locator("#message button.submit-button").wait_for(timeout=5_000)  # the textbox is given back
        third.wait_for_timeout(600)  # the notice slides in
        third.screenshot(path=str(artifacts / "over-the-cap.png"))
    finally:
        for page in (first, second):
            stop = page.locator("#message button.stop-button")
            if stop.is_visible():
                stop.click()
        for page in (first, second, third):
            page.close()
