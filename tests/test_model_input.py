"""`demo.engines.model_input`: what an answer sends the model, checked as plain functions (no handlers, no page)."""

from __future__ import annotations

import pytest
from PIL import Image

from demo.engines.base import GenerationSettings
from demo.engines.model_input import check_request, model_messages, vision_costs
from demo.media.video import SampledVideo
from demo.record.conversation import Attachment, Conversation, Turn, VisionCost
from demo.record.limits import LimitError, Limits
from tests.fakes import ScriptedEngine

SETTINGS = GenerationSettings()


def picture(size_wh: tuple[int, int], name: str = "p.png") -> Attachment:
    return Attachment(path=f"/uploads/{name}", image=Image.new("RGB", size_wh, "white"), name=name)


def video(frames: int = 4, frame_wh: tuple[int, int] = (56, 56)) -> Attachment:
    clip = SampledVideo(
        frames=tuple(Image.new("RGB", frame_wh) for _ in range(frames)),
        timestamps=tuple(float(i) for i in range(frames)),
        frame_wh=frame_wh,
        source_wh=frame_wh,
        source_fps=1.0,
        duration=float(frames),
        sample_fps=1.0,
    )
    return Attachment(path="/uploads/v.mp4", video=clip, name="v.mp4")


def sent_sizes(messages: list[dict]) -> list[tuple[int, int]]:
    return [p["image"].size for m in messages for p in m["content"] if p.get("type") == "image"]


@pytest.mark.parametrize(
    ("uploads", "costs", "expected"),
    [
        # a picture already at its cost's size goes as it is
        ([picture((56, 28))], [VisionCost((56, 28), 2)], [(56, 28)]),
        # a picture kept at another size is resized to exactly what the cost says
        ([picture((300, 200))], [VisionCost((84, 56), 6)], [(84, 56)]),
        # a video between two pictures: each picture gets its own cost, the video's frames are not pictures
        ([picture((40, 40), "a.png"), video(), picture((90, 30), "b.png")],
         [VisionCost((28, 28), 1), VisionCost((56, 56), 8), VisionCost((84, 28), 3)], [(28, 28), (84, 28)]),
    ],
)  # fmt: skip
def test_model_messages_send_each_picture_at_its_cost_size(uploads, costs, expected):
    conversation = Conversation(turns=[Turn("What is here?", uploads)])
    assert sent_sizes(model_messages(conversation, SETTINGS, costs)) == expected


def test_model_messages_leave_the_conversation_pictures_alone():
    upload = picture((300, 200))
    model_messages(Conversation(turns=[Turn("?", [upload])]), SETTINGS, [VisionCost((84, 56), 6)])
    assert upload.image.size == (300, 200)  # what the person sees stays


def test_model_messages_need_one_cost_per_upload():
    with pytest.raises(ValueError):
        model_messages(Conversation(turns=[Turn("?", [picture((28, 28)), picture((28, 28))])]), SETTINGS, [VisionCost((28, 28), 1)])


def test_vision_costs_come_from_the_engine_and_the_video_and_are_capped():
    engine = ScriptedEngine([])  # every picture costs 1 token at 28×28
    uploads = [picture((500, 400)), video(frames=4, frame_wh=(56, 56))]
    assert vision_costs(engine, uploads, SETTINGS, Limits()) == [VisionCost((28, 28), 1), VisionCost((56, 56), 8)]
    with pytest.raises(LimitError, match="9 visual tokens, more than the 8 allowed"):
        vision_costs(engine, uploads, SETTINGS, Limits(max_visual_tokens=8))


def test_check_request_counts_the_whole_conversation():
    engine = ScriptedEngine([])  # one token per word of text (system prompt included), one per picture
    first = Turn("one two three", [picture((28, 28))])
    whole = Conversation(turns=[first, Turn("four five")])
    tokens = engine.count_tokens(model_messages(whole, SETTINGS, [VisionCost((28, 28), 1)]), SETTINGS)
    assert tokens == engine.count_tokens(model_messages(Conversation(turns=[first]), SETTINGS, [VisionCost((28, 28), 1)]), SETTINGS) + 2
    check_request(engine, whole, SETTINGS, Limits(max_prompt_tokens=tokens))
    with pytest.raises(LimitError, match=f"{tokens} tokens, more than the {tokens - 1} allowed"):
        check_request(engine, whole, SETTINGS, Limits(max_prompt_tokens=tokens - 1))
