"""The inspector as a person uses it, in Chromium: real photos, answers in each family's format.

The answers are forced through a scripted engine (tests/fakes.py) that sizes pictures as
the real processors do (smart_resize), so Qwen2.5-VL's absolute pixels mean what they mean
for the real model. Screenshots land in tests/artifacts/; `inspector.png` is the README's.
"""

from __future__ import annotations

import json
import re

import pytest

from demo.media.resize import smart_resize
from demo.record.conversation import VisionCost
from grounding.generations import generation
from tests.fakes import ScriptedEngine
from tests.test_browser import ready_page

pytestmark = pytest.mark.browser
MAX_PIXELS = 28 * 28 * 256


class Engine(ScriptedEngine):
    """Replays scripted answers; pictures cost what the family's processor makes of them."""

    def vision_cost(self, size_wh, settings):
        factor = generation(self.family).resize_factor
        height, width = smart_resize(size_wh[1], size_wh[0], factor, factor * factor * 4, MAX_PIXELS)
        return VisionCost((width, height), width * height // factor**2)

    def say(self, family: str, answer: str, pieces: int = 6, delay: float = 0.0) -> None:
        """The next answer: `answer` in `pieces` pieces, `delay` seconds apart, in `family`'s coordinates."""
        self.family, self.delay = family, delay
        size = -(-len(answer) // pieces)
        self.answers.append([answer[i : i + size] for i in range(0, len(answer), size)])


@pytest.fixture(scope="module")
def app():
    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.page.ui import CSS, build_ui
    from demo.web import serve
    from demo.web.guard import GuardSettings

    engine = Engine([])
    slot = EngineSlot("scripted")
    slot.fill(engine)
    demo = build_ui(ChatHandlers(slot), concurrency=2)
    # As app.py serves it: behind the guard, which serves the inspector's pictures to their own browser only.
    _, url, _ = serve.launch(
        demo, GuardSettings(max_pending=64), max_queue=None, prevent_thread_lock=True, css=CSS, server_name="127.0.0.1", quiet=True
    )
    yield {"url": url, "engine": engine}
    demo.close()


@pytest.fixture
def page(browser, app):  # noqa: F811
    with ready_page(browser, app["url"], viewport={"width": 1440, "height": 1000}) as page:
        yield page


def ask(page, text: str, files=(), wait: bool = True) -> None:
    if files:
        page.set_input_files("#message input[type=file]", [str(f) for f in files])
        page.locator("#message .thumbnail-item").nth(len(files) - 1).wait_for(timeout=10_000)
    before = page.locator("#chatbot [data-testid='bot']").count()
    page.locator("#message textarea").fill(text)
    page.keyboard.press("Enter")
    if wait:  # the answer's message first: until the event starts, Stop is hidden too
        page.wait_for_function(
            "n => document.querySelectorAll(\"#chatbot [data-testid='bot']\").length > n", arg=before, timeout=20_000
        )
        page.locator("#message button.stop-button").wait_for(state="hidden", timeout=30_000)
        page.locator("#message button.submit-button").wait_for(timeout=5_000)


def drawn(page, count: int | None = None) -> list[dict]:
    """The groundings drawn in the view (their ids, classes and screen boxes), once `count` are there."""
    if count is not None:
        page.wait_for_function(f"document.querySelectorAll('#inspect-view .qi-overlay .qi-shape:not(.qi-ref)').length === {count}", timeout=10_000)
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('#inspect-view .qi-overlay .qi-shape')).map(e => {
             const r = e.getBoundingClientRect();
             return {id: e.dataset.id, cls: e.getAttribute('class'), stroke: getComputedStyle(e).stroke,
                     x: r.x, y: r.y, w: r.width, h: r.height}; })"""
    )


def picture_to_screen(page, x: float, y: float) -> tuple[float, float]:
    """Where picture pixel (x, y) is on the screen, from the picture element's own geometry."""
    return tuple(
        page.evaluate(
            """([x, y]) => { const img = document.querySelector('#inspect-view .qi-img');
                 const r = img.getBoundingClientRect();
                 return [r.x + x * r.width / img.naturalWidth, r.y + y * r.height / img.naturalHeight]; }""",
            [x, y],
        )
    )


def list_rows(page, table: str = "#inspect-list") -> list[list[str]]:
    """The rows of a gr.Dataframe as shown (its rows are div[role=row], drawn as they scroll in)."""
    return page.evaluate(
        """(table) => Array.from(document.querySelectorAll(table + ' [role=row][data-index]'))
             .sort((a, b) => a.dataset.index - b.dataset.index)
             .map(row => Array.from(row.querySelectorAll('[role=gridcell]')).map(cell => cell.innerText.trim()))""",
        table,
    )


def shot(page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / name), clip=page.locator("#inspector").bounding_box())


CAT = (
    "In Picture 1, <|object_ref_start|>the cat's face<|object_ref_end|><|box_start|>(180,80),(800,980)<|box_end|> with "
    "<|object_ref_start|>an ear<|object_ref_end|><|box_start|>(250,60),(420,330)<|box_end|> and "
    "<|object_ref_start|>an ear<|object_ref_end|><|box_start|>(560,50),(760,330)<|box_end|>."
)


def test_qwen2_vl_tokens_highlight_toggle_and_zoom(page, app, photos, artifacts):
    app["engine"].say("qwen2-vl", CAT)
    ask(page, "Find the cat's face and ears.", [photos["chelsea"]])
    shapes = drawn(page, 3)
    assert [s["id"] for s in shapes] == ["d0", "d1", "d2"]
    # The face box (0-1000 of 451×300: x 81.2 to 360.8) lies where those picture pixels are on screen.
    face = shapes[0]
    left, top = picture_to_screen(page, 81.18, 24.0)
    right, bottom = picture_to_screen(page, 360.8, 294.0)
    assert abs(face["x"] + 1.25 - left) < 2 and abs(face["y"] + 1.25 - top) < 2  # (half the 2.5 px stroke)
    assert abs(face["x"] + face["w"] - 1.25 - right) < 2 and abs(face["y"] + face["h"] - 1.25 - bottom) < 2
    assert list_rows(page) == [
        ["1", "the cat's face", "box", "[180, 80, 800, 980]", "(81.2, 24, 360.8, 294)", "280×270"],
        ["2", "an ear", "box", "[250, 60, 420, 330]", "(112.8, 18, 189.4, 99)", "77×81"],
        ["3", "an ear", "box", "[560, 50, 760, 330]", "(252.6, 15, 342.8, 99)", "90×84"],
    ]
    about = page.locator("#inspect-view .qi-about").inner_text()
    assert "451×300 px · 3 boxes · the model's numbers are 0–1000 of the picture" in about

    # Hovering the right ear's box highlights it and its span in the answer, and names it.
    page.locator("#inspect-view").scroll_into_view_if_needed()
    page.mouse.move(*picture_to_screen(page, 300, 50))
    hot = page.evaluate("Array.from(document.querySelectorAll('#inspect-view .hot')).map(e => e.dataset.id)")
    assert set(hot) == {"d2"} and len(hot) >= 3  # the box, its tag, its pieces of text
    span = "".join(page.locator("#inspect-view .qi-span.hot").all_inner_texts())
    assert span == "<|box_start|>(560,50),(760,330)<|box_end|>"  # the grounding's own text in the raw answer
    assert page.locator("#inspect-view .qi-tip").inner_text() == "#3 an ear · box (253, 15, 343, 99) px"
    shot(page, artifacts, "inspector-hover.png")

    # Selecting a row of the list selects that box and its span (and the row shows it).
    page.locator("#inspect-list [role=gridcell]").get_by_text("the cat's face", exact=True).click()
    page.wait_for_function("document.querySelector('#inspect-view rect[data-id=d0]').classList.contains('sel')")
    assert page.evaluate("document.querySelector('#inspect-view .qi-span.sel').dataset.id") == "d0"
    assert page.evaluate("document.querySelector('#inspect-view .qi').classList.contains('qi-focus')")

    # Zoom: the wheel over the picture enlarges it and its boxes; lines stay 2.5 px wide on screen.
    before = drawn(page)[0]["w"]
    page.locator("#inspect-view .qi-viewport").scroll_into_view_if_needed()
    page.mouse.move(*picture_to_screen(page, 220, 150))
    page.mouse.wheel(0, -500)
    page.wait_for_function("parseInt(document.querySelector('#inspect-view .qi-zoom').textContent) > 250")
    assert drawn(page)[0]["w"] > 1.6 * before
    assert page.evaluate("getComputedStyle(document.querySelector('#inspect-view rect[data-id=d1]')).strokeWidth") == "2.5px"
    page.locator("#inspect-view button[data-zoom=fit]").click()

    # Toggling a label off hides its boxes and rows; label tags go off and on.
    page.locator("#inspect-labels").get_by_text("an ear ×2").click()
    drawn(page, 1)
    assert [row[1] for row in list_rows(page)] == ["the cat's face"]
    assert "1 box" not in page.locator("#inspect-view .qi-about").inner_text()
    assert "2 hidden" in page.locator("#inspect-view .qi-about").inner_text()
    page.locator("#inspect-tags").get_by_text("Label tags on the picture").click()
    page.wait_for_function("document.querySelectorAll('#inspect-view .qi-tag').length === 0")
    page.locator("#inspect-tags").get_by_text("Label tags on the picture").click()
    page.locator("#inspect-labels").get_by_text("an ear ×2").click()
    drawn(page, 3)
    page.wait_for_function("document.querySelectorAll('#inspect-view .qi-tag').length === 3")


COFFEE = """In Picture 1:
```json
[
  {"bbox_2d": [152, 16, 364, 259], "label": "cup"},
  {"bbox_2d": [66, 66, 426, 353], "label": "saucer"},
  {"bbox_2d": [300, 140, 370, 280], "label": "spoon"},
  {"bbox_2d": [10, 330, 60, 360], "label": "crumb"}
]
```"""  # Qwen2.5-VL: pixels of the 532×364 picture the model saw (600×400 → smart_resize)
ROCKET = """In Picture 2 the rocket:
```json
[{"bbox_2d": [253, 107, 283, 348], "label": "rocket"}, {"point_2d": [266, 120], "label": "nose"}]
```"""  # pixels of the 532×364 picture the model saw (640×427)


def test_qwen25_vl_absolute_pixels_two_pictures_and_the_pickers(page, app, photos, artifacts, tmp_path):
    app["engine"].say("qwen2.5-vl", COFFEE)
    ask(page, "Locate the cup, the saucer and the spoon in Picture 1.", [photos["coffee"], photos["rocket"]])
    drawn(page, 4)
    assert "the model's numbers are pixels of the 532×364 picture it saw" in page.locator("#inspect-view .qi-about").inner_text()
    cup = list_rows(page)[0]
    assert cup[:5] == ["1", "cup", "box", "[152, 16, 364, 259]", "(171.4, 17.6, 410.5, 284.6)"]  # 600/532 and 400/364
    app["engine"].say("qwen2.5-vl", ROCKET)
    ask(page, "And the rocket in Picture 2?")
    drawn(page, 2)
    assert page.locator("#inspect-view .qi-title").inner_text() == "Turn 2 · Picture 2 · rocket.jpg"
    assert [s["cls"].split()[1] for s in drawn(page)] == ["qi-box", "qi-point"]
    assert list_rows(page)[1][:5] == ["2", "nose", "point", "[266, 120]", "(320, 140.8)"]
    # The answer panel shows the raw answer, the JSON objects marked as the groundings' spans.
    spans = page.evaluate("Array.from(document.querySelectorAll('#inspect-view .qi-span')).map(e => e.textContent)")
    assert spans == ['{"bbox_2d": [253, 107, 283, 348], "label": "rocket"}', '{"point_2d": [266, 120], "label": "nose"}']

    # The turn picker goes back to turn 1; its picture picker lists both pictures.
    page.locator("#inspect-turn input").click()
    page.get_by_role("option", name=re.compile(r"^Turn 1 · Locate the cup")).click()
    page.wait_for_function("document.querySelector('#inspect-view .qi-title').textContent === 'Turn 1 · Picture 1 · coffee.png'")
    drawn(page, 4)
    page.locator("#inspect-picture input").click()
    page.get_by_role("option", name="Picture 2 · rocket.jpg · 0 groundings").click()
    page.wait_for_function("document.querySelector('#inspect-view .qi-title').textContent === 'Turn 1 · Picture 2 · rocket.jpg'")
    drawn(page, 0)
    page.locator("#inspect-turn input").click()
    page.get_by_role("option", name="Latest answer").click()
    page.wait_for_function("document.querySelector('#inspect-view .qi-title').textContent === 'Turn 2 · Picture 2 · rocket.jpg'")

    # Undo follows: the inspector shows turn 1 again; Clear empties it, and it gets out of the way.
    page.get_by_role("button", name="Undo last turn").click()
    page.wait_for_function("document.querySelector('#inspect-view .qi-title').textContent === 'Turn 1 · Picture 1 · coffee.png'")
    page.get_by_text("Clear", exact=True).click()
    page.locator("#inspector").wait_for(state="hidden", timeout=10_000)

    # Loading a saved conversation: the inspector shows its latest answer.
    page.get_by_text("Save or load the conversation").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_text("Load a saved conversation").click()
    chooser.value.set_files(saved_conversation(tmp_path, photos["rocket"], ROCKET.replace("Picture 2", "Picture 1")))
    # (the inspector comes back into the page: no title until it is there)
    page.wait_for_function("document.querySelector('#inspect-view .qi-title')?.textContent === 'Turn 1 · Picture 1 · rocket.jpg'")
    drawn(page, 2)


def saved_conversation(folder, photo, answer: str) -> str:
    """A conversation file as Save writes it: one question about `photo`, answered with `answer`."""
    from PIL import Image

    from demo.record.conversation import Attachment, Conversation, Turn
    from demo.record.session_file import dump_conversation

    image = Image.open(photo).convert("RGB")
    turn = Turn("Where is the rocket?", [Attachment(path=str(photo), image=image, name=photo.name)], answer=answer, status="done")
    turn.input_sizes = [(532, 364)]
    path = folder / "conversation.json"
    path.write_text(dump_conversation(Conversation([turn])))
    return str(path)


def test_the_inspector_updates_live_while_the_answer_streams(page, app, photos):
    objects = [
        '{"bbox_2d": [305, 60, 685, 670], "label": "cup"}',
        '{"bbox_2d": [110, 160, 800, 970], "label": "saucer"}',
        '{"bbox_2d": [540, 160, 710, 810], "label": "spoon"}',
    ]
    answer = "Here they are:\n```json\n[" + ", ".join(objects) + "]\n```"  # Qwen3-VL: 0-1000
    app["engine"].say("qwen3-vl", answer, pieces=24, delay=0.25)
    ask(page, "Locate the cup, the saucer and the spoon.", [photos["coffee"]], wait=False)
    stop = page.locator("#message button.stop-button")
    stop.wait_for(timeout=10_000)
    seen = set()  # (boxes drawn, the "live" badge shown), while the answer streams
    while stop.is_visible():
        seen.add(
            tuple(
                page.evaluate(
                    """() => [document.querySelectorAll('#inspect-view .qi-overlay .qi-shape').length,
                              document.querySelector('#inspect-view .qi-live')?.hidden === false]"""
                )
            )
        )
        page.wait_for_timeout(100)
    assert {(1, True), (2, True)} <= seen  # boxes appeared one by one, before the answer ended
    drawn(page, 3)
    assert not page.locator("#inspect-view .qi-live").is_visible()
    # Regenerate: the inspector follows the new answer.
    app["engine"].say("qwen3-vl", '[{"bbox_2d": [305, 60, 685, 670], "label": "just the cup"}]')
    page.get_by_text("Regenerate", exact=True).click()
    drawn(page, 1)
    assert list_rows(page)[0][1] == "just the cup"


def coco_for_coffee(tmp_path) -> str:
    """Reference boxes for coffee.png (600×400), drawn by hand, COCO style (x, y, width, height)."""
    data = {
        "images": [{"id": 7, "file_name": "examples/coffee.png", "width": 600, "height": 400}],
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "Saucer"}, {"id": 3, "name": "spoon"}, {"id": 4, "name": "handle"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [172, 18, 238, 267]},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [75, 72, 405, 316]},
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [325, 65, 100, 260]},
            {"id": 4, "image_id": 7, "category_id": 4, "bbox": [195, 228, 67, 80]},
        ],
    }
    path = tmp_path / "coffee-coco.json"
    path.write_text(json.dumps(data))
    return str(path)


def upload(page, path: str) -> None:
    """Choose a reference file with the upload button, as a person does."""
    with page.expect_file_chooser() as chooser:
        page.locator("#truth-upload").click()
    chooser.value.set_files(path)


def test_ground_truth_colours_figures_and_a_bad_file(page, app, photos, artifacts, tmp_path):
    app["engine"].say("qwen2.5-vl", COFFEE)
    ask(page, "Locate the cup, the saucer and the spoon in Picture 1.", [photos["coffee"]])
    drawn(page, 4)
    page.locator("#truth").get_by_text("Compare with ground truth").click()
    bad = tmp_path / "broken.json"
    bad.write_text('{"annotations": [{"image_id": 1, "bbox": [0, 0, NaN, 1]}], "images": []}')
    upload(page, str(bad))
    page.locator("#truth-status").get_by_text("⚠ Not loaded: broken.json is not a reference file: it holds NaN").wait_for(timeout=10_000)
    upload(page, coco_for_coffee(tmp_path))
    page.locator("#truth-status").get_by_text("coffee-coco.json: 4 reference boxes on 1 image (COCO); 1 of them is a picture of this chat.").wait_for(timeout=10_000)
    page.wait_for_function("document.querySelectorAll('#inspect-view .qi-ref').length === 4")
    # cup and saucer match (green), the spoon box is off (IoU 0.47 < 0.5) and the crumb is extra (red);
    # the spoon and the handle are missed (amber, dashed).
    status = {s["id"]: s["cls"] for s in drawn(page)}
    assert "qi-matched" in status["d0"] and "qi-matched" in status["d1"]
    assert "qi-extra" in status["d2"] and "qi-extra" in status["d3"]
    assert [status[f"r{i}"].split()[-1] for i in range(4)] == ["qi-matched", "qi-matched", "qi-missed", "qi-missed"]
    strokes = {s["id"]: s["stroke"] for s in drawn(page)}
    assert strokes["d0"] == "rgb(22, 163, 74)" and strokes["d3"] == "rgb(220, 38, 38)" and strokes["r3"] == "rgb(245, 158, 11)"
    truth = page.locator("#inspect-view .qi-truth").inner_text()
    assert truth.startswith("4 reference boxes · matched 2 · missed 2 · extra 2 · precision 0.50 · recall 0.50 · mean IoU 0.9")
    assert truth.endswith("(IoU ≥ 0.5, same label)")  # "Saucer" matches "saucer": case does not count
    rows = list_rows(page)
    assert rows[0][6:] == ["matched r1", "0.99"] and rows[2][6:] == ["extra", ""]
    assert rows[4][:3] == ["r3", "spoon", "reference"] and rows[4][6] == "missed"
    assert list_rows(page, "#truth-scores")[0] == ["1", "Picture 1", "4", "4", "2", "2", "2", "0.50", "0.50", "0.99"]
    page.locator("#inspect-view").scroll_into_view_if_needed()
    shot(page, artifacts, "inspector-ground-truth.png")

    # A lower threshold lets the spoon match: the figures follow.
    page.evaluate(
        """() => { const s = document.querySelector('#truth-threshold input[type=range]');
             s.value = '0.4'; s.dispatchEvent(new Event('input', {bubbles: true}));
             s.dispatchEvent(new Event('change', {bubbles: true})); s.dispatchEvent(new Event('pointerup', {bubbles: true})); }"""
    )
    page.wait_for_function("document.querySelector('#inspect-view .qi-truth').textContent.includes('matched 3')", timeout=10_000)
    assert "(IoU ≥ 0.4, same label)" in page.locator("#inspect-view .qi-truth").inner_text()

    # The page as the README shows it (docs/inspector.png is a copy of this screenshot).
    page.set_viewport_size({"width": 1440, "height": 1280})
    page.mouse.move(5, 5)
    page.evaluate("window.scrollTo(0, 0)")
    if page.locator(".toast-close").count():
        page.locator(".toast-close").first.click()
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "inspector.png"))

    # On a narrow screen the inspector goes under the chat.
    page.set_viewport_size({"width": 760, "height": 1000})
    page.wait_for_timeout(300)
    chat, inspector = page.locator("#chat-column").bounding_box(), page.locator("#inspector").bounding_box()
    assert inspector["y"] >= chat["y"] + chat["height"] - 1 and inspector["width"] > 600
