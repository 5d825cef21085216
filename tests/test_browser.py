"""What a person sees: the page driven in Debian's Chromium with Playwright.

Needs `apt-get install chromium` (the README's install step). In CI a missing browser fails
the run instead of skipping it. Screenshots land in tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers import generating, wait_until

pytestmark = pytest.mark.browser

def refused_files(page) -> list[str]:
    """Every file the page asks the app for and the guard refuses (filled as the page runs): the
    guard serves a session's files to its own browser only, and this is that browser. The guard
    refuses with 404; Gradio answers 403 for a file that is gone (the tests' apps share Gradio's
    folder, /tmp/gradio, and one closing deletes the examples' copies another one shows)."""
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if "/gradio_api/file" in r.url and r.status == 404 else None)
    return refused


@contextmanager
def ready_page(browser, url: str, **options) -> Iterator:
    """A new page (`options`: Playwright's, a viewport at least) on the app once it says the model
    is ready; closed at the end, when no file it asked for may have been refused."""
    page = browser.new_page(**options)
    refused = refused_files(page)
    page.goto(url)
    page.get_by_text("is ready").wait_for(timeout=15_000)
    yield page
    if not page.is_closed():
        page.close()
    assert refused == []


@pytest.fixture
def page(browser, app):
    with ready_page(browser, app["url"], viewport={"width": 1200, "height": 1100}) as page:
        yield page


def send(page, text: str, files=()) -> None:
    if files:
        page.set_input_files("#message input[type=file]", [str(f) for f in files])
        page.locator("#message img, #message .thumbnail-item").first.wait_for(timeout=10_000)
    page.locator("#message textarea").fill(text)
    page.keyboard.press("Enter")


def bot_messages(page):
    return page.locator("#chatbot [data-testid='bot']")


def ask(page, text: str, files=()) -> None:
    """Send a question and wait until its answer has ended and the input is usable again."""
    before = bot_messages(page).count()
    send(page, text, files)
    page.wait_for_function(
        "n => document.querySelectorAll(\"#chatbot [data-testid='bot']\").length > n", arg=before, timeout=20_000
    )
    page.locator("#message button.stop-button").wait_for(state="hidden", timeout=30_000)
    page.locator("#message button.submit-button").wait_for(timeout=5_000)


def scroll_chat_to_top(page) -> None:
    page.evaluate(
        """() => { for (const el of document.querySelectorAll('#chatbot *')) {
             if (el.scrollHeight > el.clientHeight + 5) el.scrollTop = 0; } }"""
    )


def test_two_pictures_a_streamed_answer_and_their_labels(page, photos, artifacts):
    ask(page, "Compare Picture 1 and Picture 2.", [photos["chelsea"], photos["coffee"]])
    assert bot_messages(page).last.inner_text().strip()
    chat = page.locator("#chatbot")
    for label in ("Picture 1", "Picture 2"):
        assert chat.get_by_text(label, exact=False).first.is_visible()
    assert chat.locator("img").count() == 2  # one thumbnail under each label
    captions = [c for c in chat.inner_text().splitlines() if c.startswith("Picture ")]
    assert [c.split(" · ")[0] for c in captions] == ["Picture 1", "Picture 2"]
    assert "visual tokens" in chat.inner_text()
    assert "<|" not in chat.inner_text()
    page.screenshot(path=str(artifacts / "chat-end.png"))
    scroll_chat_to_top(page)
    page.screenshot(path=str(artifacts / "chat-two-pictures.png"))


def loaded_pictures(page, selector: str) -> list[int]:
    """The natural widths of the pictures under `selector`, each scrolled into view and awaited (0: it did not load)."""
    return page.locator(selector).evaluate_all(
        """async imgs => { for (const img of imgs) { img.loading = 'eager'; img.scrollIntoView();
             if (!img.complete) await new Promise(done => { img.onload = img.onerror = done; }); }
           return imgs.map(img => img.naturalWidth); }"""
    )


def test_pictures_show_in_their_browser_and_nowhere_else(browser, page, app, photos, tmp_path):
    """The preview of an upload and the chat's pictures load for the person; the same URLs,
    from another browser (its own cookie) or with no cookie at all, are 404."""
    mine = tmp_path / "my-coffee.png"  # an example's bytes under the example's name would be the example (public)
    mine.write_bytes(photos["coffee"].read_bytes())
    page.set_input_files("#message input[type=file]", [str(mine)])
    page.locator("#message img").first.wait_for(timeout=10_000)
    assert all(loaded_pictures(page, "#message img"))  # the preview, before the message is sent
    preview = page.locator("#message img").first.evaluate("img => img.src")
    ask(page, "What is this?")
    assert all(loaded_pictures(page, "#chatbot img"))
    [sent] = page.locator("#chatbot img").evaluate_all("imgs => imgs.map(img => img.src)")
    assert page.request.get(sent).status == 200
    stranger = browser.new_context()
    try:
        stranger.new_page().goto(app["url"])  # a page of its own: its own cookie
        assert [stranger.request.get(url).status for url in (sent, preview)] == [404, 404]
    finally:
        stranger.close()
    import httpx

    assert httpx.get(sent).status_code == 404


def test_stop_on_a_long_answer_gives_the_input_back(page, app, artifacts):
    app["engine"].min_new_tokens = 100_000
    try:
        send(page, "Tell me everything.")
        stop = page.locator("#message button.stop-button")
        stop.wait_for(timeout=10_000)
        assert wait_until(lambda: generating())
        page.wait_for_timeout(500)  # let some of the answer stream in
        stop.click()
        page.locator("#message button.submit-button").wait_for(timeout=10_000)
        assert wait_until(lambda: not generating(), timeout=5)
        page.get_by_text("(Stopped.)").wait_for(timeout=5_000)
        textarea = page.locator("#message textarea")
        assert textarea.is_editable()
        page.screenshot(path=str(artifacts / "chat-stopped.png"))
    finally:
        app["engine"].min_new_tokens = 150
    # The next question is answered.
    ask(page, "Short answer now.")
    assert bot_messages(page).count() == 2
    assert "(Stopped.)" not in bot_messages(page).last.inner_text()


def test_closing_the_tab_mid_answer_stops_the_generation(page, app):
    app["engine"].min_new_tokens = 100_000
    try:
        send(page, "Tell me everything.")
        page.locator("#message button.stop-button").wait_for(timeout=10_000)
        assert wait_until(lambda: generating())
        page.close()
        assert wait_until(lambda: not generating() and not app["handlers"].writing.sessions(), timeout=20)
    finally:
        app["engine"].min_new_tokens = 150


def test_boxes_are_drawn_live_in_the_chat(page, app, engine, photos, artifacts):
    from tests.fakes import forced_answer

    answer = (
        "The cat is in Picture 1: <|object_ref_start|>the cat's face<|object_ref_end|>"
        "<|box_start|>(180,80),(800,980)<|box_end|>. In Picture 2, "
        "<|object_ref_start|>the cup<|object_ref_end|><|box_start|>(330,60),(760,640)<|box_end|> and "
        "<|object_ref_start|>the spoon<|object_ref_end|><|box_start|>(560,520),(700,860)<|box_end|>."
    )
    app["engine"].min_new_tokens = 0  # the forced answer ends by itself
    try:
        with forced_answer(engine, answer):
            ask(page, "Find the cat, the cup and the spoon.", [photos["chelsea"], photos["coffee"]])
    finally:
        app["engine"].min_new_tokens = 150
    chat = page.locator("#chatbot")
    text = chat.inner_text()
    assert "the cat's face [Picture 1]" in text and "the cup [Picture 2]" in text
    assert "<|" not in text and "box_start" not in text
    assert chat.locator("img").count() == 4  # two pictures sent, two annotated
    assert "Picture 2 · 2 groundings" in text
    page.wait_for_timeout(500)
    chat.locator("img").last.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "chat-grounding.png"))


def test_html_in_an_answer_shows_as_text_and_never_runs(page, app, engine, artifacts):
    from tests.fakes import forced_answer

    answer = '<img src=x onerror="window.pwned=1"> and <script>window.pwned=2</script> ![t](http://192.0.2.1/t.png)'
    app["engine"].min_new_tokens = 0
    try:
        with forced_answer(engine, answer):
            ask(page, "Say something dangerous.")
    finally:
        app["engine"].min_new_tokens = 150
    bubble = bot_messages(page).last
    assert '<img src=x onerror="window.pwned=1">' in bubble.inner_text()
    assert "<script>window.pwned=2</script>" in bubble.inner_text()
    assert page.evaluate("window.pwned") is None
    assert bubble.locator("img, script").count() == 0
    page.screenshot(path=str(artifacts / "chat-inert-html.png"))


def test_a_video_is_uploaded_labelled_and_answered(page, photos, artifacts):
    from pathlib import Path

    clip = Path(__file__).resolve().parent.parent / "demo" / "examples" / "rocket-launch.mp4"
    page.set_input_files("#message input[type=file]", [str(clip), str(photos["astronaut"])])
    page.wait_for_timeout(1000)
    ask(page, "What happens in Video 1, and who is in Picture 1?")
    chat = page.locator("#chatbot")
    text = chat.inner_text()
    assert "Video 1 · rocket-launch.mp4 · 8 frames at 2.0 fps" in text and "Picture 1 · astronaut.png" in text
    assert chat.locator("video").count() == 1
    assert bot_messages(page).last.inner_text().strip()
    chat.locator("[data-testid='user']").first.locator("xpath=ancestor::div[contains(@class, 'message-row')][1]").screenshot(
        path=str(artifacts / "chat-video.png")
    )


LOCAL_GENERATIONS = ["tiny-random", "tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl", "tiny-random-qwen3.5"]


@pytest.mark.parametrize("name", LOCAL_GENERATIONS)
def test_each_generation_answers_pictures_a_video_and_a_follow_up(browser, tiny_checkpoints, name, photos, artifacts):
    """The whole app on each generation's tiny checkpoint, as a person uses it."""
    import re
    from pathlib import Path

    from grounding.generations import generation
    from tests.conftest import serve_app

    engine = tiny_checkpoints.engine(name)
    title, factor = generation(engine.family).title, engine.resize_factor
    clip = Path(__file__).resolve().parent.parent / "demo" / "examples" / "rocket-launch.mp4"
    with serve_app(engine, name, min_new_tokens=12, max_new_tokens=40) as app:
        page = browser.new_page(viewport={"width": 1200, "height": 1100})
        try:
            page.goto(app["url"])
            page.get_by_text(f"{name} ({title}) is ready").wait_for(timeout=15_000)  # the page names the family
            ask(page, "Compare Picture 1, Video 1 and Picture 2.", [photos["chelsea"], clip, photos["coffee"]])
            chat = page.locator("#chatbot")
            text = chat.inner_text()
            assert "Picture 1 · chelsea.png" in text and "Picture 2 · coffee.png" in text
            caption = re.search(r"Video 1 · rocket-launch\.mp4 · \d+ frames at [\d.]+ fps, (\d+)×(\d+) px each", text)
            assert caption and int(caption[1]) % factor == 0 and int(caption[2]) % factor == 0  # the family's factor
            assert chat.locator("video").count() == 1
            ask(page, "And what is in Picture 2?")  # the follow-up
            answers = [bot_messages(page).nth(i).inner_text() for i in range(bot_messages(page).count())]
            # A thinking model's turn is its folded reasoning, then its answer (random weights: never reached).
            per_turn = 2 if engine.thinking != "none" else 1
            assert len(answers) == 2 * per_turn and all(a.strip() and "empty answer" not in a for a in answers)
            assert page.locator("#message button.stop-button").is_hidden()
            assert page.locator("#message textarea").is_editable()
            assert "<|vision_start|>" not in chat.inner_text()
            page.screenshot(path=str(artifacts / f"chat-{name}.png"))
        finally:
            page.close()
