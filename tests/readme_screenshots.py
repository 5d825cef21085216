"""The README's screenshots, docs/desktop.png and docs/history.png (1280x900), docs/phone.png and
docs/phone-answer.png (390x844).

    python -m tests.readme_screenshots

Runs the real app on the offline tiny Qwen2-VL checkpoint in Chromium. The desktop shows a
finished turn with two pictures whose answer is forced (through the real decoding path, as the
tests do: the tiny model's own answers are random text) to boxes in Qwen2-VL's format, the
inspector beside it, and the next question being written with its video already numbered;
the phone shows the first screen a newcomer sees, then the same answer's card.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, EXAMPLES, TinyCheckpoints, serve_app
from tests.fakes import forced_answer

DOCS = Path(__file__).resolve().parent.parent / "docs"
ANSWER = (
    "In Picture 1, <|object_ref_start|>the cat's face<|object_ref_end|><|box_start|>(180,80),(800,980)<|box_end|>; "
    "in Picture 2, <|object_ref_start|>the cup<|object_ref_end|><|box_start|>(330,60),(760,640)<|box_end|> and "
    "<|object_ref_start|>the spoon<|object_ref_end|><|box_start|>(560,520),(700,860)<|box_end|>."
)


def ask_for_boxes(page, engine) -> None:
    """Send the two pictures and the question, the answer forced to ANSWER; return once it has ended."""
    page.set_input_files("#message input[type=file]", [str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "coffee.png")])
    page.wait_for_function("() => document.querySelectorAll('#message .qvc-label').length === 2", timeout=90_000)
    page.locator("#message textarea").fill("Find the cat's face in Picture 1, the cup and the spoon in Picture 2.")
    with forced_answer(engine, ANSWER):
        page.locator("#message textarea").press("Enter")
        # The answer's last picture first (the empty chat's examples are pictures too, and until the
        # event starts, Stop is hidden as well), then the end of the answer.
        page.locator("#chatbot img[alt='Picture 2, annotated']").wait_for(timeout=90_000)
        page.locator("#message button.stop-button").wait_for(state="hidden", timeout=90_000)


def scroll_chat_to(page, selector: str) -> None:
    """The chat scrolled to put `selector` at its top, the page to its top, once the chat's pictures
    have loaded (Gradio scrolls the chat down as each one does)."""
    page.locator("#chatbot img").evaluate_all(
        """async imgs => { for (const img of imgs) { img.loading = 'eager';
             if (!img.complete) await new Promise(done => { img.onload = img.onerror = done; }); } }"""
    )
    page.wait_for_timeout(1000)
    page.evaluate(
        """selector => { document.querySelector(selector).scrollIntoView({block: 'start', behavior: 'instant'});
                         window.scrollTo(0, 0); }""",
        selector,
    )
    page.wait_for_timeout(500)


def main() -> None:
    from playwright.sync_api import sync_playwright

    engine = TinyCheckpoints(Path(tempfile.mkdtemp())).engine("tiny-random")
    with serve_app(engine, "tiny-random", min_new_tokens=0) as app, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        desktop = browser.new_page(viewport={"width": 1280, "height": 900})
        desktop.goto(app["url"])
        desktop.wait_for_function("() => !!window.qvcChat", timeout=90_000)
        ask_for_boxes(desktop, engine)
        desktop.set_input_files("#message input[type=file]", [str(EXAMPLES / "rocket-launch.mp4")])
        desktop.wait_for_function("() => document.querySelector('#message .qvc-label')?.textContent === 'Video 1'", timeout=90_000)
        desktop.locator("#message textarea").fill("What happens in Video 1, and when does the rocket leave the frame?")
        # The chat scrolled to show the question and its answer's card from the top, the page to its top.
        scroll_chat_to(desktop, "#chatbot .user-row[data-qvc-kind='text']")
        desktop.screenshot(path=str(DOCS / "desktop.png"))
        # The conversations kept in this browser, opened from the title's line.
        desktop.locator("#history .history-open").first.wait_for(state="attached", timeout=30_000)
        desktop.locator("#history-show").click()
        desktop.locator("#history .history-open").first.wait_for(state="visible", timeout=10_000)
        desktop.wait_for_timeout(800)
        desktop.screenshot(path=str(DOCS / "history.png"))

        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2).new_page()
        phone.goto(app["url"])
        phone.wait_for_function("() => !!window.qvcChat", timeout=90_000)
        phone.locator("#chatbot .example").first.wait_for(timeout=90_000)
        phone.wait_for_timeout(1500)
        phone.screenshot(path=str(DOCS / "phone.png"))
        # The same answer on the phone: its card, the second picture's tags and the list of boxes.
        ask_for_boxes(phone, engine)
        scroll_chat_to(phone, "#chatbot img[alt='Picture 2, annotated']")
        phone.screenshot(path=str(DOCS / "phone-answer.png"))
        browser.close()
    print(f"wrote {', '.join(str(DOCS / name) for name in ('desktop.png', 'history.png', 'phone.png', 'phone-answer.png'))}")


if __name__ == "__main__":
    main()
