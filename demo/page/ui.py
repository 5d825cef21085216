"""The Gradio page: `_layout` builds the components, `_wire` wires their events to `ChatPage`
(`demo/page/chat_page.py`) and `ChatHandlers`.

Nothing here computes anything. Handlers give a `Reply` (the conversation record and a
notice); `ChatPage.render` is the one place that maps a Reply to the page's components, and
`ChatPage`'s event methods only gather the settings components into one `Settings` and render
what the handler replies. Model events share one concurrency group ("model"): the engine
writes `concurrency` answers at a time, a few more messages are decoded and checked meanwhile
(`writing.PREPARING`, then they wait for their turn), and later ones wait in Gradio's queue,
which shows them their place.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from demo.engines.base import DEFAULT_SYSTEM_PROMPT
from demo.media.video import VIDEO_EXTENSIONS
from demo.page.chat_page import ChatPage, textbox_idle
from demo.page.handlers import ChatHandlers
from demo.page.inspector_ui import InspectorPage
from demo.page.texts import CSS, DOWNLOAD_JS, HERE, HINT, INTRO, ON_SPACES, TITLE, examples, limits_tag, preset_label
from demo.page.writing import PREPARING
from demo.views.markup import CHATBOT_SETTINGS
from grounding.generations import GENERATIONS, PRESETS, generation
from grounding.zoom import ZOOM_FAMILIES

__all__ = ["CSS", "build_ui"]

TO_INSPECTOR_JS = "() => { document.querySelector('#inspector')?.scrollIntoView({ block: 'start' }); }"  # CSS: what app.py passes to launch()


def _factors() -> str:
    """'28 for Qwen2-VL, Qwen2.5-VL; 32 for Qwen3-VL, Qwen3.5', from the registry."""
    by_factor: dict[int, list[str]] = {}
    for g in GENERATIONS:
        if g.local:
            by_factor.setdefault(g.resize_factor, []).append(g.title)
    return "; ".join(f"{factor} for {', '.join(titles)}" for factor, titles in sorted(by_factor.items()))


def _then_idle(event: Any, textbox: gr.MultimodalTextbox, glue: dict) -> None:
    """Send comes back once `event` has ended, whether it succeeded or failed: Gradio's page runs
    a `.then` only after success (6.31, Blocks dispatch), so failure gets its own follow-up."""
    event.then(textbox_idle, None, textbox, **glue)
    event.failure(textbox_idle, None, textbox, **glue)


@dataclass
class _Parts:
    """The page's components that events read or write (laid out by `_layout`, wired by `_wire`)."""

    status: gr.Markdown
    status_timer: gr.Timer
    conversation: gr.State
    chatbot: gr.Chatbot
    textbox: gr.MultimodalTextbox
    undo_clear: gr.Row
    version_btn: gr.Button
    version_wanted: gr.Textbox
    restore_btn: gr.Button
    preset_buttons: dict[str, gr.Button]
    regenerate_btn: gr.Button
    undo_btn: gr.Button
    clear_btn: gr.Button
    settings: list[gr.components.Component]  # max new tokens, temperature, top-p, system prompt, min and max pixels
    video_settings: list[gr.components.Component]  # frames a second, at most this many frames
    thinking: gr.Checkbox
    zoom: gr.Checkbox  # the model may zoom into pictures itself (Qwen3-VL, Qwen3.5)
    save_btn: gr.Button
    load_btn: gr.UploadButton
    snapshot_btn: gr.Button
    snapshot_file: gr.File
    reopen_btn: gr.Button
    reopen_file: gr.File
    saved_file: gr.File
    export_btn: gr.Button
    export_files: gr.File
    inspector: InspectorPage


def build_ui(
    handlers: ChatHandlers,
    *,
    max_new_tokens: int = 512,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    concurrency: int = 1,
    max_answer_tokens: int = 8192,
) -> gr.Blocks:
    """The chat page. `max_new_tokens`, `min_pixels`, `max_pixels` are the settings' defaults;
    `max_answer_tokens` is the ceiling of the max-new-tokens setting (Gradio refuses more, API calls too)."""
    if not 1 <= max_new_tokens <= max_answer_tokens:
        raise ValueError(f"max_new_tokens {max_new_tokens} is not within 1..{max_answer_tokens} (the answer ceiling)")
    # Gradio's sweep deletes its cached files by age: uploads never sent, and copies it made. A live
    # session's files are kept young (`Sessions.touch`) and it ends after `session_ttl` idle seconds.
    ttl = handlers.session_ttl
    handlers.sessions.protect([path for example in examples() for path in example["files"]])
    with gr.Blocks(title=TITLE, fill_width=True, delete_cache=(max(1, int(min(300, ttl / 2))), int(ttl + min(300, ttl)))) as demo:
        parts = _layout(handlers, max_new_tokens, min_pixels, max_pixels, max_answer_tokens)
        _wire(demo, handlers, parts, concurrency)
    return demo


def _layout(
    handlers: ChatHandlers, max_new_tokens: int, min_pixels: int | None, max_pixels: int | None, max_answer_tokens: int
) -> _Parts:
    """Every component, in the order the page shows them (within an open `gr.Blocks`)."""
    limits = handlers.limits
    # The title and one line; it also runs demo/page/page.js (keyboard, picture numbers, names for screen
    # readers) and exposes the numbers of pictures and videos sent so far (data-pictures, data-videos).
    intro = INTRO + limits_tag(limits.max_image_mb, limits.max_video_mb, VIDEO_EXTENSIONS)
    gr.HTML(intro, elem_id="intro", js_on_load=(HERE / "page.js").read_text("utf-8"), padding=False)
    # What the model is doing: its download (a progress bar, bytes, rate, time left), loading, ready or failed.
    # Every open tab's timer reads the one slot, so all of them follow the same download.
    status = gr.Markdown(handlers.slot.status_markdown(), elem_id="model-status")
    status_timer = gr.Timer(1.0)
    conversation = gr.State(None, time_to_live=handlers.session_ttl, delete_callback=handlers.expire)
    with gr.Row(elem_id="workspace"):
        with gr.Column(scale=5, min_width=440, elem_id="chat-column"):
            chatbot = gr.Chatbot(
                label="Conversation",
                elem_id="chatbot",
                height=560,
                show_label=False,
                buttons=["copy", "copy_all", *(["share"] if ON_SPACES else [])],
                placeholder=HINT,
                # Each part of a message its own row: grouped (Gradio 6.31), a question's Edit would send one edit
                # per part of its group (its pictures' labels too), and a group with a picture has no Copy. An
                # answer's rows are joined into one card with one Copy by page.js and page.css instead.
                group_consecutive_messages=False,
                editable="user",
                examples=[{**example} for example in examples()],  # Gradio rewrites the files it is given
                **CHATBOT_SETTINGS,
            )
            textbox = gr.MultimodalTextbox(
                file_count="multiple",
                file_types=["image", "video"],
                placeholder="Ask about your pictures and videos…",
                label="Message",
                show_label=False,
                submit_btn=True,
                stop_btn=False,
                elem_id="message",
            )
            # A message's ‹ › arrows (page.js) show another version through this hidden event.
            version_btn = gr.Button("Show version", visible="hidden", elem_id="show-version")
            version_wanted = gr.Textbox(visible="hidden", elem_id="version-wanted")
            with gr.Row(visible=False, elem_id="undo-clear") as undo_clear:
                gr.Markdown("Conversation cleared.")
                restore_btn = gr.Button("Undo", size="sm", variant="primary", elem_id="restore")
            gr.Markdown(
                f"Attach {limits.describe_uploads()}; at most {limits.max_images_per_turn} files a message and "
                f"{limits.max_images} a conversation.",
                elem_id="upload-limits",
            )
            gr.Markdown(
                "**Grounding prompts**: a click writes one in the textbox, in the shape the loaded model knows, "
                "with the object to find «selected»: type to replace it.",
                elem_id="presets-hint",
            )
            with gr.Row(elem_id="presets"):
                preset_buttons = {
                    name: gr.Button(preset_label(name, handlers.family), size="sm", variant="secondary") for name in PRESETS
                }
            with gr.Row(elem_id="actions"):
                regenerate_btn = gr.Button("Regenerate", size="sm", elem_id="regenerate")
                undo_btn = gr.Button("Undo last turn", size="sm")
                clear_btn = gr.Button("Clear", size="sm", elem_id="clear")
                # On a phone the inspector is under the chat column: one tap away (page.css shows it there only),
                # once it is shown (`InspectorPage`).
                to_inspector = gr.Button("Inspector ↓", size="sm", visible=False, elem_id="to-inspector")
                to_inspector.click(None, js=TO_INSPECTOR_JS, queue=False)
                # While no answer has boxes the inspector is hidden: this opens it, to draw a box on a picture.
                open_inspector = gr.Button("Inspect a picture", size="sm", visible=False, elem_id="open-inspector")
            settings, video_settings, thinking, zoom = _settings_panel(handlers, max_new_tokens, min_pixels, max_pixels, max_answer_tokens)
            with gr.Accordion("Save or load the conversation", open=False, elem_id="save-load"):
                gr.Markdown("A JSON file with the questions, the answers and the pictures, to keep or to load later.")
                with gr.Row():
                    save_btn = gr.Button("Save (downloads conversation.json)", size="sm", elem_id="save")
                    load_btn = gr.UploadButton("Load a saved conversation", file_types=[".json"], size="sm")
                # What /save returns; on the page, DOWNLOAD_JS downloads it at once.
                saved_file = gr.File(label="Saved conversation", interactive=False, visible="hidden", elem_id="saved-file")
            with gr.Accordion("Export groundings", open=False, elem_id="export"):
                gr.Markdown(
                    "The boxes and points of this conversation: `all-exports.zip` with everything (and a YOLO dataset in "
                    "`yolo/`), then `detections.json` (the model's raw numbers, pixel boxes, Picture numbers, image sizes, "
                    "family), `detections-coco.json`, Label Studio's `label-studio-tasks.json` (predictions) and "
                    "`label-studio-config.xml`, and each annotated picture as PNG."
                )
                export_btn = gr.Button("Export", size="sm")
                export_files = gr.File(label="Files", file_count="multiple", interactive=False)
        # Hidden (the chat takes the width) until an answer has boxes or points: `InspectorPage` shows it.
        with gr.Column(scale=6, min_width=440, elem_id="inspector", visible=False) as inspector_column:
            inspector = InspectorPage(handlers, conversation, inspector_column, open_inspector, to_inspector)
    # The conversations kept in this browser (demo/page/history.js), beside the chat; on a phone,
    # Gradio's sidebar opens over it. The hidden event gives the page the file it keeps.
    with gr.Sidebar(label="Conversations", open=False, elem_id="history-sidebar"):
        gr.HTML(
            "", elem_id="history", js_on_load=(HERE / "history.js").read_text("utf-8"),
            css_template=(HERE / "history.css").read_text("utf-8"), padding=False,
        )
        snapshot_btn = gr.Button("Keep", visible="hidden", elem_id="snapshot")
        snapshot_file = gr.File(interactive=False, visible="hidden", elem_id="snapshot-file")
        # Opening a kept conversation: the page uploads its file and runs the Load with it (as this input).
        reopen_btn = gr.Button("Open", visible="hidden", elem_id="reopen")
        reopen_file = gr.File(visible="hidden", elem_id="reopen-file")
    return _Parts(
        status, status_timer, conversation, chatbot, textbox, undo_clear, version_btn, version_wanted, restore_btn, preset_buttons, regenerate_btn,
        undo_btn, clear_btn, settings, video_settings, thinking, zoom, save_btn, load_btn, snapshot_btn, snapshot_file, reopen_btn, reopen_file, saved_file,
        export_btn, export_files, inspector,
    )


def _settings_panel(
    handlers: ChatHandlers, max_new_tokens: int, min_pixels: int | None, max_pixels: int | None, max_answer_tokens: int
) -> tuple[list[gr.components.Component], list[gr.components.Component], gr.Checkbox, gr.Checkbox]:
    """The Settings accordion: (the answer's settings, the video's, the thinking switch, the zoom switch)."""
    limits = handlers.limits
    with gr.Accordion("Settings", open=False, elem_id="settings"):
        with gr.Row():
            max_new_tokens_in = gr.Slider(1, max_answer_tokens, value=max_new_tokens, step=1, label="Max new tokens")
            temperature_in = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)")
            top_p_in = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p (when sampling)")
        system_prompt_in = gr.Textbox(
            DEFAULT_SYSTEM_PROMPT, label=f"System prompt (up to {limits.max_system_prompt_chars:,} characters)",
            lines=2, max_length=limits.max_system_prompt_chars,
        )
        thinking_in = gr.Checkbox(
            True,  # Qwen3.5's template default; set to the loaded model's own once it is there
            label="Think before answering",
            info="The model reasons first; its reasoning is shown folded above the answer, and never read for boxes.",
            visible=generation(handlers.slot.expected_family).thinking == "switch",
            elem_id="thinking",
        )
        zoom_in = gr.Checkbox(
            True,
            label="Let the model zoom in",
            info="Qwen3-VL and Qwen3.5 may ask for a crop of a picture while answering (their image_zoom_in_tool); "
            "the crop is sent back as a new picture and shown in the answer.",
            visible=handlers.slot.expected_family in ZOOM_FAMILIES,
            elem_id="zoom",
        )
        with gr.Row():
            # Empty (None) means the model's default: a placeholder keeps the field empty, not 0.
            min_pixels_in = gr.Number(
                min_pixels, label="Min pixels per image (empty: the model's default)", precision=0, minimum=0,
                placeholder="the model's default", elem_id="min-pixels",
            )
            max_pixels_in = gr.Number(
                max_pixels, label="Max pixels per image (empty: the model's default)", precision=0, minimum=0,
                placeholder="the model's default", elem_id="max-pixels",
            )
        gr.Markdown(
            "Each image is resized to between min and max pixels (sides multiples of the model's patch size × merge: "
            f"{_factors()}) before the model "
            "sees it; the size it was seen at and its number of visual tokens are shown under its label."
        )
        with gr.Row():
            video_fps_in = gr.Slider(0.25, 4.0, value=2.0, step=0.25, label="Video: frames sampled per second")
            video_frames_in = gr.Slider(2, 128, value=64, step=2, label="Video: at most this many frames")
        gr.Markdown(
            "A video is sampled once, when it is sent; its frames share a pixel budget, so a long video "
            "costs no more than a short one. Its label says how many frames, at what size, and their tokens."
        )
    settings = [max_new_tokens_in, temperature_in, top_p_in, system_prompt_in, min_pixels_in, max_pixels_in]
    return settings, [video_fps_in, video_frames_in], thinking_in, zoom_in


def _wire(demo: gr.Blocks, handlers: ChatHandlers, p: _Parts, concurrency: int) -> None:
    """Every event: which handler, its inputs and outputs, its queue (within the open `gr.Blocks`)."""
    pending_edit = gr.State(None)
    page = ChatPage(handlers, p.chatbot, p.conversation, p.textbox, p.undo_clear, pending_edit)
    chat_outputs = page.outputs
    # The queue position shows on the chatbot; the textbox stays usable, so Stop can leave the queue.
    # The engine writes `concurrency` answers at once (the handlers wait for their turn); a few more
    # messages may be decoded and checked meanwhile (`PREPARING`), so a long video is not read in its slot.
    handlers.answer_at_once(concurrency)
    model_queue = {"concurrency_id": "model", "concurrency_limit": concurrency + PREPARING, "show_progress_on": [p.chatbot]}
    glue = {"queue": False, "api_visibility": "private"}  # page state only: no input (demo/web/serve.py checks)
    # Files are decoded or written through the queue, a few at a time (the per-client cap counts them).
    files_queue = {"concurrency_id": "files", "concurrency_limit": 2}
    busy_outputs = [p.textbox, p.undo_clear]
    textbox, conversation, settings = p.textbox, p.conversation, p.settings
    switches = [p.thinking, p.zoom]

    chat_event = textbox.submit(page.busy, None, busy_outputs, **glue).then(
        page.chat, [textbox, conversation, *settings, *p.video_settings, *switches], chat_outputs, api_name="chat", **model_queue
    )
    regenerate_event = p.regenerate_btn.click(page.busy, None, busy_outputs, **glue).then(
        page.regenerate, [conversation, *settings, *switches], chat_outputs, api_name="regenerate", **model_queue
    )
    retry_event = p.chatbot.retry(page.busy, None, busy_outputs, **glue).then(
        page.regenerate, [conversation, *settings, *switches], chat_outputs, api_visibility="private", **model_queue
    )
    edit_event = p.chatbot.edit(page.start_edit, None, [*busy_outputs, pending_edit], **glue).then(
        page.edit, [conversation, pending_edit, *settings, *switches], chat_outputs, api_visibility="private", **model_queue
    )
    answering = [chat_event, regenerate_event, retry_event, edit_event]
    for event in answering:
        _then_idle(event, textbox, glue)

    # Stop's reply never sets the textbox, so it is no output (the API returns the chat alone).
    stop_event = textbox.stop(
        page.stop, [conversation], [p.chatbot, conversation], cancels=answering, api_name="stop", concurrency_limit=None
    )
    _then_idle(stop_event, textbox, glue)
    for trigger, api in ((p.undo_btn.click, {"api_name": "undo"}), (p.chatbot.undo, {"api_visibility": "private"})):
        _then_idle(trigger(page.undo, [conversation], chat_outputs, cancels=answering, **api), textbox, glue)
    for trigger, api in ((p.clear_btn.click, {"api_name": "clear"}), (p.chatbot.clear, {"api_visibility": "private"})):
        _then_idle(trigger(page.clear, [conversation], page.clear_outputs, cancels=answering, **api), textbox, glue)
    p.chatbot.example_select(page.example, None, [textbox], **glue)
    p.version_btn.click(
        page.show_version, [p.version_wanted, conversation], chat_outputs,
        js="(wanted, conversation) => [window.qvcVersionWanted ?? '', conversation]", api_visibility="private",
        concurrency_limit=None,  # queued (a Textbox input could carry anything: demo/web/serve.py), never waits
    )
    p.restore_btn.click(page.restore, [conversation], page.clear_outputs, **glue)
    for name, button in p.preset_buttons.items():
        # Queued (it takes the textbox, files and all), but never waits: no concurrency limit.
        button.click(partial(handlers.preset, name), [textbox], [textbox], api_visibility="private", concurrency_limit=None)
    inspector = p.inspector
    p.export_btn.click(inspector.export, [conversation, inspector.picks, inspector.references], [p.export_files], api_name="export", **files_queue)
    inspector.wire(p.chatbot, textbox)
    p.chatbot.change(None, [p.chatbot], None, js="(messages) => { window.qvcChat?.(messages); }", **glue)
    p.save_btn.click(handlers.save, [conversation], [p.saved_file], api_name="save", **files_queue).success(
        None, [p.saved_file], None, js=DOWNLOAD_JS, **glue
    )
    p.snapshot_btn.click(handlers.snapshot, [conversation], [p.snapshot_file], api_visibility="private", **files_queue).success(
        None, [p.snapshot_file], None, js="(file) => { window.qvcHistory?.store(file); }", **glue
    )
    p.load_btn.upload(page.load, [p.load_btn, conversation], page.clear_outputs, cancels=answering, api_name="load", **files_queue)
    p.reopen_btn.click(
        page.load, [p.reopen_file, conversation], page.clear_outputs, cancels=answering, api_visibility="private",
        js="(file, conversation) => [window.qvcHistory?.opening() ?? null, conversation]", **files_queue,
    )
    p.status_timer.tick(page.status, None, [p.status, p.status_timer, p.thinking], **glue)
    demo.load(page.status, None, [p.status, p.status_timer, p.thinking], **glue)
    demo.unload(handlers.end_session)
