"""Thinking models: Qwen3-VL Thinking and Qwen3.5 (thinking on or off).

What the official templates (demo/engines/tiny/templates/) do, which these tests hold the app to:
- Both open the answer's think block in the generation prompt (`<|im_start|>assistant\\n<think>\\n`),
  so the model writes only `</think>`; Qwen3.5 with `enable_thinking=False` renders an empty,
  closed block instead (`<think>\\n\\n</think>\\n\\n`). Qwen3-VL Thinking's has no switch.
- An earlier assistant message's reasoning is its `reasoning_content` if that is a string, else
  what its content holds before `</think>` (the content is then what follows). Both render it
  only for assistant messages after the last user query (tool calls within one turn); every
  answer before it goes back as its content alone. So a follow-up's prompt holds each earlier
  answer without its reasoning, as the Qwen3 model card asks ("No Thinking Content in History").

The engines' stream is the assistant message as the template reads it back (`<think>` first when
the prompt opened it); `demo.record.reasoning` splits it into the turn's reasoning and answer.
"""

from __future__ import annotations

import itertools
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gradio as gr
import pytest
from PIL import Image

from demo.engines.base import GenerationSettings
from demo.engines.server import OpenAIEngine
from demo.engines.slot import EngineSlot
from demo.media.pictures import UploadError
from demo.page.handlers import ChatHandlers
from demo.page.settings import Settings
from demo.record.conversation import Attachment, Conversation, Turn, to_model_messages
from demo.record.limits import Limits
from demo.record.reasoning import AnswerWriter, prompt_opens_reasoning, split_reasoning
from demo.record.session_file import dump_conversation, load_conversation
from demo.views.annotations import turn_detections
from demo.views.chat import NO_ANSWER_NOTES, chatbot_messages
from demo.views.export import detections_record
from demo.views.markup import inert
from tests.fakes import AtLeast, ScriptedEngine, forced_answer
from tests.helpers import parts, shown

THINKING = ["tiny-random-qwen3-vl-thinking", "tiny-random-qwen3.5"]
RED = Image.new("RGB", (64, 64), "red")


def question(text: str, *parts: dict) -> list[dict]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


# -- the official templates and the follow-up prompt ----------------------------------------------


def conversation_with_reasoning() -> Conversation:
    """An answer with its reasoning, one cut while still reasoning, and a question being answered."""
    red = Attachment(path="/up/red.png", image=RED, name="red.png")
    return Conversation(
        turns=[
            Turn("What colour is Picture 1?", [red], answer="It is red.", reasoning="The picture is red.\nSo: red.", thought_seconds=1.5, status="done"),
            Turn("Why <b>red</b>?", answer="", reasoning="Red because", status="stopped"),
            Turn("And now?"),
        ]
    )


FOLLOW_UP = (
    "<|im_start|>system\nBe brief.<|im_end|>\n"
    "<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>What colour is Picture 1?<|im_end|>\n"
    "<|im_start|>assistant\nIt is red.<|im_end|>\n"
    "<|im_start|>user\nWhy <b>red</b>?<|im_end|>\n"
    "<|im_start|>assistant\n<|im_end|>\n"
    "<|im_start|>user\nAnd now?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.mark.parametrize("name", THINKING)
def test_a_follow_up_prompt_is_what_the_official_template_renders_for_the_model_cards_history(tiny_checkpoints, name):
    engine = tiny_checkpoints.engine(name)
    messages = to_model_messages(conversation_with_reasoning(), "Be brief.")
    assert messages[2]["reasoning_content"] == "The picture is red.\nSo: red."
    ours = engine.render_prompt(messages)

    def official(first_answer: str, second_answer: str) -> str:
        history = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "image", "image": RED}, {"type": "text", "text": "What colour is Picture 1?"}]},
            {"role": "assistant", "content": first_answer},
            {"role": "user", "content": "Why <b>red</b>?"},
            {"role": "assistant", "content": second_answer},
            {"role": "user", "content": "And now?"},
        ]
        return engine.processor.apply_chat_template(history, tokenize=False, add_generation_prompt=True, add_vision_id=True)

    # The model card's history (earlier answers alone), and the raw assistant text with its think block.
    # (An answer cut before </think> has no answer: as raw text, the template would send its reasoning.)
    assert ours == official("It is red.", "")
    assert ours == official("<think>\nThe picture is red.\nSo: red.\n</think>\n\nIt is red.", "")
    assert ours == FOLLOW_UP + "<think>\n"
    if engine.thinking == "switch":
        assert engine.render_prompt(messages, thinking=False) == FOLLOW_UP + "<think>\n\n</think>\n\n"


@pytest.mark.parametrize(
    "name, mode",
    [("tiny-random-qwen3.5", ("switch", True)), ("tiny-random-qwen3-vl-thinking", ("always", True)), ("tiny-random-qwen3-vl", ("none", False))],
)
def test_the_engine_reads_whether_it_thinks_from_the_registry_and_the_template(tiny_checkpoints, name, mode):
    engine = tiny_checkpoints.engine(name)
    assert (engine.thinking, engine.thinking_default) == mode
    messages = question("What?", {"type": "image", "image": RED})
    on, off = (engine.prepare_inputs(messages, GenerationSettings(thinking=t))["input_ids"][0] for t in (True, False))
    if engine.thinking == "switch":  # the setting reaches the template: the prompt the model reads differs
        assert engine.tokenizer.decode(on).endswith("<|im_start|>assistant\n<think>\n")
        assert engine.tokenizer.decode(off).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert len(off) > len(on)
    else:  # no switch: the setting changes nothing
        assert on.tolist() == off.tolist()
    assert prompt_opens_reasoning(engine.render_prompt(messages)) == (engine.thinking != "none")


# -- the split, on streamed pieces --------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write(pieces: list[str], clock: Clock | None = None) -> tuple[Turn, list[tuple[str, str]]]:
    """Feed `pieces` to a turn; the turn and its (reasoning, answer) after each piece."""
    turn = Turn("q", answer="old", reasoning="old")
    writer = AnswerWriter(turn, clock or Clock())
    seen = []
    for piece in pieces:
        writer.write(piece)
        seen.append((turn.reasoning, turn.answer))
    writer.finish()
    return turn, seen


def test_a_close_tag_split_across_pieces_never_shows_and_the_answer_holds_only_what_follows():
    clock = Clock()
    turn = Turn("q")
    writer = AnswerWriter(turn, clock)
    seen = []
    for piece in ["<think>\n", "Picture 1 is", " red.</th", "ink", ">\n", "\nIt is ", "red."]:
        clock.now += 0.5
        writer.write(piece)
        seen.append((turn.reasoning, turn.answer, turn.thought_seconds))
    writer.finish()
    assert seen == [
        ("", "", None),
        ("Picture 1 is", "", None),
        ("Picture 1 is red.", "", None),  # "</th" held back
        ("Picture 1 is red.", "", None),
        ("Picture 1 is red.", "", 2.5),  # closed at the 5th piece, 2.5 s after the start
        ("Picture 1 is red.", "It is ", 2.5),  # the newlines after </think> are not the answer's
        ("Picture 1 is red.", "It is red.", 2.5),
    ]
    assert (turn.reasoning, turn.answer, turn.thought_seconds) == ("Picture 1 is red.", "It is red.", 2.5)


TEXTS = [
    "<think>\nLet me look.\n</think>\n\nIt is <|box_start|>red<|box_end|>.",
    "Reasoning inline, the prompt's tag not repeated.</think>\n\nThe answer.",
    "<think>\nCut while still reasoning about [{\"bbox_2d\": [1, 2",
    "A plain answer < with a bracket <",
]


@pytest.mark.parametrize("text", TEXTS)
def test_every_way_of_cutting_a_text_into_pieces_gives_the_same_turn(text):
    whole = split_reasoning(text)
    for i, j in itertools.combinations(range(1, len(text)), 2):
        turn, seen = write([text[:i], text[i:j], text[j:]])
        assert (turn.reasoning, turn.answer) == (whole.reasoning, whole.answer), (i, j)
        assert all("</th" not in r and "</th" not in a for r, a in seen[:-1])


def test_an_answer_cut_mid_reasoning_keeps_the_reasoning_and_says_no_answer_came():
    turn, _ = write(["<think>\n", "The box is [", '{"bbox_2d": [1, 2, 3, 4]}'])
    assert (turn.reasoning, turn.answer, turn.thought_seconds) == ('The box is [{"bbox_2d": [1, 2, 3, 4]}', "", None)
    for status in ("done", "stopped"):
        turn.status = status
        thought, answer = chatbot_messages(Conversation(turns=[turn]), "qwen3-vl")[1:]
        assert thought["metadata"] == {"title": "Reasoning (unfinished)"}  # no status: Gradio shows it open
        assert answer["content"] == NO_ANSWER_NOTES[status]


def test_a_plain_answer_is_kept_as_written():
    pieces = ["<|object_ref_start|>a<|object_ref_end|>", "<|box_start|>(1,2),(3,4)<|box_end|> <", "/b> and </", "think"]
    turn, _ = write(pieces)
    assert (turn.reasoning, turn.answer) == ("", "".join(pieces))  # a trailing "</think" is text once the stream ends


# -- the page: folded reasoning, answer alone, boxes from the answer ------------------------------


DRAFT = '[{"bbox_2d": [0, 0, 100, 100], "label": "draft"}]'
FINAL = '[{"bbox_2d": [500, 500, 1000, 1000], "label": "cat"}]'
SMALL_DRAFT = '[{"bbox_2d": [0, 0, 9, 9]}]'  # fewer tokens to force through a real model


def scripted(answers, family: str = "qwen3-vl") -> tuple[ChatHandlers, ScriptedEngine]:
    engine = ScriptedEngine(answers)
    engine.family, engine.thinking, engine.thinking_default = family, "always", True
    slot = EngineSlot("scripted", family)
    slot.fill(engine)
    return ChatHandlers(slot, min_update_interval=0.0), engine


def test_the_chat_folds_the_reasoning_streams_it_live_and_draws_boxes_from_the_answer_only(tmp_path):
    Image.new("RGB", (200, 100), "white").save(tmp_path / "white.png")
    pieces = ["<think>\n", "Maybe <b>here</b>: ", DRAFT, "\n</th", "ink>\n\n", "The cat: ", FINAL]
    handlers, engine = scripted([pieces, ["<think>\nEasy.\n</think>\n\nNo."]])
    views, last = [], None
    for reply in handlers.chat({"text": "Where is the cat?", "files": [str(tmp_path / "white.png")]}, None):
        views.append(shown(reply))
        last = reply
    thoughts = [[m for m in view if m.get("metadata")] for view in views]
    # While it reasons: one thought, open with a spinner, filling as the pieces come, no answer bubble under it.
    pending = [(view, t[0]) for view, t in zip(views, thoughts, strict=True) if t and t[0]["metadata"]["status"] == "pending"]
    so_far = "Maybe &lt;b&gt;here&lt;/b&gt;: "  # inert: no HTML runs
    drafted = so_far + inert(DRAFT)
    assert [t["content"] for _, t in pending] == [so_far, drafted, drafted]  # "</th" held back
    assert all(view[-1] is thought and thought["metadata"]["title"] == "Thinking…" for view, thought in pending)
    # Once it has ended: folded ("done"), with the time it took; the answer bubble holds the answer alone.
    final = views[-1]
    thought = thoughts[-1][0]
    assert thought["metadata"]["status"] == "done" and thought["metadata"]["title"] == "Reasoning"
    assert thought["metadata"]["duration"] >= 0
    assert thought["content"] == drafted
    answer = parts(final[final.index(thought) + 1 :])[0]  # one message: the answer, then its picture drawn and list
    assert answer.startswith("The cat: ") and "draft" not in answer and "here" not in answer
    # The boxes: from the answer only, on the picture.
    conversation = last.conversation
    turn = conversation.turns[0]
    assert (turn.reasoning, turn.answer) == ("Maybe <b>here</b>: " + DRAFT, "The cat: " + FINAL)
    assert [d.label for d in turn_detections(conversation, 0, "qwen3-vl")] == ["cat"]
    assert [d["label"] for d in detections_record(conversation, "qwen3-vl")["detections"]] == ["cat"]
    drawn = [p["path"] for p in parts(final, "assistant") if isinstance(p, dict)]
    assert len(drawn) == 1 and "cat" in parts(final)[-1] and "draft" not in parts(final)[-1]
    # The follow-up sends the answer, its reasoning apart, as the templates read them.
    *_, last = handlers.chat("And the dog?", conversation)
    sent = engine.calls[1][0][2]
    assert sent == {"role": "assistant", "content": [{"type": "text", "text": "The cat: " + FINAL}], "reasoning_content": turn.reasoning}


def test_the_switch_shows_only_where_the_template_has_one_and_reaches_the_engine():
    from demo.page.chat_page import ChatPage, thinking_switch

    waiting = EngineSlot("loading", "qwen3.5")
    assert thinking_switch(waiting).visible is True  # before the model is there: its generation may have one
    assert thinking_switch(EngineSlot("loading", "qwen3-vl")).visible is False
    for mode, default, visible in (("switch", False, True), ("always", True, False), ("none", False, False)):
        handlers, engine = scripted([["ok"]], family="qwen3.5")
        engine.thinking, engine.thinking_default = mode, default
        switch = thinking_switch(handlers.slot)
        assert (switch.visible, switch.value) == (visible, default)
    with gr.Blocks():
        page = ChatPage(handlers, gr.Chatbot(), gr.State(), gr.MultimodalTextbox())
    *_, update = page.chat({"text": "Hi", "files": []}, None, thinking=False)
    assert engine.calls[-1][1].thinking is False
    list(page.regenerate(update[page.conversation], thinking=True))
    assert engine.calls[-1][1].thinking is True
    assert Settings().generation().thinking is None  # API callers who say nothing get the model's default


def test_saving_and_loading_keep_the_reasoning_and_old_files_still_load(tmp_path):
    conversation = conversation_with_reasoning()
    conversation.turns[-1].status = "done"
    path = tmp_path / "saved.json"
    path.write_text(dump_conversation(conversation))
    loaded = load_conversation(str(path), Limits(), tmp_path / "images")
    assert [(t.reasoning, t.answer, t.thought_seconds) for t in loaded.turns] == [
        (t.reasoning, t.answer, t.thought_seconds) for t in conversation.turns
    ]
    # A file saved before reasoning was kept apart: the answer held the raw text; it is split on load.
    data = json.loads(path.read_text())
    for raw in data["turns"]:
        del raw["reasoning"], raw["thought_seconds"]
    data["turns"][0]["answer"] = "The picture is red.\n</think>\n\nIt is red."
    path.write_text(json.dumps(data))
    old = load_conversation(str(path), Limits(), tmp_path / "images")
    assert [(t.reasoning, t.answer, t.thought_seconds) for t in old.turns] == [
        ("The picture is red.", "It is red.", None), ("", "", None), ("", "", None)
    ]
    data["turns"][0]["reasoning"], data["turns"][0]["thought_seconds"] = 3, "soon"
    path.write_text(json.dumps(data))
    with pytest.raises(UploadError, match="reasoning that is not a string"):
        load_conversation(str(path), Limits(), tmp_path / "images")


# -- real generations on the tiny thinking checkpoints --------------------------------------------


class Recorded(AtLeast):
    """The real engine, answers at least `min_new_tokens` long, its pieces kept as they were streamed."""

    def stream(self, *args, **kwargs):
        self.pieces: list[str] = []
        for piece in super().stream(*args, **kwargs):
            self.pieces.append(piece)
            yield piece


@pytest.mark.parametrize("name", THINKING)
def test_a_real_generation_streams_into_the_reasoning_and_a_forced_one_splits(tiny_checkpoints, name, tmp_path):
    engine = tiny_checkpoints.engine(name)
    recorded = Recorded(engine, 8)
    slot = EngineSlot(name, engine.family)
    slot.fill(recorded)
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    RED.save(tmp_path / "red.png")
    message = {"text": "What?", "files": [str(tmp_path / "red.png")]}
    *_, last = handlers.chat(message, None, Settings(max_new_tokens=8))
    assert recorded.pieces[0] == "<think>\n"  # the prompt's opening tag, then the model's own tokens
    raw = "".join(recorded.pieces[1:])
    assert "</think>" not in raw  # random weights: it is still reasoning after 8 tokens
    turn = last.conversation.turns[0]
    assert (turn.reasoning, turn.answer, turn.status) == (raw.strip("\n"), "", "done")
    assert shown(last)[-1]["content"] == NO_ANSWER_NOTES["done"]
    # Forced: reasoning with a draft box, </think>, then the answer with the real one.
    with forced_answer(engine, f"Not {SMALL_DRAFT}\n</think>\n\n{FINAL}"):
        *_, last = handlers.chat(message, None)
    turn = last.conversation.turns[0]
    assert turn.status == "done", turn.error
    assert (turn.reasoning, turn.answer) == (f"Not {SMALL_DRAFT}", FINAL)
    assert [d.label for d in turn_detections(last.conversation, 0, engine.family)] == ["cat"]
    if engine.thinking == "switch":  # thinking off: the template closed the block, all of it is the answer
        with forced_answer(engine, "Red."):
            *_, last = handlers.chat(message, None, Settings(thinking=False))
        turn = last.conversation.turns[0]
        # A failed answer streams nothing: say so, not only that the text is empty (transformers 5.25 at
        # first failed here in the session cache's linear-attention snapshot, `demo/engines/local/kv_reuse.py`)
        assert turn.status == "done", turn.error
        assert (turn.reasoning, turn.answer, "".join(recorded.pieces)) == ("", "Red.", "Red.")  # no <think> opened


# -- servers: reasoning inline or in its own field; the switch as chat_template_kwargs ----------


@contextmanager
def sse_server(chunks: list[dict]):
    """An OpenAI-compatible stand-in that answers every request with these deltas; yields (url, request bodies)."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for delta in [{"role": "assistant"}, *chunks]:
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                self.wfile.write(b"data: " + json.dumps(_chunk(choice)).encode() + b"\n\n")
            self.wfile.write(b"data: " + json.dumps(_chunk({"index": 0, "delta": {}, "finish_reason": "stop"})).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", bodies
    finally:
        server.shutdown()
        server.server_close()


def _chunk(choice: dict) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}


ANSWERED = ("Let me look.", "It is red.")


@pytest.mark.parametrize(
    "model, chunks",
    [
        # vLLM 0.20+ with --reasoning-parser qwen3: a `reasoning` field
        ("Qwen/Qwen3-VL-8B-Thinking", [{"reasoning": "Let me"}, {"reasoning": " look."}, {"content": "It is "}, {"content": "red."}]),
        # SGLang, transformers serve, older vLLM: `reasoning_content`
        ("Qwen/Qwen3.5-27B", [{"reasoning_content": "Let me look."}, {"content": "It is red."}]),
        # no reasoning parser: inline, after the <think> the template put in the prompt
        ("Qwen/Qwen3.5-27B", [{"content": "Let me"}, {"content": " look.</th"}, {"content": "ink>\n\nIt is red."}]),
    ],
)
def test_a_server_streams_the_reasoning_inline_or_apart_and_it_is_split_alike(model, chunks):
    with sse_server(chunks) as (url, bodies):
        engine = OpenAIEngine(url, model)
        pieces = list(engine.stream(question("What colour?"), GenerationSettings(), threading.Event()))
    assert pieces[0] == "<think>\n"
    turn, _ = write(pieces)
    assert (turn.reasoning, turn.answer) == ANSWERED
    kwargs = bodies[0].get("chat_template_kwargs")
    assert kwargs == ({"enable_thinking": True} if engine.thinking == "switch" else None)


def test_a_server_gets_the_switch_and_the_history_without_reasoning():
    # transformers serve, thinking off: its parser calls the prompt's closed block's newlines reasoning.
    chunks = [{"reasoning_content": "\n\n"}, {"content": "It is red."}]
    with sse_server(chunks) as (url, bodies):
        engine = OpenAIEngine(url, "Qwen/Qwen3.5-27B", extra_body={"chat_template_kwargs": {"custom": 1}})
        messages = to_model_messages(conversation_with_reasoning(), "")
        pieces = list(engine.stream(messages, GenerationSettings(thinking=False), threading.Event()))
    turn, _ = write(pieces)
    assert (turn.reasoning, turn.answer.strip()) == ("", "It is red.")
    assert bodies[0]["chat_template_kwargs"] == {"custom": 1, "enable_thinking": False}
    assert [m["content"] for m in bodies[0]["messages"] if m["role"] == "assistant"] == ["It is red.", ""]
    assert "The picture is red" not in json.dumps(bodies[0])


@pytest.mark.slow  # starting transformers serve takes 10-25 s on this machine: run with -m slow
def test_transformers_serve_gives_the_reasoning_apart_and_takes_the_switch(tiny_checkpoints, tmp_path):
    """A real server keeping the contract: `transformers serve` (5.23) parses Qwen's reasoning into
    `reasoning_content` deltas and passes `chat_template_kwargs` to the template."""
    from tests.test_openai_engine import Server, at_least

    server = Server(None, tmp_path)  # not pinned: each request names its checkpoint directory
    server.start()
    try:
        results = {}
        for name, thinking in (("tiny-random-qwen3-vl-thinking", True), ("tiny-random-qwen3.5", True), ("tiny-random-qwen3.5", False)):
            path = tiny_checkpoints[name]
            engine = OpenAIEngine(server.url, str(path), extra_body=at_least(path, 6))
            settings = GenerationSettings(max_new_tokens=6, thinking=thinking)
            pieces = list(engine.stream(question("Hi"), settings, threading.Event()))
            turn, _ = write(pieces)
            results[name, thinking] = (engine.thinking, pieces[0] == "<think>\n", bool(turn.reasoning), bool(turn.answer.strip()))
    finally:
        server.stop()
    assert results == {
        ("tiny-random-qwen3-vl-thinking", True): ("always", True, True, False),  # random weights: never reaches </think>
        ("tiny-random-qwen3.5", True): ("switch", True, True, False),
        ("tiny-random-qwen3.5", False): ("switch", False, False, True),  # the template closed the block: all answer
    }


# -- what a person sees -------------------------------------------------------------------------


@pytest.mark.browser
def test_the_reasoning_is_a_folded_block_above_the_answer_that_opens_on_click(browser, tiny_checkpoints, tmp_path, artifacts):  # noqa: F811
    from tests.conftest import serve_app
    from tests.test_browser import ask

    engine = tiny_checkpoints.engine("tiny-random-qwen3.5")
    Image.new("RGB", (200, 100), "white").save(tmp_path / "white.png")
    reasoning = "The cat sits at the bottom right of Picture 1."
    with serve_app(engine, "tiny-random-qwen3.5", min_new_tokens=0) as app, forced_answer(engine, f"{reasoning}\n</think>\n\n{FINAL}"):
        page = browser.new_page(viewport={"width": 1200, "height": 1100})
        try:
            page.goto(app["url"])
            page.get_by_text("is ready").wait_for(timeout=15_000)
            settings = page.locator("button.label-wrap", has_text="Settings")
            settings.click()
            page.locator("#thinking").get_by_text("Think before answering").wait_for(timeout=5_000)  # Qwen3.5 has the switch
            settings.click()
            ask(page, "Where is the cat?", [tmp_path / "white.png"])
            chat = page.locator("#chatbot")
            title = chat.get_by_text("Reasoning", exact=False).first
            title.wait_for(timeout=10_000)
            page.screenshot(path=str(artifacts / "thinking-folded.png"))
            assert not chat.get_by_text(reasoning).is_visible()  # folded once the reasoning has ended
            answer = chat.locator("[data-testid='bot']").filter(has_text="cat").first
            assert reasoning not in chat.inner_text() and "</think>" not in chat.inner_text()
            assert answer.is_visible() and chat.locator("img").count() == 2  # the picture, and its box drawn once
            title.click()
            chat.get_by_text(reasoning).wait_for(timeout=5_000)  # opened by a click
            page.wait_for_timeout(400)  # the block slides open
            page.screenshot(path=str(artifacts / "thinking-open.png"))
        finally:
            page.close()
