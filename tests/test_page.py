"""The page's wiring: handlers reply, `ChatPage.render` maps replies to components, the API stays."""

from __future__ import annotations

import gradio as gr

from demo.engines.slot import EngineSlot
from demo.page.chat_page import ChatPage
from demo.page.handlers import EMPTY_MESSAGE, ChatHandlers, Reply
from demo.page.ui import build_ui
from demo.record.conversation import Conversation, Turn, Version
from tests.fakes import ScriptedEngine

SETTINGS = ["max_new_tokens", "temperature", "top_p", "system_prompt", "min_pixels", "max_pixels"]


def handlers(answers=()) -> ChatHandlers:
    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine(list(answers)))
    return ChatHandlers(slot, min_update_interval=0.0)


def page() -> ChatPage:
    with gr.Blocks():
        return ChatPage(handlers([["fine"]]), gr.Chatbot(), gr.State(), gr.MultimodalTextbox())


def test_the_api_keeps_its_endpoints_parameters_and_returns():
    """What gradio_client sees: the README's endpoints, optional settings by name, (history, textbox)."""
    info = build_ui(handlers()).get_api_info()["named_endpoints"]
    # The inspector's events are private: API clients see the chat's endpoints only.
    assert set(info) == {"/chat", "/regenerate", "/stop", "/undo", "/clear", "/export", "/save", "/load"}
    parameters = {name: [(p["parameter_name"], p["parameter_has_default"]) for p in info[name]["parameters"]] for name in info}
    assert parameters["/chat"] == [("message", True)] + [(n, True) for n in SETTINGS + ["video_fps", "video_max_frames", "thinking", "zoom"]]
    assert parameters["/regenerate"] == [(n, True) for n in SETTINGS + ["thinking", "zoom"]]
    assert parameters["/stop"] == parameters["/undo"] == parameters["/clear"] == []
    assert parameters["/load"] == [("file", False)]
    returns = {name: [r["component"] for r in info[name]["returns"]] for name in info}
    for name in ("/chat", "/regenerate", "/undo", "/clear", "/load"):
        assert returns[name] == ["Chatbot", "Multimodaltextbox"], name
    assert returns["/stop"] == ["Chatbot"]
    assert returns["/export"] == ["File"] and returns["/save"] == ["File"]


def test_render_maps_a_reply_to_the_chat_and_sets_the_textbox_only_when_asked():
    shown = page()
    conversation = Conversation(turns=[Turn("Hi", answer="Hello", status="done")])
    update = shown.render(Reply(conversation, "qwen2-vl", notice="Not sent: too long."))
    assert set(update) == {shown.chatbot, shown.conversation}  # the textbox keeps what the person typed
    assert update[shown.conversation] is conversation
    assert [m["content"] for m in update[shown.chatbot]] == ["Hi", "Hello", "⚠ Not sent: too long."]
    update = shown.render(Reply(conversation, "qwen2-vl", message=EMPTY_MESSAGE))
    assert update[shown.textbox] == EMPTY_MESSAGE


def test_page_events_gather_the_settings_into_one_object():
    shown = page()
    updates = list(shown.chat({"text": "Hi", "files": []}, None, 64, 0.5, 0.7, "Be brief.", 0, 100_000))
    _, settings = shown.handlers.slot.wait(0).calls[0]
    assert (settings.max_new_tokens, settings.temperature, settings.top_p, settings.system_prompt) == (64, 0.5, 0.7, "Be brief.")
    assert (settings.min_pixels, settings.max_pixels) == (None, 100_000)
    assert updates[0][shown.textbox] == EMPTY_MESSAGE and shown.textbox not in updates[-1]
    assert updates[-1][shown.chatbot][-1]["content"] == "fine"


def test_a_version_arrow_shows_that_version_and_anything_else_is_refused_in_one_sentence():
    """page.js sends "turn:version" (0-based) from a message's ‹ › arrows; the event is queued, so it could carry anything."""
    shown = page()
    kept = Turn("Hi", answer="Hello", status="done")
    conversation = Conversation(turns=[Turn("Hi", answer="Hey", status="done", versions=[Version(kept, [])], version=1)])
    for wanted in ("", "1", "a:b", "0:-1", "-1:0", "0:0:0", "9" * 7 + ":0", "1:0", "0:2"):  # junk, shapes, no such turn or version
        update = shown.show_version(wanted, conversation)
        assert update[shown.chatbot][-1]["content"].startswith("⚠"), wanted
        assert conversation.turns[0].answer == "Hey"  # nothing changed
    update = shown.show_version("0:0", conversation)
    assert conversation.turns[0].answer == "Hello"
    assert update[shown.chatbot][-1] == {"role": "assistant", "content": "Hello", "metadata": {"id": "qvc-version 0 0 2"}}


def _copy_config_as_on_a_page_load(engine) -> tuple[ChatHandlers, dict, list]:
    """`/config` deep-copies the page's config on every page load (`gradio.utils.safe_deepcopy`, which falls back
    to copying item by item when the deep copy fails). Returns the handlers, the copy, and what a collection then
    reported through `sys.unraisablehook`."""
    import copy
    import gc
    import sys

    slot = EngineSlot("any")
    slot.fill(engine)
    chat = ChatHandlers(slot)
    config = build_ui(chat).config
    unraisable = []
    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        copied = copy.deepcopy(config)
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return chat, copied, unraisable


def test_a_page_load_copies_the_config_but_not_the_handlers_or_the_engine(engine):
    """The conversation State's delete callback is `ChatHandlers.expire`, so the config holds the handlers, and
    through them the engine. Copying an OpenAI client fails half-way (it holds a lock), and the half-made client
    printed a traceback when collected; copying a local engine failed on a thread-local, and would otherwise
    have copied the model on every page load."""
    from demo.engines.server import OpenAIEngine

    for backend in (OpenAIEngine("http://127.0.0.1:9/v1", "Qwen/Qwen2-VL-2B-Instruct"), engine):
        chat, copied, unraisable = _copy_config_as_on_a_page_load(backend)
        assert unraisable == [], backend
        callbacks = [c["props"]["delete_callback"] for c in copied["components"] if "delete_callback" in c.get("props", {})]
        assert [c.__self__ for c in callbacks if hasattr(c, "__self__")] == [chat]
        assert chat.slot.wait(0) is backend
