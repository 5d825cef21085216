"""A file over its size limit is refused when it is attached, not after Send (issue 23: a newcomer
attached a too-big picture, typed a question, pressed Send, and only then was told)."""

from __future__ import annotations

import pytest

from tests.guarded import launch

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app():
    app = launch()
    yield app
    app["demo"].close()


def test_a_picture_over_the_limit_is_refused_when_attached_and_the_others_are_kept(browser, app, photos, tmp_path, artifacts):
    big = tmp_path / "huge.png"
    big.write_bytes(b"\0" * (21 * 2**20))  # over the 20 MB a picture may be (the size alone is checked here)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(app["url"])
        page.get_by_text("is ready").wait_for(timeout=15_000)
        page.set_input_files("#message input[type=file]", [str(big), str(photos["chelsea"])])
        refusal = page.locator("#attach-refused")
        refusal.wait_for(timeout=10_000)
        assert refusal.inner_text() == "Not attached: huge.png is 21 MB, more than the 20 MB allowed for a picture."
        page.locator("#message .thumbnail-item").first.wait_for(timeout=10_000)
        assert page.locator("#message .thumbnail-item").count() == 1  # chelsea.png only
        page.screenshot(path=str(artifacts / "attach-refused.png"))
        page.set_input_files("#message input[type=file]", [str(big)])  # alone: nothing is uploaded
        page.wait_for_timeout(500)
        assert page.locator("#message .thumbnail-item").count() == 1
    finally:
        page.close()
