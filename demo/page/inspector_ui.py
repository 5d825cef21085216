"""The inspector on the page: its components, and the events that redraw it.

`InspectorPage` builds the inspector's column (pickers, the picture view, toggles, the list of
groundings, the ground-truth comparison) inside the current Blocks, and `wire` connects it:
it redraws whenever the chat changes (every streamed update, undo, regenerate, load, clear)
and whenever the person picks, toggles, selects or loads reference boxes. Its events are
private: API clients of /chat never pay for it. What it shows is `demo/views/inspector.py: inspect`
of the conversation record; this module only maps that to components. Its column stays hidden
until an answer has boxes or points. "Ask about this box" and "Zoom into this box" write the selected
(or drawn) box into the message being typed (`demo/page/regions.py`).

Why a custom view (a `gr.HTML` running demo/page/inspector.js) rather than `gr.AnnotatedImage`:
AnnotatedImage draws each box as a full-size mask PNG on the server (one per box, at every
update), with a fixed 3 px outline that vanishes when a big photo is shown small, labels only
in a legend, no points, no zoom, and no way to highlight a box from a table selection (its
own legend hover only). `gr.Image` has no zoom either (fullscreen only) and no hover. The
list is a `gr.Dataframe` (sortable, copyable, its `select` event picks a grounding).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from demo.media.errors import UploadError
from demo.page.handlers import ChatHandlers
from demo.page.regions import ask_message, drawn_box, selected_region, zoom_message
from demo.record.conversation import Conversation
from demo.views.ground_truth import ReferenceFileError, References, load_references
from demo.views.inspector import HEADERS, LATEST, SCORE_HEADERS, Inspection, Picks, inspect
from demo.views.markup import inert, toast

HERE = Path(__file__).parent
TEMPLATE = """<div class="qi">
<div class="qi-head"><span class="qi-title"></span><span class="qi-live" hidden>live</span>
<span class="qi-tools"><button type="button" data-zoom="out" title="Zoom out">−</button><span class="qi-zoom"></span>
<button type="button" data-zoom="in" title="Zoom in">+</button><button type="button" data-zoom="fit" title="Fit the picture">Fit</button>
<button type="button" data-zoom="one" title="One picture pixel per screen pixel">1:1</button>
<button type="button" class="qi-draw" aria-pressed="false" title="Drag on the picture to draw a box to ask about or zoom into (or hold Shift and drag; Escape cancels)">Draw a box</button></span></div>
<div class="qi-about"></div>
<div class="qi-truth" hidden></div>
<div class="qi-viewport"><div class="qi-stage"><img class="qi-img" alt="The picture inspected" draggable="false" hidden></div>
<svg class="qi-overlay"></svg><div class="qi-tags"></div><div class="qi-tip" hidden></div><div class="qi-message" hidden></div></div>
<div class="qi-legend" hidden><span class="qi-key" style="background:#16a34a"></span>matched
<span class="qi-key" style="background:#dc2626"></span>extra (no reference)
<span class="qi-key" style="background:#f59e0b"></span>missed reference (dashed)
<span class="qi-key" style="background:#fff;border:1px dashed #666"></span>matched reference (dashed)</div>
<div class="qi-answer" hidden></div>
</div>"""
MB = 1024 * 1024
# After "Ask about this box": the caret at the end of the question, to type it.
FOCUS_JS = "() => { const t = document.querySelector('#message textarea'); if (t) { t.focus(); t.setSelectionRange(t.value.length, t.value.length); } }"
# After "Inspect a picture": on a phone the inspector appears under the chat, out of view: scroll to it.
SHOW_JS = (
    "() => setTimeout(() => { const e = document.querySelector('#inspector');"
    " if (e && e.getBoundingClientRect().top > window.innerHeight - 40) e.scrollIntoView({ block: 'start' }); }, 200)"
)
NO_BOX = "Select a box first: click one on the picture, its row or its words in the answer, or draw one (Draw a box, or Shift+drag)."


class InspectorPage:
    """The inspector's components (built in the current Blocks context) and its event methods."""

    def __init__(
        self,
        handlers: ChatHandlers,
        conversation: gr.State,
        column: gr.Column | None = None,
        opener: gr.Button | None = None,
        jump: gr.Button | None = None,
    ) -> None:
        self.handlers = handlers
        self.conversation = conversation
        self.column = column  # shown once an answer has boxes or points, or when `opener` is clicked
        self.opener = opener  # "Inspect a picture", beside the chat while the column is hidden and there are pictures
        self.jump = jump  # "Inspector ↓" (a phone's way down to it), there while the column is
        self.picks = gr.State(Picks())
        self.references = gr.State(None)
        gr.Markdown("### Inspector\nAn answer's boxes and points on its picture at full resolution. Scroll to zoom, drag to pan; "
                    "hover or click a box, its row or its span in the answer. **Draw a box** (or Shift+drag) marks a region of your own; "
                    "ask about the selected box, or zoom into it: the crop goes with your next message as a new picture.")
        with gr.Row():
            self.turn = gr.Dropdown([(LATEST, 0)], value=0, label="Turn", elem_id="inspect-turn", scale=3)
            self.picture = gr.Dropdown([], value=None, label="Picture", elem_id="inspect-picture", scale=2)
        self.view = gr.HTML(
            {"message": "Ask about a picture: its boxes and points show here.", "items": [], "answer": []},
            html_template=TEMPLATE,
            css_template=(HERE / "inspector.css").read_text(),
            js_on_load=(HERE / "inspector.js").read_text() + (HERE / "inspector_draw.js").read_text(),
            elem_id="inspect-view",
        )
        with gr.Row(elem_id="inspect-region"):
            self.ask = gr.Button("Ask about this box", size="sm", interactive=False, elem_id="inspect-ask")
            self.zoom = gr.Button("Zoom into this box", size="sm", interactive=False, elem_id="inspect-zoom")
        with gr.Row():
            self.labels = gr.CheckboxGroup([], label="Labels shown", elem_id="inspect-labels", scale=3)
            with gr.Column(scale=1, min_width=160):
                self.tags = gr.Checkbox(True, label="Label tags on the picture", elem_id="inspect-tags")
                self.show_references = gr.Checkbox(True, label="Reference boxes", elem_id="inspect-refs")
        self.rows = gr.Dataframe(
            headers=HEADERS[:6], interactive=False, wrap=True, max_height=320, elem_id="inspect-list", label="Groundings on this picture"
        )
        with gr.Accordion("Compare with ground truth", open=False, elem_id="truth"):
            gr.Markdown(
                "Load reference boxes for this chat's pictures: a COCO file (matched by `images[].file_name` to the "
                "uploaded file's name) or a `detections.json` this app exported. Each turn's boxes are matched one to one, "
                "greedily by IoU: green matched, red extra, amber (dashed) missed. The figures go into the export too."
            )
            with gr.Row():
                self.upload = gr.UploadButton("Load reference boxes (.json)", file_types=[".json"], size="sm", elem_id="truth-upload")
                self.remove = gr.Button("Remove them", size="sm")
            self.status = gr.Markdown(elem_id="truth-status")
            with gr.Row():
                self.threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="IoU threshold", elem_id="truth-threshold")
                self.match_labels = gr.Checkbox(True, label="Labels must match (case and spaces aside)", elem_id="truth-labels")
            self.scores = gr.Dataframe(
                headers=SCORE_HEADERS, interactive=False, label="Per turn and picture", elem_id="truth-scores"
            )

    @property
    def outputs(self) -> list[gr.components.Component]:
        shown = [self.turn, self.picture, self.view, self.labels, self.rows, self.scores, self.ask, self.zoom]
        return shown + [c for c in (self.column, self.opener, self.jump) if c is not None]

    def wire(self, chatbot: gr.Chatbot, textbox: gr.MultimodalTextbox | None = None) -> None:
        """Redraw on every change of the chat and on every control; the region buttons write into `textbox`."""
        state = [self.conversation, self.picks, self.references]
        quiet = {"api_visibility": "private", "show_progress": "hidden", "concurrency_limit": None}
        chatbot.change(self.show, state, self.outputs, trigger_mode="always_last", **quiet)
        with_picks = [self.picks, *self.outputs]
        for control, method in (
            (self.turn, self.pick_turn),
            (self.picture, self.pick_picture),
            (self.labels, self.toggle_labels),
            (self.tags, self.toggle_tags),
            (self.show_references, self.toggle_references),
            (self.match_labels, self.toggle_label_matching),
        ):
            control.input(method, [control, *state], with_picks, **quiet)
        self.threshold.release(self.set_threshold, [self.threshold, *state], with_picks, **quiet)
        self.view.select(self.select_on_picture, state, with_picks, **quiet)
        self.rows.select(self.select_row, state, with_picks, **quiet)
        truth = [self.references, self.status, *self.outputs]
        self.upload.upload(self.load_references, [self.upload, *state], truth, **quiet)
        self.remove.click(self.remove_references, state, truth, **quiet)
        if self.opener is not None:
            self.opener.click(self.open, state, with_picks, **quiet).then(None, js=SHOW_JS, queue=False, api_visibility="private")
        if textbox is not None:
            self.ask.click(self.ask_about, [*state, textbox], [textbox], **quiet).then(None, js=FOCUS_JS, queue=False, api_visibility="private")
            files = {"api_visibility": "private", "show_progress": "hidden", "concurrency_id": "files", "concurrency_limit": 2}
            self.zoom.click(self.zoom_into, [*state, textbox], [textbox], **files).then(
                None, js=FOCUS_JS, queue=False, api_visibility="private"
            )

    # -- events ---------------------------------------------------------------------------------

    def show(self, conversation: Conversation | None, picks: Picks, references: References | None) -> dict:
        return self._render(inspect(conversation or Conversation(), self.handlers.family, picks, references), picks)

    def open(self, conversation, picks, references) -> dict:
        """Show the inspector before any answer has groundings (to see a picture whole, or draw a box on it)."""
        return self._changed(conversation, picks, references, opened=True)

    def pick_turn(self, turn, conversation, picks, references) -> dict:
        return self._changed(conversation, picks, references, turn=int(turn or 0), picture=0, selected=None, drawn=None)

    def pick_picture(self, picture, conversation, picks, references) -> dict:
        return self._changed(conversation, picks, references, picture=int(picture or 0), selected=None, drawn=None)

    def toggle_labels(self, shown: list[str], conversation, picks, references) -> dict:
        """`shown` are the labels left ticked: the others of this picture are hidden (other pictures' stay as they were)."""
        current = inspect(conversation or Conversation(), self.handlers.family, picks, None)
        here = {label for _, label in current.labels}
        return self._changed(conversation, picks, references, hidden=frozenset((picks.hidden - here) | (here - set(shown or []))))

    def toggle_tags(self, on: bool, conversation, picks, references) -> dict:
        return self._changed(conversation, picks, references, labels=bool(on))

    def toggle_references(self, on: bool, conversation, picks, references) -> dict:
        return self._changed(conversation, picks, references, references=bool(on))

    def toggle_label_matching(self, on: bool, conversation, picks, references) -> dict:
        return self._changed(conversation, picks, references, match_labels=bool(on))

    def set_threshold(self, threshold: float, conversation, picks, references) -> dict:
        return self._changed(conversation, picks, references, threshold=min(max(float(threshold), 0.05), 1.0))

    def select_on_picture(self, conversation, picks, references, evt: gr.SelectData) -> dict:
        """A box clicked (its id, or None to let go), or drawn: index "drawn", value its corners in picture pixels."""
        selected = evt.index if isinstance(evt.index, str) else None
        if selected == "drawn" and isinstance(evt.value, list):
            shown = inspect(conversation or Conversation(), self.handlers.family, picks, None)
            box = drawn_box(evt.value, shown.view.get("width") or 0, shown.view.get("height") or 0)
            if box is None or not shown.picture:
                return {}
            # The drawn box belongs to this picture: it stays chosen while the answer streams on.
            return self._changed(conversation, picks, references, selected="drawn", drawn=box, picture=shown.picture)
        return self._changed(conversation, picks, references, selected=selected)

    def ask_about(self, conversation, picks, references, message: dict | None):
        """The message with the selected box written before its question ("About Picture 1 (…)–(…): ")."""
        region = selected_region(inspect(conversation or Conversation(), self.handlers.family, picks, None))
        if region is None:
            gr.Warning(toast(NO_BOX))
            return gr.update()
        return ask_message(region, message)

    def zoom_into(self, conversation, picks, references, message: dict | None):
        """The message with a crop of the selected box attached (sent as the next Picture)."""
        conversation = conversation or Conversation()
        region = selected_region(inspect(conversation, self.handlers.family, picks, None))
        if region is None:
            gr.Warning(toast(NO_BOX))
            return gr.update()
        try:
            return zoom_message(region, conversation, message)
        except (ValueError, UploadError, OSError) as e:
            gr.Warning(toast(f"Not zoomed: {e}"))
            return gr.update()

    def select_row(self, conversation, picks, references, evt: gr.SelectData) -> dict:
        """A row's first cell is the grounding's number ("3") or a missed reference's ("r2")."""
        first = str((evt.row_value or [""])[0])
        selected = f"r{int(first[1:]) - 1}" if first[:1] == "r" and first[1:].isdigit() else f"d{int(first) - 1}" if first.isdigit() else None
        if selected == picks.current(conversation or Conversation()).selected:
            selected = None  # a second click on the same row lets go
        return self._changed(conversation, picks, references, selected=selected)

    def load_references(self, file: str | None, conversation, picks, references) -> dict:
        """Reference boxes from an uploaded file (at most --max-image-mb, like a picture); a bad one is
        refused with a sentence and the old ones stay."""
        conversation = conversation or Conversation()
        if not file:
            return {}
        try:
            loaded = load_references(file, int(self.handlers.limits.max_image_mb * MB))
        except ReferenceFileError as e:
            gr.Warning(toast(str(e)))  # a toast shows HTML: the sentence quotes the file
            return {self.status: f"⚠ Not loaded: {inert(str(e))}"}
        shown = self.show(conversation, picks, loaded)
        return {self.references: loaded, self.status: inert(loaded.describe(conversation)), **shown}

    def remove_references(self, conversation, picks, references) -> dict:
        return {self.references: None, self.status: "", **self.show(conversation, picks, None)}

    def export(
        self, conversation: Conversation | None, picks: Picks, references: References | None, request: gr.Request = None
    ) -> list[str]:
        """The export, with the comparison's figures when reference boxes are loaded."""
        return self.handlers.export(conversation, references, picks.threshold, picks.match_labels, request)

    # -- mapping --------------------------------------------------------------------------------

    def _changed(self, conversation, picks: Picks, references, **changes: Any) -> dict:
        conversation = conversation or Conversation()
        picks = replace(picks.current(conversation), **changes)
        return {self.picks: picks, **self.show(conversation, picks, references)}

    def _render(self, shown: Inspection, picks: Picks) -> dict:
        return {
            self.turn: gr.Dropdown(choices=shown.turns, value=shown.turn),
            self.picture: gr.Dropdown(choices=shown.pictures, value=shown.picture or None),
            self.view: shown.view,
            self.labels: gr.CheckboxGroup(choices=shown.labels, value=shown.shown_labels, visible=bool(shown.labels)),
            self.rows: _table(shown.rows, shown.headers, shown.view.get("selected")),
            self.scores: gr.Dataframe(value=shown.scores or None, visible=bool(shown.scores)),
            **self._region_buttons(shown, picks),
        }

    def _region_buttons(self, shown: Inspection, picks: Picks) -> dict:
        """The region buttons, usable while a box is selected; the column, shown once there are
        groundings (or opened: `opener`, shown meanwhile when there are pictures)."""
        usable = selected_region(shown) is not None
        buttons = {self.ask: gr.Button(interactive=usable), self.zoom: gr.Button(interactive=usable)}
        visible = shown.has_groundings or (picks.opened and bool(shown.pictures))
        if self.column is not None and (visible or not shown.answering):
            # Hidden only once an answer has ended with none: a regenerated answer does not make it blink.
            buttons[self.column] = gr.Column(visible=visible)
            if self.opener is not None:
                buttons[self.opener] = gr.Button(visible=not visible and bool(shown.pictures))
            if self.jump is not None:
                buttons[self.jump] = gr.Button(visible=visible)
        return buttons


def _table(rows: list[list[str]], headers: list[str], selected: str | None):
    """The list, the selected grounding's row highlighted and the match column coloured (a
    pandas Styler, only then: it costs ~15 ms, too much for every streamed update)."""
    if selected is not None and not selected[1:].isdigit():
        selected = None  # a drawn box has no row
    if selected is None and "reference" not in headers:
        return gr.Dataframe(value=rows or None, headers=headers)
    import pandas as pd

    frame = pd.DataFrame(rows, columns=headers) if rows else pd.DataFrame(columns=headers)
    number = None if selected is None else (f"r{int(selected[1:]) + 1}" if selected[0] == "r" else str(int(selected[1:]) + 1))
    colours = {"matched": "color: #15803d", "extra": "color: #b91c1c", "missed": "color: #b45309"}

    def row_style(row) -> list[str]:
        background = "background-color: rgba(250, 204, 21, 0.45); font-weight: 600" if row["#"] == number else ""
        return [background] * len(row)

    def match_style(value: str) -> str:
        return next((style for word, style in colours.items() if str(value).startswith(word)), "")

    styled = frame.style.apply(row_style, axis=1)
    return styled.map(match_style, subset=["reference"]) if "reference" in headers else styled
