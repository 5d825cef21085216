"""The page's events as Gradio calls them: each gathers the settings components into one `Settings`,
calls the handlers and renders what they reply (`ChatPage.render`, the one place a `Reply` becomes
the page's components). `demo/page/ui.py` lays the page out and wires these to its components.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from demo.engines.slot import EngineSlot
from demo.page.handlers import ChatHandlers, Reply
from demo.page.settings import Settings
from demo.page.texts import examples
from demo.record.conversation import Conversation
from demo.views.chat import chatbot_messages, question_turn
from grounding.generations import generation

_DEFAULTS = Settings()


def thinking_switch(slot: EngineSlot) -> gr.Checkbox:
    """The "think before answering" switch: shown where the model's template has one.

    Before the model is there, the registry says whether its generation may have one (Qwen3.5);
    once loaded, the engine says (its template, its name) and what the model does when not told.
    """
    engine = slot.wait(timeout=0)
    if engine is None:
        return gr.Checkbox(visible=generation(slot.expected_family).thinking == "switch")
    return gr.Checkbox(visible=engine.thinking == "switch", value=engine.thinking_default)


def textbox_busy() -> gr.MultimodalTextbox:
    return gr.MultimodalTextbox(submit_btn=False, stop_btn=True)


def textbox_idle() -> gr.MultimodalTextbox:
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
        zoom: bool = _DEFAULTS.zoom,
        request: gr.Request | None = None,
    ) -> Iterator[dict]:
        settings = Settings(
            max_new_tokens, temperature, top_p, system_prompt, min_pixels, max_pixels, video_fps, video_max_frames, thinking, zoom
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
        zoom: bool = _DEFAULTS.zoom,
        request: gr.Request | None = None,
    ) -> Iterator[dict]:
        settings = Settings(max_new_tokens, temperature, top_p, system_prompt, min_pixels, max_pixels, thinking=thinking, zoom=zoom)
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
        zoom: bool = _DEFAULTS.zoom,
        request: gr.Request | None = None,
    ) -> Iterator[dict]:
        """A question edited in the chat: the chat's message number is mapped to its turn here."""
        settings = Settings(max_new_tokens, temperature, top_p, system_prompt, min_pixels, max_pixels, thinking=thinking, zoom=zoom)
        conversation = conversation if conversation is not None else Conversation()
        message, text = edited if edited is not None else (-1, "")
        turn = question_turn(conversation, self.handlers.family, message)
        for reply in self.handlers.edit(conversation, turn, text, settings, request):
            yield self.render(reply)

    def show_version(self, wanted: str, conversation: Any) -> dict:
        """A version picked with a message's ‹ › arrows (page.js sends "turn:version", both 0-based)."""
        found = re.fullmatch(r"(\d{1,6}):(\d{1,6})", str(wanted or ""))
        if found is None:
            return self.render(self.handlers.show_version(conversation, -1, -1))  # refused, with its sentence
        return self.render(self.handlers.show_version(conversation, int(found[1]), int(found[2])))

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
        return {self.textbox: textbox_busy(), **self._undo_clear(None)}

    def load(self, file: str | None, conversation: Any, request: gr.Request | None = None) -> dict:
        """A saved conversation replaces this one (and a cleared one can no longer come back); a refused
        file changes nothing, the Undo of a Clear included."""
        reply = self.handlers.load(file, conversation, request)
        return {**self.render(reply), **({} if reply.notice else self._undo_clear(None))}

    def status(self) -> tuple[str, gr.Timer, gr.Checkbox]:
        """The model status line, its refresh timer, and the thinking switch for the model."""
        return (*self.handlers.status(), thinking_switch(self.handlers.slot))
