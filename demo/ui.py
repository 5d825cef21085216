"""The Gradio page: builds the components and wires their events to `ChatHandlers`.

Nothing here computes anything. Handlers give a `Reply` (the conversation record and a
notice); `ChatPage.render` is the one place that maps a Reply to the page's components, and
`ChatPage`'s event methods only gather the settings components into one `Settings` and render
what the handler replies. Model events share one concurrency group ("model"): the engine
writes `concurrency` answers at a time, a few more messages are decoded and checked meanwhile
(`handlers.PREPARING`, then they wait for their turn), and later ones wait in Gradio's queue,
which shows them their place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from demo.conversation import Conversation
from demo.engines.base import DEFAULT_SYSTEM_PROMPT
from demo.engines.slot import EngineSlot
from demo.handlers import PREPARING, ChatHandlers, Reply
from demo.inspector_ui import InspectorPage
from demo.markup import CHATBOT_SETTINGS
from demo.page import CSS, DOWNLOAD_JS, HERE, HINT, INTRO, ON_SPACES, TITLE, examples, preset_label
from demo.settings import Settings
from demo.views import chatbot_messages, question_turn
from grounding.generations import GENERATIONS, PRESETS, generation

_DEFAULTS = Settings()
__all__ = ["CSS", "ChatPage", "build_ui"]  # CSS: what app.py passes to launch()

def _factors() -> str:
    """'28 for Qwen2-VL, Qwen2.5-VL; 32 for Qwen3-VL, Qwen3.5', from the registry."""
    by_factor: dict[int, list[str]] = {}
    for g in GENERATIONS:
        if g.local:
            by_factor.setdefault(g.resize_factor, []).append(g.title)
    return "; ".join(f"{factor} for {', '.join(titles)}" for factor, titles in sorted(by_factor.items()))


def thinking_switch(slot: EngineSlot) -> gr.Checkbox:
    """The "think before answering" switch: shown where the model's template has one.

    Before the model is there, the registry says whether its generation may have one (Qwen3.5);
    once loaded, the engine says (its template, its name) and what the model does when not told.
    """
    engine = slot.wait(timeout=0)
    if engine is None:
        return gr.Checkbox(visible=generation(slot.expected_family).thinking == "switch")
    return gr.Checkbox(visible=engine.thinking == "switch", value=engine.thinking_default)


def _textbox_busy() -> gr.MultimodalTextbox:
    return gr.MultimodalTextbox(submit_btn=False, stop_btn=True)


def _textbox_idle() -> gr.MultimodalTextbox:
    return gr.MultimodalTextbox(submit_btn=True, stop_btn=False)


def _then_idle(event: Any, textbox: gr.MultimodalTextbox, glue: dict) -> None:
    """Send comes back once `event` has ended, whether it succeeded or failed: Gradio's page runs
    a `.then` only after success (6.31, Blocks dispatch), so failure gets its own follow-up."""
    event.then(_textbox_idle, None, textbox, **glue)
    event.failure(_textbox_idle, None, textbox, **glue)


@dataclass
class ChatPage:
    """The components a `Reply` is shown in, and the model events as Gradio calls them.

    The event methods' parameters are what Gradio passes in (their names are the API's
    parameter names, as before: `max_new_tokens`, `temperature`, ...); each gathers the
    settings into one `Settings` and yields `render(reply)` for every reply of the handler.
    """

    handlers: ChatHandlers
    chatbot: gr.Chatbot
    conversation: gr.State
    textbox: gr.MultimodalTextbox
    undo_clear: gr.Row | None = None  # "Conversation cleared. Undo" (the handlers keep what it brings back)
    pending_edit: gr.State | None = None  # (chat message number, new text) of the edit being answered

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.chatbot, self.conversation, self.textbox]

    @property
    def clear_outputs(self) -> list[gr.components.Component]:
        return [*self.outputs, self.undo_clear]

    def _undo_clear(self, kept: Conversation | None) -> dict:
        """The Undo notice, shown while there is a cleared conversation (`kept`) to bring back."""
        if self.undo_clear is None:
            return {}
        return {self.undo_clear: gr.Row(visible=kept is not None)}

    def render(self, reply: Reply) -> dict[gr.components.Component, Any]:
        """The page's components for `reply`; the textbox only when the reply sets it."""
        shown = chatbot_messages(reply.conversation, reply.family, reply.waiting, reply.notice)
        update: dict[gr.components.Component, Any] = {self.chatbot: shown, self.conversation: reply.conversation}
        if reply.message is not None:
            update[self.textbox] = reply.message
        return update

    def chat(
        self,
        message: dict | None,
        conversation: Any,
        max_new_tokens: float = _DEFAULTS.max_new_tokens,
        temperature: float = _DEFAULTS.temperature,
        top_p: float = _DEFAULTS.top_p,
        system_prompt: str = _DEFAULTS.system_prompt,
        min_pixels: float | None = None,
        max_pixels: float | None = None,
        video_fps: float = _DEFAULTS.video_fps,
        video_max_frames: float = _DEFAULTS.video_max_frames,
        thinking: bool | None = _DEFAULTS.thinking,
        request: gr.Request | None = None,
    ) -> Iterator[dict]:
        settings = Settings(
            max_new_tokens, temperature, top_p, system_prompt, min_pixels, max_pixels, video_fps, video_max_frames, thinking
        )
        for reply in self.handlers.chat(message, conversation, settings, request):
            yield self.render(reply)

    def regenerate(
        self,
        conversation: Any,
        max_new_tokens: float = _DEFAULTS.max_new_tokens,
        temperature: float = _DEFAULTS.temperature,
        top_p: float = _DEFAULTS.top_p,
        system_prompt: str = _DEFAULTS.system_prompt,
        min_pixels: float | None = None,
        max_pixels: float | None = None,
        thinking: bool | None = _DEFAULTS.thinking,
        request: gr.Request | None = None,
    ) -> Iterator[dict]:
        settings = Settings(max_new_tokens, temperature, top_p, system_prompt, min_pixels, max_pixels, thinking=thinking)
        for reply in self.handlers.regenerate(conversation, settings, request):
            yield self.render(reply)

    def start_edit(self, edited: gr.EditData) -> dict:
        """An edit submitted in the chat: the page turns busy, and the edit (which only this first
        step of the event receives) is kept for `edit`, which runs in the model's queue."""
        index = edited.index[0] if isinstance(edited.index, (list, tuple)) else edited.index
        return {**self.busy(), self.pending_edit: (int(index), str(edited.value or ""))}

    def edit(
        self,
        conversation: Any,
        edited: tuple[int, str] | None,
        max_new_tokens: float = _DEFAULTS.max_new_tokens,
        temperature: float = _DEFAULTS.temperature,
        top_p: float = _DEFAULTS.top_p,
        system_prompt: str = _DEFAULTS.system_prompt,
        min_pixels: float | None = None,
        max_pixels: float | None = None,
        thinking: bool | None = _DEFAULTS.thinking,
        request: gr.Request | None = None,
    ) -> Iterator[dict]:
        """A question edited in the chat: the chat's message number is mapped to its turn here."""
        settings = Settings(max_new_tokens, temperature, top_p, system_prompt, min_pixels, max_pixels, thinking=thinking)
        conversation = conversation if conversation is not None else Conversation()
        message, text = edited if edited is not None else (-1, "")
        turn = question_turn(conversation, self.handlers.family, message)
        for reply in self.handlers.edit(conversation, turn, text, settings, request):
            yield self.render(reply)

    def show_version(self, conversation: Any, chosen: gr.SelectData) -> dict:
        """A version picked with the options under the chat (their values are "turn:version")."""
        index, version = (int(number) for number in str(chosen.value).split(":"))
        return self.render(self.handlers.show_version(conversation, index, version))

    def stop(self, conversation: Any, request: gr.Request | None = None) -> dict:
        return self.render(self.handlers.stop(conversation, request))

    def undo(self, conversation: Any) -> dict:
        return self.render(self.handlers.undo(conversation))

    def clear(self, conversation: Any, request: gr.Request | None = None) -> dict:
        """A new conversation; the old one is kept (when there was one) and the Undo notice shown."""
        kept = conversation if conversation is not None and conversation.turns else None
        return {**self.render(self.handlers.clear(request, kept)), **self._undo_clear(kept)}

    def restore(self, conversation: Any, request: gr.Request | None = None) -> dict:
        """Undo of Clear: the conversation the handlers set aside comes back (the textbox keeps what is typed)."""
        return {**self.render(self.handlers.restore(conversation, request)), **self._undo_clear(None)}

    def example(self, chosen: gr.SelectData) -> dict:
        """An example from the empty chat, written in the textbox (its pictures attached), not sent."""
        return examples()[chosen.index]

    def busy(self) -> dict:
        """An answer starts: Stop replaces Send, and a cleared conversation can no longer come back."""
        return {self.textbox: _textbox_busy(), **self._undo_clear(None)}

    def load(self, file: str | None, conversation: Any, request: gr.Request | None = None) -> dict:
        """A saved conversation replaces this one (and a cleared one can no longer come back); a refused
        file changes nothing, the Undo of a Clear included."""
        reply = self.handlers.load(file, conversation, request)
        return {**self.render(reply), **({} if reply.notice else self._undo_clear(None))}

    def status(self) -> tuple[str, gr.Timer, gr.Checkbox]:
        """The model status line, its refresh timer, and the thinking switch for the model."""
        return (*self.handlers.status(), thinking_switch(self.handlers.slot))


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
    limits = handlers.limits
    with gr.Blocks(title=TITLE, fill_width=True, delete_cache=(max(1, int(min(300, ttl / 2))), int(ttl + min(300, ttl)))) as demo:
        # The title and one line; it also runs demo/page.js (keyboard, picture numbers, names for screen
        # readers) and exposes the numbers of pictures and videos sent so far (data-pictures, data-videos).
        gr.HTML(INTRO, elem_id="intro", js_on_load=(HERE / "page.js").read_text("utf-8"), padding=False)
        # What the model is doing: its download (a progress bar, bytes, rate, time left), loading, ready or failed.
        # Every open tab's timer reads the one slot, so all of them follow the same download.
        status = gr.Markdown(handlers.slot.status_markdown(), elem_id="model-status")
        status_timer = gr.Timer(1.0)
        conversation = gr.State(None, time_to_live=ttl, delete_callback=handlers.expire)
        with gr.Row(elem_id="workspace"):
            with gr.Column(scale=5, min_width=440, elem_id="chat-column"):
                chatbot = gr.Chatbot(
                    label="Conversation",
                    elem_id="chatbot",
                    height=560,
                    show_label=False,
                    buttons=["copy", "copy_all", *(["share"] if ON_SPACES else [])],
                    placeholder=HINT,
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
                    "with the object to find «selected»: type to replace it."
                )
                with gr.Row(elem_id="presets"):
                    preset_buttons = {
                        name: gr.Button(preset_label(name, handlers.family), size="sm", variant="secondary") for name in PRESETS
                    }
                with gr.Row(elem_id="actions"):
                    regenerate_btn = gr.Button("Regenerate", size="sm")
                    undo_btn = gr.Button("Undo last turn", size="sm")
                    clear_btn = gr.Button("Clear", size="sm")
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
                with gr.Accordion("Save or load the conversation", open=False, elem_id="save-load"):
                    gr.Markdown("A JSON file with the questions, the answers and the pictures, to keep or to load later.")
                    with gr.Row():
                        save_btn = gr.Button("Save (downloads conversation.json)", size="sm", elem_id="save")
                        load_btn = gr.UploadButton("Load a saved conversation", file_types=[".json"], size="sm")
                    # What /save returns; on the page, DOWNLOAD_JS downloads it at once.
                    saved_file = gr.File(label="Saved conversation", interactive=False, visible="hidden", elem_id="saved-file")
                with gr.Accordion("Export groundings", open=False, elem_id="export"):
                    gr.Markdown(
                        "The boxes and points of this conversation: `detections.json` (the model's raw numbers, pixel boxes, "
                        "Picture numbers, image sizes, family), `detections-coco.json`, and each annotated picture as PNG."
                    )
                    export_btn = gr.Button("Export", size="sm")
                    export_files = gr.File(label="Files", file_count="multiple", interactive=False)
            with gr.Column(scale=6, min_width=440, elem_id="inspector"):
                inspector = InspectorPage(handlers, conversation)

        pending_edit = gr.State(None)
        page = ChatPage(handlers, chatbot, conversation, textbox, undo_clear, pending_edit)
        settings = [max_new_tokens_in, temperature_in, top_p_in, system_prompt_in, min_pixels_in, max_pixels_in]
        chat_outputs = page.outputs
        # The queue position shows on the chatbot; the textbox stays usable, so Stop can leave the queue.
        # The engine writes `concurrency` answers at once (the handlers wait for their turn); a few more
        # messages may be decoded and checked meanwhile (`PREPARING`), so a long video is not read in its slot.
        handlers.answer_at_once(concurrency)
        model_queue = {"concurrency_id": "model", "concurrency_limit": concurrency + PREPARING, "show_progress_on": [chatbot]}
        glue = {"queue": False, "api_visibility": "private"}  # page state only: no input (demo/web/serve.py checks)
        # Files are decoded or written through the queue, a few at a time (the per-client cap counts them).
        files_queue = {"concurrency_id": "files", "concurrency_limit": 2}
        busy_outputs = [textbox, undo_clear]

        video_settings = [video_fps_in, video_frames_in]
        chat_event = textbox.submit(page.busy, None, busy_outputs, **glue).then(
            page.chat, [textbox, conversation, *settings, *video_settings, thinking_in], chat_outputs, api_name="chat", **model_queue
        )
        regenerate_event = regenerate_btn.click(page.busy, None, busy_outputs, **glue).then(
            page.regenerate, [conversation, *settings, thinking_in], chat_outputs, api_name="regenerate", **model_queue
        )
        retry_event = chatbot.retry(page.busy, None, busy_outputs, **glue).then(
            page.regenerate, [conversation, *settings, thinking_in], chat_outputs, api_visibility="private", **model_queue
        )
        edit_event = chatbot.edit(page.start_edit, None, [*busy_outputs, pending_edit], **glue).then(
            page.edit, [conversation, pending_edit, *settings, thinking_in], chat_outputs, api_visibility="private", **model_queue
        )
        answering = [chat_event, regenerate_event, retry_event, edit_event]
        for event in answering:
            _then_idle(event, textbox, glue)

        # Stop's reply never sets the textbox, so it is no output (the API returns the chat alone).
        stop_event = textbox.stop(
            page.stop, [conversation], [chatbot, conversation], cancels=answering, api_name="stop", concurrency_limit=None
        )
        _then_idle(stop_event, textbox, glue)
        for trigger, api in ((undo_btn.click, {"api_name": "undo"}), (chatbot.undo, {"api_visibility": "private"})):
            _then_idle(trigger(page.undo, [conversation], chat_outputs, cancels=answering, **api), textbox, glue)
        for trigger, api in ((clear_btn.click, {"api_name": "clear"}), (chatbot.clear, {"api_visibility": "private"})):
            _then_idle(trigger(page.clear, [conversation], page.clear_outputs, cancels=answering, **api), textbox, glue)
        chatbot.example_select(page.example, None, [textbox], **glue)
        chatbot.option_select(page.show_version, [conversation], chat_outputs, **glue)
        restore_btn.click(page.restore, [conversation], page.clear_outputs, **glue)
        for name, button in preset_buttons.items():
            # Queued (it takes the textbox, files and all), but never waits: no concurrency limit.
            button.click(partial(handlers.preset, name), [textbox], [textbox], api_visibility="private", concurrency_limit=None)
        export_btn.click(inspector.export, [conversation, inspector.picks, inspector.references], [export_files], api_name="export", **files_queue)
        inspector.wire(chatbot)
        chatbot.change(None, [chatbot], None, js="(messages) => { window.qvcChat?.(messages); }", **glue)
        save_btn.click(handlers.save, [conversation], [saved_file], api_name="save", **files_queue).success(
            None, [saved_file], None, js=DOWNLOAD_JS, **glue
        )
        load_btn.upload(page.load, [load_btn, conversation], page.clear_outputs, cancels=answering, api_name="load", **files_queue)
        status_timer.tick(page.status, None, [status, status_timer, thinking_in], **glue)
        demo.load(page.status, None, [status, status_timer, thinking_in], **glue)
        demo.unload(handlers.end_session)
    return demo
