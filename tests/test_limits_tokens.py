"""Compute per request: the system prompt's length and the whole prompt's tokens are limited, counted
by the engine (`Engine.count_tokens`) without preprocessing any pixels; a refusal is one sentence
and leaves the conversation as it was."""

from __future__ import annotations

import time
import types

import pytest
from PIL import Image

from demo.engines.base import GenerationSettings, estimate_tokens
from demo.engines.local.engine import TransformersEngine
from demo.engines.server import OpenAIEngine
from demo.engines.slot import EngineSlot
from demo.media.video import VideoSettings
from demo.media.video_decode import sample_video
from demo.page.handlers import ChatHandlers
from demo.page.settings import Settings
from demo.record.limits import Limits
from tests.fakes import ScriptedEngine
from tests.helpers import generating, shown
from tests.test_generations_local import LOCAL
from tests.test_video import write_video


def messages_with(image: Image.Image, video, text: str = "What is in Picture 1 and Video 1? 你好 🚀") -> list[dict]:
    return [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "video", "video": video}, {"type": "text", "text": text}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat and a rocket."}]},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Again?"}]},
    ]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = write_video(tmp_path_factory.mktemp("v") / "clip.mp4", size=(96, 64), fps=10, frames=40)
    return sample_video(str(path), VideoSettings(fps=2, max_frames=8))


@pytest.mark.parametrize("name", LOCAL)
@pytest.mark.parametrize("thinking", [None, False])
def test_the_local_engine_counts_exactly_what_it_would_prefill(tiny_checkpoints, name, thinking, photos, clip):
    """Every generation's layout of pictures and videos (Qwen3-VL's and Qwen3.5's `<t seconds>` blocks without
    the template's outer vision markers, transformers 5.25), and a thinking switch's closed block."""
    engine = tiny_checkpoints.engine(name)
    settings = GenerationSettings(thinking=thinking)
    picture = Image.open(photos["chelsea"]).convert("RGB")
    picture = picture.resize(engine.vision_cost(picture.size, settings).input_wh)  # as the handlers hand it over
    video = clip.for_factor(engine.resize_factor)  # as the engine takes it
    messages = messages_with(picture, video)
    counted = engine.count_tokens(messages, settings)
    assert counted == engine.prepare_inputs(messages, settings)["input_ids"].shape[1]


def test_qwen3_vl_video_timestamps_are_counted_as_its_processor_writes_them(engine, clip):
    """Qwen3-VL writes '<t seconds>' and vision markers per frame pair: the count asks the processor for
    that text (from the grid alone) and must match what the processor makes from the pixels. Since
    transformers 5.25 those blocks replace the template's whole <|vision_start|><|video_pad|><|vision_end|>
    (`Qwen3VLProcessor.get_text_with_replacements`): no outer pair of markers is left around them."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    from demo.media.video import processor_video_kwargs

    clip32 = sample_video_at(clip, 32)
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16), tokenizer=engine.tokenizer,
        video_processor=Qwen3VLVideoProcessor(), chat_template=engine.processor.chat_template,
    )
    qwen3 = types.SimpleNamespace(processor=processor, tokenizer=engine.tokenizer, patch_size=16)
    placeholder = TransformersEngine._video_placeholder(qwen3, clip32)
    assert placeholder.count("seconds>") == len(clip32.frames) // 2
    t, w, h = clip32.timestamps, *clip32.frame_wh
    pads = "<|video_pad|>" * (w // 32 * (h // 32))  # one pair of frames
    assert placeholder == "".join(
        f"<{(t[i] + t[i + 1]) / 2:.1f} seconds><|vision_start|>{pads}<|vision_end|>" for i in range(0, len(t), 2)
    )
    made = processor(text=["<|vision_start|><|video_pad|><|vision_end|>"], return_tensors="pt", **processor_video_kwargs(clip32))
    assert engine.tokenizer.decode(made["input_ids"][0]) == placeholder
    assert made["input_ids"].shape[1] == len(engine.tokenizer(placeholder, add_special_tokens=False)["input_ids"])


def sample_video_at(video, factor: int):
    """The same frames at a size a factor-32 model takes."""
    from dataclasses import replace

    w, h = (max(factor, v // factor * factor) for v in video.frame_wh)
    return replace(video, frames=tuple(f.resize((w, h)) for f in video.frames), frame_wh=(w, h), factor=factor)


def test_the_server_engine_estimates_and_counts_what_it_sends(photos, clip):
    server = OpenAIEngine("http://127.0.0.1:9/v1", "Qwen/Qwen2-VL-2B-Instruct")
    settings = GenerationSettings()
    picture = Image.open(photos["chelsea"]).convert("RGB")
    messages = messages_with(picture, clip)
    estimate = server.count_tokens(messages, settings)
    # Each picture with its label, each video frame sent as a picture: their tokens are in the estimate.
    pictures = 2 * (server.vision_cost(picture.size, settings).tokens + 4 + 2)
    frames = len(clip.frames) * (server.vision_cost(clip.frame_wh, settings).tokens + 4 + 2)
    assert estimate > pictures + frames
    text = sum(len(p["text"].encode()) for m in messages for p in m["content"] if p["type"] == "text")
    assert estimate - pictures - frames < text  # the text's share: about bytes / 3, plus the template's


def test_the_estimate_is_in_the_right_range_for_the_real_tokenizer(engine):
    text = "Describe the picture in detail, then list every object you can see with its colour. " * 20
    messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    exact = engine.count_tokens(messages, GenerationSettings())
    estimate = estimate_tokens(messages, lambda size: 0)
    assert 0.5 * exact < estimate < 3 * exact  # the tiny model's tokenizer has a small vocabulary


def make(limits: Limits, answers=None) -> tuple[ChatHandlers, ScriptedEngine]:
    engine = ScriptedEngine(answers or [["first answer"], ["second answer"]])
    slot = EngineSlot("scripted")
    slot.fill(engine)
    return ChatHandlers(slot, limits=limits, min_update_interval=0.0), engine


def test_a_long_system_prompt_is_refused_in_one_sentence():
    handlers, engine = make(Limits(max_system_prompt_chars=100))
    (reply,) = list(handlers.chat("Hello", None, Settings(max_new_tokens=64, system_prompt="x" * 101)))
    assert shown(reply)[-1]["content"] == (
        "⚠ Not sent: The system prompt is 101 characters long, more than the 100 allowed: shorten it in the settings."
    )
    assert reply.conversation.turns == [] and reply.message is None and engine.calls == []

    *_, last = handlers.chat("Hello", None, Settings(max_new_tokens=64, system_prompt="x" * 100))
    (again,) = list(handlers.regenerate(last.conversation, Settings(max_new_tokens=64, system_prompt="y" * 200)))
    assert shown(again)[-1]["content"].startswith("⚠ Not regenerated: The system prompt is 200 characters long")
    after = again.conversation
    assert after.turns[0].answer == "first answer" and after.turns[0].status == "done"  # the answer it had


def test_a_prompt_over_the_token_limit_is_refused_and_nothing_changes(photos):
    handlers, engine = make(Limits(max_prompt_tokens=12))
    # The scripted engine counts a token a word and one a picture: the system prompt's 5 words, then 3.
    *_, last = handlers.chat("one two three", None)
    conversation = last.conversation
    assert conversation.turns[0].status == "done"
    (reply,) = list(handlers.chat({"text": "four five six seven eight", "files": [str(photos["coffee"])]}, conversation))
    after = reply.conversation
    assert shown(reply)[-1]["content"] == (
        "⚠ Not sent: This conversation's prompt would be 16 tokens, more than the 12 allowed: clear the conversation, "
        "or send fewer or smaller pictures."
    )
    assert len(after.turns) == 1 and reply.message is None and len(engine.calls) == 1

    strict = ChatHandlers(handlers.slot, limits=Limits(max_prompt_tokens=3), min_update_interval=0.0)
    (again,) = list(strict.regenerate(conversation))
    assert shown(again)[-1]["content"].startswith("⚠ Not regenerated: This conversation's prompt would be 8 tokens")
    assert again.conversation.turns[0].answer == "first answer"


def test_the_real_engine_refuses_a_prompt_over_the_limit(engine, photos):
    slot = EngineSlot("tiny")
    slot.fill(engine)
    handlers = ChatHandlers(slot, limits=Limits(max_prompt_tokens=60), min_update_interval=0.0)
    (reply,) = list(handlers.chat({"text": "Describe it.", "files": [str(photos["chelsea"])]}, None, Settings(max_new_tokens=8)))
    assert shown(reply)[-1]["content"].startswith("⚠ Not sent: This conversation's prompt would be ")
    assert reply.conversation.turns == []


def test_a_200k_character_system_prompt_never_reaches_the_model(app):
    """Through the launched app: refused at once; the model slot is never taken."""
    from gradio_client import Client

    chat = Client(app["url"], download_files=False, verbose=False)
    started = time.monotonic()
    history, _ = chat.predict({"text": "Hi", "files": []}, 8, 0.0, 0.9, "x" * 200_000, None, None, 2.0, 64, api_name="/chat")
    assert time.monotonic() - started < 10
    assert [m["role"] for m in history] == ["assistant"]
    assert history[0]["content"][0]["text"] == (
        "⚠ Not sent: The system prompt is 200,000 characters long, more than the 4,000 allowed: shorten it in the settings."
    )
    assert not generating()
