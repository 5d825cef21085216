"""The Gradio page: builds the components and wires their events to `ChatHandlers`.

Nothing here computes anything. Handlers give a `Reply` (the conversation record and a
notice); `ChatPage.render` is the one place that maps a Reply to the page's components, and
`ChatPage`'s event methods only gather the settings components into one `Settings` and render
what the handler replies. Model events share one concurrency group ("model"), so the engine
serves `concurrency` answers at a time and later ones wait in Gradio's queue, which shows
them their place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr

from demo.engines.base import DEFAULT_SYSTEM_PROMPT
from demo.handlers import ChatHandlers, Reply
from demo.inspector_ui import InspectorPage
from demo.settings import Settings
from demo.views import chatbot_messages
from grounding.generations import GENERATIONS, PRESETS

_DEFAULTS = Settings()

EXAMPLES_DIR = Path(__file__).with_name("examples")
TITLE = "Qwen VL chat"
CSS = """
#chatbot .message img, #chatbot .message video { max-height: 200px; width: auto; }
footer { display: none !important; }
"""


def _examples() -> list[dict]:
    photo = lambda name: str(EXAMPLES_DIR / name)  # noqa: E731
    return [
        {"text": "What is in Picture 1? Describe it in two sentences.", "files": [photo("chelsea.png")]},
        {"text": "Compare Picture 1 and Picture 2: what do they have in common?", "files": [photo("astronaut.png"), photo("rocket.jpg")]},
        {"text": "Detect the bounding box of the coffee cup.", "files": [photo("coffee.png")]},
        {"text": "What happens in Video 1?", "files": [photo("rocket-launch.mp4")]},
    ]


def _factors() -> str:
    """'28 for Qwen2-VL, Qwen2.5-VL; 32 for Qwen3-VL, Qwen3.5', from the registry."""
    by_factor: dict[int, list[str]] = {}
    for g in GENERATIONS:
        if g.local:
            by_factor.setdefault(g.resize_factor, []).append(g.title)
    return "; ".join(f"{factor} for {', '.join(titles)}" for factor, titles in sorted(by_factor.items()))


def _textbox_busy() -> gr.MultimodalTextbox:
    return gr.MultimodalTextbox(submit_btn=False, stop_btn=True)


def _textbox_idle() -> gr.MultimodalTextbox:
    return gr.MultimodalTextbox(submit_btn=True, stop_btn=False)


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

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.chatbot, self.conversation, self.textbox]

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
        request: gr.Request | None = None,
    ) -> Iterator[dict]:
        settings = Settings(max_new_tokens, temperature, top_p, system_prompt, min_pixels, max_pixels, video_fps, video_max_frames)
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
        request: gr.Request | None = None,
    ) -> Iterator[dict]:
        settings = Settings(max_new_tokens, temperature, top_p, system_prompt, min_pixels, max_pixels)
        for reply in self.handlers.regenerate(conversation, settings, request):
            yield self.render(reply)

    def stop(self, conversation: Any, request: gr.Request | None = None) -> dict:
        return self.render(self.handlers.stop(conversation, request))

    def undo(self, conversation: Any) -> dict:
        return self.render(self.handlers.undo(conversation))

    def clear(self, request: gr.Request | None = None) -> dict:
        return self.render(self.handlers.clear(request))

    def load(self, file: str | None, conversation: Any, request: gr.Request | None = None) -> dict:
        return self.render(self.handlers.load(file, conversation, request))


def build_ui(
    handlers: ChatHandlers,
    *,
    max_new_tokens: int = 512,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    concurrency: int = 1,
) -> gr.Blocks:
    """The chat page. `max_new_tokens`, `min_pixels`, `max_pixels` are the settings' defaults."""
    with gr.Blocks(title=TITLE, fill_width=True) as demo:
        gr.Markdown(
            f"# {TITLE}\n"
            "Chat with a Qwen vision-language model about your pictures and videos. Attach several in any turn: "
            "each becomes **Picture N** or **Video N**, for you and for the model alike, so you can ask about *Picture 2*."
        )
        status = gr.Markdown(handlers.slot.status_markdown(), elem_id="model-status")
        status_timer = gr.Timer(1.0)
        conversation = gr.State(None)
        with gr.Row(elem_id="workspace"):
            with gr.Column(scale=5, min_width=440, elem_id="chat-column"):
                chatbot = gr.Chatbot(label="Conversation", elem_id="chatbot", height=560, show_label=False)
                textbox = gr.MultimodalTextbox(
                    file_count="multiple",
                    file_types=["image", "video"],
                    placeholder="Ask about your pictures and videos… (attach with the clip: each becomes Picture N or Video N)",
                    show_label=False,
                    submit_btn=True,
                    stop_btn=False,
                    elem_id="message",
                )
                gr.Markdown("**Grounding prompts**: a click writes one in the textbox, in the shape the loaded model knows; edit the objects it names.")
                with gr.Row(elem_id="presets"):
                    preset_buttons = {name: gr.Button(name, size="sm", variant="secondary") for name in PRESETS}
                with gr.Row():
                    regenerate_btn = gr.Button("Regenerate", size="sm")
                    undo_btn = gr.Button("Undo last turn", size="sm")
                    clear_btn = gr.Button("Clear", size="sm")
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        max_new_tokens_in = gr.Slider(1, 8192, value=max_new_tokens, step=1, label="Max new tokens")
                        temperature_in = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                        top_p_in = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p (when sampling)")
                    system_prompt_in = gr.Textbox(DEFAULT_SYSTEM_PROMPT, label="System prompt", lines=2)
                    with gr.Row():
                        min_pixels_in = gr.Number(min_pixels, label="Min pixels per image (empty: the model's default)", precision=0)
                        max_pixels_in = gr.Number(max_pixels, label="Max pixels per image (empty: the model's default)", precision=0)
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
                with gr.Accordion("Save or load the conversation", open=False):
                    gr.Markdown("A JSON file with the questions, the answers and the pictures, to keep or to load later.")
                    with gr.Row():
                        save_btn = gr.Button("Save", size="sm")
                        load_btn = gr.UploadButton("Load a saved conversation", file_types=[".json"], size="sm")
                    saved_file = gr.File(label="Saved conversation", interactive=False)
                with gr.Accordion("Export groundings", open=False):
                    gr.Markdown(
                        "The boxes and points of this conversation: `detections.json` (the model's raw numbers, pixel boxes, "
                        "Picture numbers, image sizes, family), `detections-coco.json`, and each annotated picture as PNG."
                    )
                    export_btn = gr.Button("Export", size="sm")
                    export_files = gr.File(label="Files", file_count="multiple", interactive=False)
                gr.Examples(_examples(), inputs=[textbox], label="Examples (click one, then send)")
            with gr.Column(scale=6, min_width=440, elem_id="inspector"):
                inspector = InspectorPage(handlers, conversation)

        page = ChatPage(handlers, chatbot, conversation, textbox)
        settings = [max_new_tokens_in, temperature_in, top_p_in, system_prompt_in, min_pixels_in, max_pixels_in]
        chat_outputs = page.outputs
        # The queue position shows on the chatbot; the textbox stays usable, so Stop can leave the queue.
        model_queue = {"concurrency_id": "model", "concurrency_limit": concurrency, "show_progress_on": [chatbot]}
        glue = {"queue": False, "api_visibility": "private"}

        video_settings = [video_fps_in, video_frames_in]
        chat_event = textbox.submit(_textbox_busy, None, textbox, **glue).then(
            page.chat, [textbox, conversation, *settings, *video_settings], chat_outputs, api_name="chat", **model_queue
        )
        regenerate_event = regenerate_btn.click(_textbox_busy, None, textbox, **glue).then(
            page.regenerate, [conversation, *settings], chat_outputs, api_name="regenerate", **model_queue
        )
        retry_event = chatbot.retry(_textbox_busy, None, textbox, **glue).then(
            page.regenerate, [conversation, *settings], chat_outputs, api_visibility="private", **model_queue
        )
        answering = [chat_event, regenerate_event, retry_event]
        for event in answering:
            event.then(_textbox_idle, None, textbox, **glue)

        # Stop's reply never sets the textbox, so it is no output (the API returns the chat alone).
        textbox.stop(page.stop, [conversation], [chatbot, conversation], cancels=answering, api_name="stop", concurrency_limit=None).then(
            _textbox_idle, None, textbox, **glue
        )
        for trigger, api in ((undo_btn.click, {"api_name": "undo"}), (chatbot.undo, {"api_visibility": "private"})):
            trigger(page.undo, [conversation], chat_outputs, cancels=answering, **api).then(
                _textbox_idle, None, textbox, **glue
            )
        for trigger, api in ((clear_btn.click, {"api_name": "clear"}), (chatbot.clear, {"api_visibility": "private"})):
            trigger(page.clear, None, chat_outputs, cancels=answering, **api).then(_textbox_idle, None, textbox, **glue)
        for name, button in preset_buttons.items():
            button.click(partial(handlers.preset, name), [textbox], [textbox], **glue)
        export_btn.click(inspector.export, [conversation, inspector.picks, inspector.references], [export_files], api_name="export")
        inspector.wire(chatbot)
        save_btn.click(handlers.save, [conversation], [saved_file], api_name="save")
        load_btn.upload(page.load, [load_btn, conversation], chat_outputs, cancels=answering, api_name="load")
        status_timer.tick(handlers.status, None, [status, status_timer], **glue)
        demo.load(handlers.status, None, [status, status_timer], **glue)
        demo.unload(handlers.end_session)
    return demo
