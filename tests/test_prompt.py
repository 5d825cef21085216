"""The prompt the model reads: exact text, Picture labels over the whole conversation, token counts."""

from __future__ import annotations

import pytest
from PIL import Image

from demo.engines.base import GenerationSettings
from demo.record.conversation import Attachment, Conversation, Turn, to_model_messages

IMG = "<|vision_start|><|image_pad|><|vision_end|>"


def picture(width: int, height: int, color: str = "red") -> Attachment:
    return Attachment(path=f"/uploads/{color}.png", image=Image.new("RGB", (width, height), color), name=f"{color}.png")


@pytest.fixture
def three_turns() -> Conversation:
    """Two images in turn 1, a text-only turn 2, one image in turn 3 (being answered)."""
    return Conversation(
        turns=[
            Turn("Compare them.", [picture(100, 80, "red"), picture(64, 64, "blue")], answer="They differ.", status="done"),
            Turn("Which is larger?", answer="Picture 1.", status="done"),
            Turn("And this one?", [picture(300, 120, "green")]),
        ]
    )


def test_prompt_numbers_pictures_over_the_whole_conversation(engine, three_turns):
    prompt = engine.render_prompt(to_model_messages(three_turns, "You are a helpful assistant."))
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\nPicture 1: {IMG}Picture 2: {IMG}Compare them.<|im_end|>\n"
        "<|im_start|>assistant\nThey differ.<|im_end|>\n"
        "<|im_start|>user\nWhich is larger?<|im_end|>\n"
        "<|im_start|>assistant\nPicture 1.<|im_end|>\n"
        f"<|im_start|>user\nPicture 3: {IMG}And this one?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_custom_system_prompt_replaces_the_default(engine):
    conversation = Conversation(turns=[Turn("Hi")])
    prompt = engine.render_prompt(to_model_messages(conversation, "Answer in French."))
    assert prompt == (
        "<|im_start|>system\nAnswer in French.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_blank_system_prompt_gives_the_models_default(engine):
    conversation = Conversation(turns=[Turn("Hi")])
    prompt = engine.render_prompt(to_model_messages(conversation, "  "))
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi")


def test_text_only_turn(engine):
    conversation = Conversation(turns=[Turn("What can you do?")])
    prompt = engine.render_prompt(to_model_messages(conversation, "You are a helpful assistant."))
    assert "Picture" not in prompt and "<|image_pad|>" not in prompt
    assert prompt.endswith("<|im_start|>user\nWhat can you do?<|im_end|>\n<|im_start|>assistant\n")


def test_grounding_tokens_in_an_earlier_answer_reach_the_model_as_tokens(engine):
    answer = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(10,20),(300,400)<|box_end|>"
    conversation = Conversation(turns=[Turn("Find the cat", [picture(64, 64)], answer=answer, status="done"), Turn("More?")])
    inputs = engine.prepare_inputs(to_model_messages(conversation, ""), GenerationSettings())
    ids = inputs["input_ids"][0].tolist()
    for token in ("<|object_ref_start|>", "<|box_start|>", "<|box_end|>"):
        assert engine.tokenizer.convert_tokens_to_ids(token) in ids


@pytest.mark.parametrize(
    "settings",
    [
        GenerationSettings(),  # the model's own pixel bounds
        GenerationSettings(min_pixels=28 * 28 * 16, max_pixels=28 * 28 * 16),  # every image exactly 16 tokens
        GenerationSettings(max_pixels=28 * 28 * 8),  # a tight cap shrinks every image
    ],
)
def test_image_pad_count_matches_each_grid_and_the_announced_cost(engine, three_turns, settings):
    inputs = engine.prepare_inputs(to_model_messages(three_turns, ""), settings)
    grids = inputs["image_grid_thw"].tolist()
    assert len(grids) == 3
    pad_id = engine.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    ids = inputs["input_ids"][0].tolist()
    # Each image's pads form one run, in Picture order; its length is t*h*w/4.
    runs, run = [], 0
    for token in ids + [None]:
        if token == pad_id:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert runs == [t * h * w // 4 for t, h, w in grids]
    # The cost the UI shows is what the processor really did.
    for attachment, (t, h, w) in zip(three_turns.images(), grids, strict=True):
        cost = engine.vision_cost(attachment.size_wh, settings)
        assert cost.tokens == t * h * w // 4
        assert cost.input_wh == (w * engine.patch_size, h * engine.patch_size)
