"""Hostile text in every place the page shows untrusted text, in Chromium, with the network watched.

A canary HTTP server on another port is the target of every URL in the hostile texts; it
must get no request, the page must make no request to any other origin, and the chat must
hold no element that loads or links anything. The inert display is tested with the page's
Content-Security-Policy switched off (`bypass_csp`), so that the escaping alone is on trial;
the policy is tested apart, by planting elements the escaping would never let through.
Places: the person's message, the model's answer (forced through the real model), a
grounding label, an uploaded file's name and its refusal notice, and a loaded conversation
file (questions, answers, error texts, file names).
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from tests.helpers import free_port
from tests.test_browser import ask

pytestmark = pytest.mark.browser


def beacon(url: str) -> str:
    """JavaScript that fetches `url`, written without '/' or quotes (it must survive in a file name)."""
    return f"fetch(String.fromCharCode({','.join(str(ord(c)) for c in url)}))"


def corpus(canary: str) -> list[str]:
    """Texts that tried to load or link `canary` (host:port) past the display, one attack each."""
    url = f"http://{canary}"
    js = beacon(f"{url}/onerror")  # fetched only if an event handler runs
    return [
        f"\\`<img src={url}/escaped-backticks.png>\\`",  # escaped backticks around HTML
        f"`<img src={url}/unbalanced.png>",  # an unbalanced backtick
        f"``<img src={url}/double.png>`` and ``` <img src={url}/triple.png>",  # double and triple backticks inline
        f"&lt;img src={url}/entity.png&gt; &#60;img src={url}/numeric.png&#62;",  # entities must stay text
        f"<style>@import url({url}/import.css); body {{ background: url({url}/bg.png) }}</style>",  # CSS fetches
        f'<a href="{url}/phish">log in again</a>',  # a phishing link
        f"![x]({url}/md-image.png) [log in again]({url}/md-link)",  # a Markdown image and link
        f"see {url}/autolink, <{url}/angle>, www.example.org and mail@example.org",  # autolinks to other sites
        f'<iframe src="{url}/frame"></iframe>',  # a frame
        f'<svg onload="{js}"><image href="{url}/svg-image.png"/></svg>',  # SVG with a handler
        f'<img src=x onerror="{js}">',  # an event handler on a broken image
        f"a\\\\<img src={url}/backslash.png> \\<img src={url}/escaped.png>",  # backslashes
        f"$$<img src={url}/latex.png>$$",  # LaTeX delimiters
        f"~~~mermaid\n<img src={url}/mermaid-tilde.png>\n~~~",  # a Mermaid block (raw HTML in Gradio 6.31)
        f"```mermaid\n<img src={url}/mermaid.png>\n```",
        f"<video src={url}/v.mp4 autoplay></video><link rel=stylesheet href={url}/link.css><object data={url}/o></object>",
        f"<math><mtext><table><mglyph><style><img src={url}/mxss.png>",  # a sanitizer-confusion classic
    ]


@pytest.fixture
def canary():
    """A local HTTP server on another port: it records every request it gets."""
    hits: list[str] = []

    class Record(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Record)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"host": f"127.0.0.1:{server.server_port}", "hits": hits}
    server.shutdown()


def watched_page(browser, app, *, bypass_csp: bool):  # noqa: F811 - the fixture
    context = browser.new_context(viewport={"width": 1200, "height": 1100}, bypass_csp=bypass_csp)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(app["url"])
    page.get_by_text("is ready").wait_for(timeout=15_000)
    page.locator("#chatbot").wait_for(timeout=15_000)
    return context, page, requests


def assert_nothing_left_the_page(page, requests, app, canary):
    origin = app["url"].rstrip("/")
    strangers = [u for u in requests if not (u.startswith(origin) or u.startswith(("data:", "blob:")))]
    assert strangers == []
    assert canary["hits"] == []
    # No message text holds an element that loads, frames, styles or runs anything (Gradio's own
    # icons carry a <style>: only the rendered Markdown of the messages is searched).
    kinds = ("img", "iframe", "object", "embed", "style", "link", "script", "video", "audio", "svg", "math", "a")
    planted = page.evaluate(
        """kinds => [...document.querySelectorAll(kinds.map(k => '#chatbot .md ' + k).join(', '))]
             .filter(e => !e.closest('button.copy_code_button'))  // Gradio's copy icon on code blocks
             .map(e => e.outerHTML.slice(0, 200))""",
        list(kinds),
    )
    assert planted == []
    foreign = page.evaluate(
        """origin => [...document.querySelectorAll('a[href], [src], [srcset]')]
             .map(e => e.href || e.src || e.getAttribute('srcset'))
             .filter(u => u && !u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:') && !u.startsWith('javascript:void'))""",
        origin,
    )
    assert foreign == []
    assert page.evaluate("window.pwned") is None


def test_hostile_messages_answers_and_labels_stay_text(browser, app, engine, photos, canary, artifacts):  # noqa: F811
    from tests.fakes import forced_answer

    texts = corpus(canary["host"])
    url = f"http://{canary['host']}"
    # The model's answer is forced through the real model, token by token (about 75 ms a token
    # here): a short one with the worst attacks, and a grounding whose label is hostile too.
    label = f"<img src={url}/label.png> [x]({url}/l)"
    answer = (
        f"\\`<img src={url}/a.png>\\` `<img src={url}/b.png> <style>@import url({url}/c.css)</style> "
        f"[log in again]({url}/d) <|object_ref_start|>{label}<|object_ref_end|><|box_start|>(100,100),(600,600)<|box_end|>"
    )
    context, page, requests = watched_page(browser, app, bypass_csp=True)
    app["engine"].min_new_tokens = 0  # the forced answer ends by itself
    try:
        with forced_answer(engine, answer):
            ask(page, "\n\n".join(texts), [photos["chelsea"]])  # the person's message holds every attack
    finally:
        app["engine"].min_new_tokens = 150
    page.wait_for_timeout(1500)  # let anything that would load, load
    chat = page.locator("#chatbot").inner_text()
    # Each attack is shown as the characters it was written with.
    assert f"\\`<img src={url}/escaped-backticks.png>\\`" in chat
    assert f'<a href="{url}/phish">log in again</a>' in chat
    assert f"\\`<img src={url}/a.png>\\` `<img src={url}/b.png>" in chat  # in the answer too
    assert "&lt;img" in chat  # an entity is shown as written
    assert f"<img src={url}/label.png> [x]({url}/l) [Picture 1]" in chat  # the label, in the answer
    assert page.locator("#chatbot .md td").filter(has_text=label).count() == 1  # and in the table of boxes
    assert_nothing_left_the_page(page, requests, app, canary)
    page.locator("#chatbot").screenshot(path=str(artifacts / "hostile-chat.png"))
    context.close()


def _png(size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_hostile_files_and_loaded_conversations_stay_text(browser, app, canary, tmp_path, artifacts):  # noqa: F811
    texts = corpus(canary["host"])
    js = beacon(f"http://{canary['host']}/n")
    png64 = base64.b64encode(_png()).decode()
    turns = [
        {
            "text": text,
            "images": [{"name": f"<img src=x onerror={js}>{i}.png", "png_base64": png64}] if i < 3 else [],
            "answer": text,
            "status": "error" if i % 2 else "done",
            "error": f"{text} <img src=x onerror={js}>" if i % 2 else "",
        }
        for i, text in enumerate(texts)
    ]
    saved = tmp_path / "hostile.json"
    saved.write_text(json.dumps({"format": "qwen-vl-chat/conversation", "version": 1, "turns": turns}))
    # Uploads keep what Gradio leaves of a name (it strips <>:"/\\|?*`$!{}): entities, brackets, '@', 'www.'.
    named = [tmp_path / f"&lt;img src=x onerror={js}&gt;.png", tmp_path / "[log in](x) www.example.org mail@example.org.png"]
    for path in named:
        path.write_bytes(_png())
    not_a_picture = tmp_path / "&lt;iframe src=x&gt; [x](y).png"
    not_a_picture.write_bytes(b"not a picture at all")

    context, page, requests = watched_page(browser, app, bypass_csp=True)
    page.get_by_text("Save or load the conversation").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_text("Load a saved conversation").click()
    chooser.value.set_files(str(saved))
    page.locator("#chatbot").get_by_text("log in again").first.wait_for(timeout=20_000)
    assert page.locator("#chatbot [data-testid='bot']").count() >= len(texts) // 2
    ask(page, "What is this?", named)  # uploaded files' names, in their captions
    page.set_input_files("#message input[type=file]", [str(not_a_picture)])
    page.locator("#message img, #message .thumbnail-item").first.wait_for(timeout=10_000)
    page.locator("#message textarea").fill("And this?")
    page.keyboard.press("Enter")
    page.get_by_text("Not sent").last.wait_for(timeout=10_000)  # the refusal names the file, in the chat and a toast
    page.wait_for_timeout(1500)
    chat = page.locator("#chatbot").inner_text()
    assert f"<img src=x onerror={js}>0.png" in chat and f"&lt;img src=x onerror={js}&gt;.png" in chat
    assert "[log in](x) www.example.org mail@example.org.png" in chat
    assert "&lt;iframe src=x&gt; [x](y).png" in chat
    assert_nothing_left_the_page(page, requests, app, canary)
    assert page.locator(".toast-body a, .toast-body img, .toast-body iframe").count() == 0
    page.locator("#chatbot").screenshot(path=str(artifacts / "hostile-loaded.png"))
    context.close()


def test_the_page_policy_loads_nothing_from_another_origin(browser, app, canary):  # noqa: F811
    """Elements planted in the page (as if the display had failed) load nothing from elsewhere."""
    context, page, requests = watched_page(browser, app, bypass_csp=False)
    violations = page.evaluate(
        """url => new Promise(resolve => {
             const seen = [];
             document.addEventListener('securitypolicyviolation', e => seen.push(e.effectiveDirective));
             document.body.insertAdjacentHTML('beforeend',
               `<img src="${url}/img.png"><iframe src="${url}/frame"></iframe>` +
               `<link rel="stylesheet" href="${url}/link.css">` +
               `<style>@import url("${url}/import.css"); @font-face { font-family: x; src: url("${url}/font.woff2") }` +
               ` #chatbot { background: url("${url}/bg.png"); font-family: x }</style><span style="font-family: x">x</span>`);
             fetch(`${url}/fetch`).catch(() => {});
             setTimeout(() => resolve(seen), 1500);
           })""",
        f"http://{canary['host']}",
    )
    assert canary["hits"] == []
    assert {"img-src", "frame-src", "style-src-elem", "connect-src"} <= set(violations)
    # An event handler planted the same way (the way HTML in a message would run) does not run.
    page.evaluate("""() => document.body.insertAdjacentHTML('beforeend',
                             '<img src="missing.png" onerror="window.pwned = 1">')""")
    page.wait_for_timeout(1000)
    assert page.evaluate("window.pwned") is None
    context.close()
