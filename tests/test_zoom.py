"""The zoom loop (issue 25): Qwen3-VL's `image_zoom_in_tool` offered, its calls answered with crops.

The tool's schema and crop follow Qwen-Agent's `qwen_agent/tools/image_zoom_in_qwen3vl.py` (the
tool the Qwen3-VL cookbook `think_with_images.ipynb` runs); the template's tool messages are
Qwen3-VL's own (`<tool_response>` inside a user turn). Driven here through the handlers with a
scripted engine, through `OpenAIEngine` against a scripted OpenAI-compatible server (raw
`<tool_call>` text and structured `tool_calls`), and through the tiny Qwen3-VL checkpoint's real
decoding path with forced tokens.
"""

from __future__ import annotations

import json
import threading

import pytest
from PIL import Image, ImageStat

from demo.engines.slot import EngineSlot
from demo.page.handlers import ChatHandlers
from demo.page.settings import Settings
from demo.record.conversation import MAX_ZOOMS, Attachment, Conversation, Turn, Zoom, to_model_messages
from demo.record.session_file import dump_conversation, read_conversation, write_pictures
from demo.record.limits import Limits
from demo.views.chat import chatbot_messages
from grounding.zoom import ZOOM_TOOL, crop_region_xyxy, crop_size_wh, find_zoom_calls, tool_call_text
from tests.fakes import ScriptedEngine
from tests.helpers import parts, scripted_server


def call(bbox, img_idx: int = 0, label: str = "cat") -> str:
    return tool_call_text("image_zoom_in_tool", {"bbox_2d": bbox, "label": label, "img_idx": img_idx})


# -- the crop's geometry (Qwen-Agent's rules) ----------------------------------------------------

REGIONS = [
    # a box inside the picture: its whole pixels
    ((100, 50, 300, 250), (1000, 500), (100, 50, 300, 250)),
    # fractions: the region covers the box (floor the start, ceil the end)
    ((100.4, 50.6, 299.2, 250.1), (1000, 500), (100, 50, 300, 251)),
    # over the edge: clipped to the picture
    ((-20, -10, 50, 60), (100, 100), (0, 0, 50, 60)),
    # 11 px wide: widened to 32 around its centre, ×32/11 on both sides (Qwen-Agent's ratio)
    ((490, 240, 501, 251), (1000, 500), (479, 229, 512, 262)),
    # small in a corner: widening would leave it under 33 px, so the box stays as it is (as Qwen-Agent's does)
    ((0, 0, 5, 5), (100, 100), (0, 0, 5, 5)),
]


@pytest.mark.parametrize("bbox, image_wh, region", REGIONS)
def test_the_cropped_region(bbox, image_wh, region):
    assert crop_region_xyxy(bbox, image_wh) == region


def test_a_box_outside_the_picture_is_refused():
    with pytest.raises(ValueError):
        crop_region_xyxy((120, 10, 150, 40), (100, 100))


SIZES = [
    # small: enlarged to at least 256 × 32 × 32 pixels, sides multiples of 32
    ((200, 200), (512, 512)),
    # long and thin: the aspect kept
    ((1000, 100), (1632, 192)),
    # large enough: sides rounded to 32
    ((1000, 700), (992, 704)),
    # over 12,845,056 pixels: shrunk under it
    ((4000, 4000), (3584, 3584)),
]


@pytest.mark.parametrize("region_wh, size", SIZES)
def test_the_crops_size(region_wh, size):
    w, h = crop_size_wh(region_wh)
    assert (w, h) == size and w % 32 == 0 and h % 32 == 0 and 256 * 32 * 32 <= w * h <= 12845056


CALLS = [
    # the cookbook's call
    (call([574, 301, 660, 468]), 1),
    # arguments as a JSON string (how OpenAI-style tool calls carry them)
    ('<tool_call>\n{"name": "image_zoom_in_tool", "arguments": "{\\"bbox_2d\\": [1, 2, 3, 4], \\"img_idx\\": 0}"}\n</tool_call>', 1),
    # another tool: not a zoom
    (tool_call_text("computer_use", {"action": "left_click", "coordinate": [5, 6]}), 0),
    # still being written: nothing yet
    ('<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2', 0),
    # not JSON
    ("<tool_call>\nzoom please\n</tool_call>", 0),
    # two calls: both found, in order
    (call([1, 2, 3, 4]) + "\n" + call([5, 6, 7, 8], 1), 2),
]


@pytest.mark.parametrize("text, count", CALLS)
def test_zoom_calls_in_an_answer(text, count):
    assert len(find_zoom_calls("Let me look closer. " + text)) == count


# -- the record: messages for the model, labels, saving -------------------------------------------


def zoomed_conversation(photos) -> Conversation:
    picture = Image.open(photos["chelsea"]).convert("RGB")
    crop = picture.crop((100, 50, 300, 250)).resize((512, 512))
    answer = "Looking closer. " + call([222, 167, 665, 833]) + "It is a cat."
    zoom = Zoom(at=answer.index("It is"), source=1, region_xyxy=(100, 50, 300, 250), attachment=Attachment("", crop, "crop of Picture 1"))
    turn = Turn("What is it?", [Attachment(str(photos["chelsea"]), picture, "chelsea.png")], answer=answer, status="done", zooms=[zoom])
    return Conversation([turn, Turn("And now?", [Attachment(str(photos["coffee"]), Image.open(photos["coffee"]).convert("RGB"), "coffee.png")])])


def test_a_zoomed_answer_is_split_at_its_call_and_the_crop_is_the_tools_answer(photos):
    conversation = zoomed_conversation(photos)
    messages = to_model_messages(conversation, "")
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert messages[1]["content"][0]["text"].endswith("</tool_call>")
    assert messages[2]["content"] == [{"type": "image", "image": conversation.turns[0].zooms[0].attachment.image}]
    assert messages[3]["content"][0]["text"] == "It is a cat."
    # The crop is Picture 2 for the model and the person alike: the next upload is Picture 3.
    assert conversation.labels() == [["Picture 1"], ["Picture 3"]]
    assert conversation.zoom_labels(0) == ["Picture 2"]
    assert [a.name for a in conversation.images()] == ["chelsea.png", "crop of Picture 1", "coffee.png"]


def test_the_qwen3_vl_template_renders_the_crop_as_a_tool_response_labelled_picture_2(photos, tiny_checkpoints):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_checkpoints["tiny-random-qwen3-vl"]))
    prompt = processor.apply_chat_template(
        to_model_messages(zoomed_conversation(photos), ""), tools=[ZOOM_TOOL], tokenize=False, add_generation_prompt=True, add_vision_id=True
    )
    assert '"name": "image_zoom_in_tool"' in prompt
    assert "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\nPicture 2: <|vision_start|><|image_pad|><|vision_end|>\n</tool_response><|im_end|>" in prompt
    assert "Picture 3: " in prompt


def test_zooms_are_saved_and_loaded(photos, tmp_path):
    conversation = zoomed_conversation(photos)
    conversation.turns[1].answer, conversation.turns[1].status = "ok", "done"
    path = tmp_path / "c.json"
    path.write_text(dump_conversation(conversation))
    loaded = write_pictures(read_conversation(str(path), Limits()), tmp_path / "pictures")
    (zoom,) = loaded.turns[0].zooms
    original = conversation.turns[0].zooms[0]
    assert (zoom.at, zoom.source, zoom.region_xyxy, zoom.attachment.name) == (original.at, 1, (100, 50, 300, 250), "crop of Picture 1")
    assert zoom.attachment.size_wh == (512, 512) and zoom.attachment.path
    assert [m["role"] for m in to_model_messages(loaded, "")] == ["user", "assistant", "tool", "assistant", "user", "assistant"]


@pytest.mark.parametrize(
    "zooms",
    [
        [{"at": 10_000, "source": 1, "region_xyxy": [0, 0, 5, 5], "reasoning": ""}],  # after the answer's end
        [{"at": 3, "source": 9, "region_xyxy": [0, 0, 5, 5], "reasoning": ""}],  # no Picture 9
        [{"at": 3, "source": 1, "region_xyxy": [0, 0, 5], "reasoning": ""}],  # a region of three numbers
        [{"at": 3, "source": 1, "region_xyxy": [0, 0, 5, 5], "reasoning": ""}] * (MAX_ZOOMS + 1),  # more than an answer makes
    ],
)
def test_a_file_with_malformed_zooms_is_refused(photos, tmp_path, zooms):
    from demo.media.errors import UploadError

    data = json.loads(dump_conversation(zoomed_conversation(photos)))
    image = data["turns"][0]["zooms"][0]["image"]
    data["turns"][0]["zooms"] = [{**z, "image": image} for z in zooms]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UploadError):
        read_conversation(str(path), Limits())


# -- the loop, through the handlers ----------------------------------------------------------------


class ZoomingEngine(ScriptedEngine):
    family = "qwen3-vl"
    zooms = True


def make(answers, delay: float = 0.0) -> tuple[ChatHandlers, ZoomingEngine]:
    engine = ZoomingEngine(answers, delay=delay)
    slot = EngineSlot("scripted", "qwen3-vl")
    slot.fill(engine)
    return ChatHandlers(slot, min_update_interval=0.0), engine


def answer(handlers, photos, settings: Settings | None = None) -> Conversation:
    replies = list(handlers.chat({"text": "What does the sign say?", "files": [str(photos["chelsea"])]}, None, settings))
    return replies[-1].conversation


def test_a_zoom_call_is_answered_with_the_crop_and_the_answer_goes_on(photos):
    handlers, engine = make([["I will look closer.\n", call([250, 250, 750, 750])], ["The cat", " is striped."]])
    conversation = answer(handlers, photos)
    turn = conversation.turns[0]
    assert turn.status == "done" and len(engine.calls) == 2
    assert turn.answer == "I will look closer.\n" + call([250, 250, 750, 750]) + "The cat is striped."
    (zoom,) = turn.zooms
    # 0-1000 of the 451×300 picture: x 112.75..338.25, y 75..225
    assert (zoom.source, zoom.region_xyxy) == (1, (112, 75, 339, 225))
    assert zoom.attachment.image.size == crop_size_wh((227, 150))
    original = Image.open(photos["chelsea"]).convert("RGB").crop(zoom.region_xyxy).resize(zoom.attachment.image.size)
    sent = zoom.attachment.image
    assert max(abs(a - b) for a, b in zip(ImageStat.Stat(sent).mean, ImageStat.Stat(original).mean, strict=True)) < 2
    # The second call reads the first round, then the crop as the tool's answer, with the tool offered.
    messages, settings = engine.calls[1]
    assert [m["role"] for m in messages[-3:]] == ["user", "assistant", "tool"]
    assert messages[-2]["content"][0]["text"].endswith("</tool_call>")
    assert settings.zoom
    # The chat shows the crop, labelled, and never the raw call.
    chat = chatbot_messages(conversation, "qwen3-vl")
    texts = [p for p in parts(chat) if isinstance(p, str)]
    assert not any("<tool_call>" in t or "image_zoom_in_tool" in t for t in texts)
    assert any(t.startswith("🔍 **Picture 2** · crop of Picture 1") and "(112, 75)–(339, 225)" in t for t in texts)
    assert {"path": zoom.attachment.path, "alt_text": "Picture 2, a crop of Picture 1"} in parts(chat[-1:])  # in the answer


def test_the_rounds_are_bounded(photos):
    handlers, engine = make([[call([100, 100, 900, 900])]] * (MAX_ZOOMS + 3))
    turn = answer(handlers, photos).turns[0]
    assert len(turn.zooms) == MAX_ZOOMS and len(engine.calls) == MAX_ZOOMS + 1 and turn.status == "done"
    assert turn.answer.endswith("</tool_call>")  # the last call stays in the answer, unanswered


def test_the_setting_off_offers_no_tool_and_answers_no_call(photos):
    handlers, engine = make([[call([250, 250, 750, 750])]])
    turn = answer(handlers, photos, Settings(zoom=False)).turns[0]
    assert turn.zooms == [] and len(engine.calls) == 1 and not engine.calls[0][1].zoom


def test_a_model_without_the_tool_is_never_looped(photos):
    handlers, engine = make([[call([250, 250, 750, 750])]])
    engine.zooms = False
    assert answer(handlers, photos).turns[0].zooms == [] and len(engine.calls) == 1


def test_stop_ends_the_loop_at_once(photos):
    handlers, engine = make([[call([250, 250, 750, 750])], ["slow "] * 200], delay=0.02)
    replies = handlers.chat({"text": "Look", "files": [str(photos["chelsea"])]}, None)
    for reply in replies:
        if reply.conversation.turns[0].zooms and reply.conversation.turns[0].answer.endswith("slow "):
            handlers.stop(reply.conversation)
            break
    last = list(replies)[-1].conversation.turns[0]
    assert last.status == "stopped" and len(engine.calls) == 2 and last.answer.count("slow") < 20


# -- through a server: raw text and structured tool calls -----------------------------------------


@pytest.mark.parametrize("structured", [False, True], ids=["raw-text", "tool_calls"])
def test_a_server_round_trip(photos, structured):
    from demo.engines.server import OpenAIEngine

    arguments = json.dumps({"bbox_2d": [250, 250, 750, 750], "label": "cat", "img_idx": 0})

    def reply(n: int) -> list[dict]:
        if n > 0:
            return [{"content": "A striped cat."}]
        if not structured:
            return [{"content": "Closer: " + call([250, 250, 750, 750])}]
        head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "image_zoom_in_tool", "arguments": ""}}
        return [{"content": "Closer: "}, {"tool_calls": [head]}] + [
            {"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 9]}}]} for i in range(0, len(arguments), 9)
        ]

    with scripted_server(reply) as (url, bodies):
        engine = OpenAIEngine(url, "Qwen/Qwen3-VL-2B-Instruct", timeout=10)
        assert engine.zooms
        slot = EngineSlot("Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl")
        slot.fill(engine)
        handlers = ChatHandlers(slot, min_update_interval=0.0)
        turn = answer(handlers, photos).turns[0]
    assert turn.status == "done" and len(turn.zooms) == 1 and turn.answer.endswith("A striped cat.")
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["image_zoom_in_tool"]
    tool = bodies[1]["messages"][-1]
    assert tool["role"] == "tool" and [p["type"] for p in tool["content"]] == ["text", "image_url"]
    assert tool["content"][0]["text"] == "Picture 2: " and tool["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert json.loads(find_call_json(bodies[1]["messages"][-2]["content"]))["arguments"]["bbox_2d"] == [250, 250, 750, 750]


def find_call_json(text: str) -> str:
    start, end = find_zoom_calls(text)[0]
    return text[start:end].removeprefix("<tool_call>").removesuffix("</tool_call>")


# -- the tiny Qwen3-VL model's real decoding path --------------------------------------------------


def test_the_tiny_qwen3_vl_model_zooms_through_generate(photos, tiny_checkpoints, one_torch_thread):
    """Forced tokens (a logits processor) make the model write the call, then the answer: the rest
    (the template offering the tool, the crop through the vision tower, the cache reused) is real."""
    from transformers import LogitsProcessor, LogitsProcessorList

    from demo.engines.local.engine import TransformersEngine

    engine = TransformersEngine(str(tiny_checkpoints["tiny-random-qwen3-vl"]), device="cpu", dtype="float32")
    assert engine.zooms
    scripted = [call([250, 250, 750, 750]), "A cat."]
    prompts: list[str] = []
    original = engine.model.generate

    def generate(**kwargs):
        tokens = engine.tokenizer(scripted.pop(0) + "<|im_end|>", add_special_tokens=False)["input_ids"]
        start = kwargs["input_ids"].shape[1]
        prompts.append(engine.tokenizer.decode(kwargs["input_ids"][0]))

        class Force(LogitsProcessor):
            def __call__(self, input_ids, scores):
                scores[:] = float("-inf")
                scores[:, tokens[min(input_ids.shape[1] - start, len(tokens) - 1)]] = 0
                return scores

        earlier = kwargs.pop("logits_processor", [])  # the engine's own (min_new_tokens)
        return original(**kwargs, logits_processor=LogitsProcessorList([*earlier, Force()]))

    engine.model.generate = generate
    slot = EngineSlot("tiny-random-qwen3-vl", "qwen3-vl")
    slot.fill(engine)
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    turn = answer(handlers, photos).turns[0]
    assert turn.status == "done" and len(turn.zooms) == 1 and turn.answer.endswith("A cat.")
    assert "image_zoom_in_tool" in prompts[0] and "<tool_response>" not in prompts[0]
    assert "<tool_response>\nPicture 2: <|vision_start|>" in prompts[1]
    assert prompts[1].count("<|vision_start|>") == 2
