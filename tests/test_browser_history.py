"""Conversations kept in the browser (issue 23), as a person meets them in Chromium: a reload, a second
tab, a server restart, a stranger's browser, and the list's New chat, rename and delete.

The app runs a scripted engine behind its guard (tests/guarded.py) on a fixed port, so that it can
be stopped and started again there as a restarted server would be. A Playwright context is one
browser (its IndexedDB and cookies); its pages are tabs.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from tests.guarded import launch
from tests.helpers import free_port
from tests.test_browser import send

pytestmark = pytest.mark.browser


@contextmanager
def one_browser(browser, viewport: dict | None = None, **options):
    """A scripted app on a port of its own and one browser (a Playwright context) on it, both closed after."""
    app = started(free_port())
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, **options)
    try:
        yield app, context
    finally:
        context.close()
        app["demo"].close()


def started(port: int) -> dict:
    app = launch(server_port=port)
    app["engine"].answers = [["The cat sleeps."], ["On a sofa."], ["A third answer."], ["And more."]]
    return app


def open_tab(context, app: dict):
    tab = context.new_page()
    tab.goto(app["url"])
    tab.get_by_text("is ready").wait_for(timeout=15_000)
    return tab


def answered(tab, text: str, answer: str, files=()) -> None:
    bots = tab.locator("#chatbot [data-testid='bot']")
    before = bots.count()
    send(tab, text, files)
    tab.wait_for_function(
        "([n, answer]) => { const b = document.querySelectorAll(\"#chatbot [data-testid='bot']\");"
        " return b.length > n && b[b.length - 1].innerText.includes(answer); }", arg=[before, answer], timeout=15_000,
    )
    tab.locator("#message button.submit-button").wait_for(timeout=15_000)  # Send is back: the answer has ended


def kept_titles(tab) -> list[str]:
    """The conversations the list shows (it is in Gradio's sidebar: opened first)."""
    sidebar = tab.locator("#history-sidebar")
    if "open" not in (sidebar.get_attribute("class") or "").split():
        sidebar.get_by_role("button", name="Toggle Sidebar").click()
        tab.wait_for_function("document.querySelector('#history-sidebar').getBoundingClientRect().left >= 0")
    return tab.locator("#history .history-open").all_inner_texts()


def chat_texts(tab) -> list[str]:
    return [t.strip() for t in tab.locator("#chatbot [data-testid='user'], #chatbot [data-testid='bot']").all_inner_texts()]


def test_a_conversation_comes_back_after_a_reload_in_a_second_tab_and_after_a_restart(browser, photos, artifacts):
    port = free_port()
    app = started(port)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        tab = open_tab(context, app)
        answered(tab, "What is in Picture 1?", "The cat sleeps.", [photos["chelsea"]])
        answered(tab, "Where is it?", "On a sofa.")
        tab.locator("#history .history-open").first.wait_for(state="attached", timeout=15_000)  # kept
        assert kept_titles(tab) == ["What is in Picture 1?"]
        tab.fill("#message textarea", "a draft")
        tab.reload()
        tab.locator("#chatbot").get_by_text("On a sofa.").wait_for(timeout=15_000)  # this tab's conversation is back
        shown = chat_texts(tab)
        assert any("What is in Picture 1?" in t for t in shown) and any("The cat sleeps." in t for t in shown)
        tab.locator("#chatbot img[alt='Picture 1']").wait_for(timeout=10_000)  # its picture too
        assert tab.locator("#chatbot img[alt='Picture 1']").count() == 1
        assert tab.locator("#message textarea").input_value() == "a draft"  # and the message being written
        tab.screenshot(path=str(artifacts / "history-after-reload.png"))

        second = open_tab(context, app)  # a second tab of the same browser starts empty, and lists it
        assert kept_titles(second) == ["What is in Picture 1?"]
        second.locator("#history .history-open").first.click()
        second.locator("#chatbot").get_by_text("On a sofa.").wait_for(timeout=15_000)
        second.screenshot(path=str(artifacts / "history-list.png"))
        second.close()

        stranger = browser.new_context(viewport={"width": 1280, "height": 900})  # another person's browser: nothing of it
        other = open_tab(stranger, app)
        assert kept_titles(other) == []
        assert other.locator("#history").get_by_text("kept here, in this browser only").count() == 1
        stranger.close()

        app["demo"].close()  # the server restarts: its sessions and files are gone
        app = started(port)
        tab.reload()
        tab.locator("#chatbot").get_by_text("On a sofa.").wait_for(timeout=20_000)
        # a follow-up (the restarted server's first scripted answer), answered with the whole conversation before it
        answered(tab, "Anything else?", "The cat sleeps.")
        prompt = app["engine"].calls[-1][0]
        asked = [part.get("text", "") for message in prompt for part in message["content"] if message["role"] == "user"]
        assert any("What is in Picture 1?" in text for text in asked) and any("Anything else?" in text for text in asked)
        assert any(part["type"] == "image" for message in prompt for part in message["content"])
    finally:
        context.close()
        app["demo"].close()


def test_new_chat_rename_and_delete(browser, artifacts):
    with one_browser(browser) as (app, context):
        tab = open_tab(context, app)
        # nothing to regenerate yet (page.js disables it on the frame after the page renders)
        tab.wait_for_function("() => document.querySelector('#regenerate')?.disabled === true", timeout=5_000)
        answered(tab, "First question", "The cat sleeps.")
        assert tab.locator("#regenerate").is_enabled()
        tab.locator("#history .history-open").first.wait_for(state="attached", timeout=15_000)
        # The list is named on the title's line (Gradio's own way in is a small chevron at the edge).
        tab.get_by_role("button", name="Your conversations (1)").click()
        tab.wait_for_function("document.querySelector('#history-sidebar').classList.contains('open')", timeout=5_000)
        kept_titles(tab)
        tab.fill("#message textarea", "half a thought")
        tab.locator("#history .history-new").click()
        tab.locator("#chatbot [data-testid='user']").first.wait_for(state="detached", timeout=10_000)
        assert tab.locator("#message textarea").input_value() == "half a thought"  # a new chat keeps the draft (Clear too)
        answered(tab, "Second question", "On a sofa.")
        tab.locator("#history .history-open").nth(1).wait_for(state="attached", timeout=15_000)
        assert kept_titles(tab) == ["Second question", "First question"]  # newest first
        tab.locator("#history .history-rename").nth(1).click()
        tab.fill("#history .history-title", "Renamed")
        tab.keyboard.press("Enter")
        tab.locator("#history .history-open", has_text="Renamed").wait_for(timeout=5_000)
        tab.screenshot(path=str(artifacts / "history-renamed.png"))
        tab.locator("#history .history-delete").first.click()  # the current one: the chat starts anew
        tab.locator("#chatbot [data-testid='user']").first.wait_for(state="detached", timeout=10_000)
        assert kept_titles(tab) == ["Renamed"]
        tab.locator("#history .history-delete-all").click()
        tab.locator("#history .history-delete-all").click()  # asked twice
        tab.locator("#history .history-empty").wait_for(timeout=5_000)
        tab.reload()
        tab.get_by_text("is ready").wait_for(timeout=15_000)
        assert kept_titles(tab) == []  # really gone


def test_an_open_tab_says_when_the_app_is_gone_and_follows_on_when_it_is_back(browser, artifacts):
    """Issue 23: after a restart an open tab still said the model "is ready", and the next message
    replaced the whole conversation (3 turns became 1)."""
    port = free_port()
    app = started(port)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        tab = open_tab(context, app)
        answered(tab, "First question", "The cat sleeps.")
        answered(tab, "Second question", "On a sofa.")
        tab.locator("#history .history-open").first.wait_for(state="attached", timeout=15_000)  # kept
        app["demo"].close()  # the app goes away, the tab stays open
        tab.locator("#connection").wait_for(state="visible", timeout=10_000)
        assert "cannot be reached" in tab.locator("#connection").inner_text()
        tab.fill("#message textarea", "Third question")  # typed meanwhile
        tab.screenshot(path=str(artifacts / "history-app-gone.png"))
        app = started(port)
        tab.locator("#connection").wait_for(state="hidden", timeout=15_000)  # gone once the conversation is back
        assert tab.locator("#message textarea").input_value() == "Third question"  # the draft is kept
        answered(tab, "Third question", "The cat sleeps.")
        prompt = app["engine"].calls[-1][0]
        asked = [part.get("text", "") for message in prompt for part in message["content"] if message["role"] == "user"]
        assert [q for q in ("First question", "Second question", "Third question") if any(q in a for a in asked)] == [
            "First question", "Second question", "Third question"]  # all three turns: nothing replaced
    finally:
        context.close()
        app["demo"].close()


def put_records(tab, records: list[dict]) -> None:
    """Write conversations straight into the page's IndexedDB (as another app version or a full browser would
    have left them): each {id, title, updated, text} becomes a kept file holding `text`."""
    tab.evaluate(
        """async (records) => {
            const db = await new Promise((ok, ko) => { const r = indexedDB.open("qwen-vl-chat", 1); r.onsuccess = () => ok(r.result); r.onerror = ko; });
            await new Promise((ok, ko) => {
                const tx = db.transaction(["conversations", "files"], "readwrite");
                for (const r of records) {
                    const blob = new Blob([r.text], { type: "application/json" });
                    tx.objectStore("conversations").put({ id: r.id, title: r.title, created: r.updated, updated: r.updated, bytes: blob.size });
                    tx.objectStore("files").put({ id: r.id, blob });
                }
                tx.oncomplete = ok; tx.onerror = ko;
            });
            db.close();
        }""",
        records,
    )


def test_a_second_tab_writing_the_same_conversation_keeps_both(browser, artifacts):
    """Two tabs of one browser opened one conversation and both went on: the last one kept used to win."""
    with one_browser(browser) as (app, context):
        first = open_tab(context, app)
        answered(first, "Shared start", "The cat sleeps.")
        first.locator("#history .history-open").first.wait_for(state="attached", timeout=15_000)
        second = open_tab(context, app)
        kept_titles(second)
        second.locator("#history .history-open").first.click()
        second.locator("#chatbot").get_by_text("The cat sleeps.").wait_for(timeout=15_000)
        answered(first, "From the first tab", "On a sofa.")
        first.wait_for_function("() => document.querySelector('#history .history-when') && true")
        first.wait_for_timeout(1500)  # kept (the page keeps a copy once the chat has settled)
        answered(second, "From the second tab", "A third answer.")
        second.locator("#history .history-notice").wait_for(timeout=15_000)
        assert "changed in another tab" in second.locator("#history .history-notice").inner_text()
        titles = kept_titles(second)
        assert len(titles) == 2 and titles[1] == "Shared start" and titles[0].startswith("Shared start (")
        second.screenshot(path=str(artifacts / "history-two-tabs.png"))
        # Each is whole: the first tab's turns in one, the second's in the other.
        second.reload()
        second.locator("#chatbot").get_by_text("From the second tab").wait_for(timeout=15_000)
        assert "From the first tab" not in " ".join(chat_texts(second))
        kept_titles(second)
        second.locator("#history .history-open", has_text="Shared start").last.click()
        second.locator("#chatbot").get_by_text("From the first tab").wait_for(timeout=15_000)
        assert "From the second tab" not in " ".join(chat_texts(second))


def test_an_unreadable_kept_conversation_says_why_once_and_loses_nothing_else(browser, artifacts):
    with one_browser(browser) as (app, context):
        tab = open_tab(context, app)
        answered(tab, "A good conversation", "The cat sleeps.")
        tab.locator("#history .history-open").first.wait_for(state="attached", timeout=15_000)
        newer = '{"format": "qwen-vl-chat/conversation", "version": 99, "turns": []}'
        put_records(tab, [
            {"id": "broken", "title": "Cut in half", "updated": 1, "text": '{"format": "qwen-vl-chat/conv'},
            {"id": "newer", "title": "From a newer app", "updated": 2, "text": newer},
        ])
        tab.reload()
        tab.locator("#chatbot").get_by_text("The cat sleeps.").wait_for(timeout=15_000)
        for title, why in (("Cut in half", "not"), ("From a newer app", "version 99")):
            kept_titles(tab)
            tab.locator("#history .history-open", has_text=title).click()
            tab.locator("#history .history-unreadable").filter(has_text=why).wait_for(timeout=15_000)
            refusal = tab.locator("#chatbot [data-testid='bot']").last.inner_text()
            assert refusal.startswith("⚠") and why in refusal
            assert any("A good conversation" in t for t in chat_texts(tab))  # the chat shown stays
        tab.screenshot(path=str(artifacts / "history-unreadable.png"))
        assert sorted(kept_titles(tab)) == ["A good conversation", "Cut in half", "From a newer app"]  # nothing deleted
        # The tab still keeps its own conversation (not under the unreadable one's name), and a reload does
        # not try the refused files again.
        send(tab, "And a follow-up")  # (the refusal's bubble goes: the chat then counts as many answers as before)
        tab.locator("#chatbot").get_by_text("On a sofa.").wait_for(timeout=15_000)
        tab.locator("#message button.submit-button").wait_for(timeout=15_000)
        tab.wait_for_timeout(1500)
        tab.reload()
        tab.locator("#chatbot").get_by_text("And a follow-up").wait_for(timeout=15_000)
        assert not any(t.startswith("⚠") for t in chat_texts(tab))
        assert sorted(kept_titles(tab)) == ["A good conversation", "Cut in half", "From a newer app"]


def test_a_full_browser_store_says_so_and_keeps_the_chat(browser):
    """At most 100 conversations are kept: the 101st is not kept, with one sentence, and nothing is dropped."""
    with one_browser(browser) as (app, context):
        tab = open_tab(context, app)
        tab.wait_for_function("() => !!window.qvcHistory")
        put_records(tab, [{"id": f"old-{n}", "title": f"Old {n}", "updated": 1000 + n, "text": "{}"} for n in range(100)])
        tab.reload()
        tab.get_by_text("is ready").wait_for(timeout=15_000)
        answered(tab, "One too many", "The cat sleeps.")
        notice = tab.locator("#history .history-notice")
        notice.wait_for(state="attached", timeout=15_000)
        assert "at most 100 conversations" in notice.inner_text() and "delete some" in notice.inner_text()
        titles = kept_titles(tab)
        assert len(titles) == 100 and "One too many" not in titles
        tab.locator("#history .history-delete").last.click()  # room for one: the next change keeps it
        answered(tab, "Now there is room", "On a sofa.")
        tab.locator("#history .history-open", has_text="One too many").wait_for(state="attached", timeout=15_000)
        assert not tab.locator("#history .history-notice").count()


def test_the_list_on_a_phone(browser, artifacts):
    """On a 390x844 phone the list opens over the chat, and choosing a conversation shows the chat again."""
    with one_browser(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True) as (app, context):
        tab = open_tab(context, app)
        answered(tab, "Kept on a phone", "The cat sleeps.")
        tab.locator("#history .history-open").first.wait_for(state="attached", timeout=15_000)
        tab.locator("#history-sidebar").get_by_role("button", name="Toggle Sidebar").tap()
        item = tab.locator("#history .history-new")
        item.wait_for(state="visible", timeout=5_000)
        tab.wait_for_timeout(500)  # the sidebar's slide
        box = tab.locator("#history .history-open").first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] >= 24  # on screen, big enough to tap
        tab.screenshot(path=str(artifacts / "history-phone.png"))
        item.tap()  # New chat: the list closes, the chat is empty
        tab.locator("#chatbot [data-testid='user']").first.wait_for(state="detached", timeout=10_000)
        tab.wait_for_function("() => !document.querySelector('#history-sidebar').classList.contains('open')", timeout=5_000)
        tab.locator("#history-sidebar").get_by_role("button", name="Toggle Sidebar").tap()
        tab.locator("#history .history-open", has_text="Kept on a phone").tap()
        tab.locator("#chatbot").get_by_text("The cat sleeps.").wait_for(timeout=15_000)
        tab.wait_for_function("() => !document.querySelector('#history-sidebar').classList.contains('open')", timeout=5_000)


def test_clear_and_load_start_a_conversation_of_their_own(browser, tmp_path):
    """The next question after Clear (or a loaded file) used to be kept over the conversation it replaced."""
    with one_browser(browser, accept_downloads=True) as (app, context):
        tab = open_tab(context, app)
        answered(tab, "The first conversation", "The cat sleeps.")
        tab.locator("#history .history-open").first.wait_for(state="attached", timeout=15_000)
        tab.locator("#clear").click()
        tab.locator("#restore").click()  # Clear's Undo: the same conversation again, not a copy
        tab.locator("#chatbot").get_by_text("The cat sleeps.").wait_for(timeout=10_000)
        tab.wait_for_timeout(1500)
        assert kept_titles(tab) == ["The first conversation"]
        tab.locator("#clear").click()
        tab.locator("#chatbot [data-testid='user']").first.wait_for(state="detached", timeout=10_000)
        answered(tab, "A second one", "On a sofa.")
        tab.locator("#history .history-open").nth(1).wait_for(state="attached", timeout=15_000)
        assert kept_titles(tab) == ["A second one", "The first conversation"]
        # Load a saved file (the second conversation's) over the first: kept beside it, not over it.
        saved = tmp_path / "saved.json"
        tab.locator("#save-load > button").first.click()
        with tab.expect_download() as download:
            tab.locator("#save").click()
        download.value.save_as(saved)
        tab.locator("#history .history-open", has_text="The first conversation").click()
        tab.locator("#chatbot").get_by_text("The cat sleeps.").wait_for(timeout=15_000)
        tab.wait_for_timeout(1000)
        tab.set_input_files("#save-load input[type=file]", [str(saved)])
        tab.locator("#chatbot").get_by_text("On a sofa.").wait_for(timeout=15_000)
        tab.locator("#history .history-open").nth(2).wait_for(state="attached", timeout=15_000)
        assert sorted(kept_titles(tab)) == ["A second one", "A second one", "The first conversation"]
        tab.locator("#history .history-open", has_text="The first conversation").click()
        tab.locator("#chatbot").get_by_text("The cat sleeps.").wait_for(timeout=15_000)
        assert "On a sofa." not in " ".join(chat_texts(tab))  # the first one as it was
