"""Each generation's own video conventions, through its tiny checkpoint's real processor and model.

What transformers 5.25 does with the frames the app samples (`processor_video_kwargs`):

- every generation: the frames reach the vision encoder as they are (no second resize, no
  resampling, not even for the Qwen3-VL video processor's own `min_frames` 4, `fps` 2 and
  `size`), and the visual tokens the app shows are the processor's count;
- Qwen2-VL: no time at all;
- Qwen2.5-VL: `second_per_grid_ts` = 2 / our sample fps, which spaces the video's temporal
  M-RoPE positions by tokens_per_second × seconds;
- Qwen3-VL and Qwen3.5: `<t seconds>` before each pair of frames, t the mean of the pair's real times,
  each pair in its own vision markers and nothing around them (`layout`: 5.23 kept the template's outer pair).

Then the app's whole path per generation: a picture and a video in one turn, a second video in
a follow-up, videos sent while the model loads, and a conversation saved with another generation.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from demo.engines.base import GenerationSettings
from demo.engines.slot import EngineSlot
from demo.media.video import SampledVideo, VideoSettings, video_metadata
from demo.media.video_decode import sample_video
from demo.page.handlers import ChatHandlers
from demo.page.settings import Settings
from demo.record.conversation import to_model_messages
from grounding.generations import generation
from tests.fakes import AtLeast
from tests.helpers import shown
from tests.test_video import write_video

CLIP = Path(__file__).resolve().parent.parent / "demo" / "examples" / "rocket-launch.mp4"  # 4 s, 12 fps
PHOTO = CLIP.with_name("rocket.jpg")
FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qwen3.5")
TIMESTAMP = re.compile(r"<(\d+\.\d) seconds>")


@pytest.fixture(params=FAMILIES)
def engine_of(request, tiny_checkpoints):
    """The real engine on the tiny checkpoint of each generation."""
    return tiny_checkpoints.engine(generation(request.param).tiny_checkpoint)


def settings_for(engine, **kwargs) -> VideoSettings:
    return VideoSettings(factor=engine.resize_factor, **kwargs)


def model_inputs(engine, *videos: SampledVideo):
    """What `engine` makes of one user turn holding these videos: its inputs and their text."""
    content = [{"type": "video", "video": video} for video in videos] + [{"type": "text", "text": "What happens?"}]
    inputs = engine.prepare_inputs([{"role": "user", "content": content}], GenerationSettings())
    return inputs, engine.tokenizer.decode(inputs["input_ids"][0])


def video_pads(engine, inputs) -> int:
    return int((inputs["input_ids"][0] == engine.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())


def pair_times(video: SampledVideo) -> list[str]:
    """Our frames' real times, as Qwen3-VL's processor writes them: the mean of each pair, 0.1 s."""
    t = video.timestamps
    return [f"{(t[i] + t[i + 1]) / 2:.1f}" for i in range(0, len(t), 2)]


def layout(family: str, video: SampledVideo) -> str:
    """The text a video becomes in the model's prompt, after its label, as transformers 5.25 writes it.

    Qwen2-VL and Qwen2.5-VL: the template's `<|vision_start|><|video_pad|><|vision_end|>`, the pad
    repeated once per visual token. Qwen3-VL and Qwen3.5 (`Qwen3VLProcessor.replace_video_token`): per
    pair of frames, its time then its own markers around its pads; `get_text_with_replacements` folds the
    template's outer markers away, so the label is directly followed by the first pair's time.
    """
    pairs = len(video.frames) // 2
    pads = "<|video_pad|>" * (video.visual_tokens // pairs)
    if generation(family).video_timing == "timestamps":
        return "".join(f"<{t} seconds><|vision_start|>{pads}<|vision_end|>" for t in pair_times(video))
    return f"<|vision_start|>{pads * pairs}<|vision_end|>"


# -- the frames as sampled, the tokens as shown ------------------------------------------------------


def test_the_frames_reach_the_model_unchanged_and_the_tokens_shown_are_the_processors(engine_of, tmp_path):
    engine = engine_of
    processor = engine.processor.video_processor
    patch, merge = generation(engine.family).patch_size, generation(engine.family).merge_size
    videos = [
        sample_video(str(CLIP), settings_for(engine)),  # 8 frames
        # 2 frames: under the Qwen3-VL video processor's own min_frames (4), kept
        sample_video(str(CLIP), settings_for(engine, fps=0.25)),
        sample_video(str(write_video(tmp_path / "tall.mp4", size=(64, 96), fps=10, frames=25)), settings_for(engine)),
    ]
    assert len(videos[1].frames) == 2 < processor.min_frames
    inputs, _ = model_inputs(engine, *videos)
    grids = inputs["video_grid_thw"].tolist()
    for video, (t, h, w) in zip(videos, grids, strict=True):
        fw, fh = video.frame_wh
        assert fw % engine.resize_factor == 0 and fh % engine.resize_factor == 0
        assert (t, h * patch, w * patch) == (len(video.frames) // 2, fh, fw)
    assert (
        video_pads(engine, inputs)
        == sum(v.visual_tokens for v in videos)
        == sum(t * h * w for t, h, w in grids) // merge**2
    )

    # The pixels are the frames' own: the first patch of the first video, back from the
    # processor's normalisation, is the top-left patch × patch of its frames 1 and 2 (one
    # temporal patch), to rounding.
    mean = torch.tensor(processor.image_mean).view(3, 1, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1, 1)
    first = inputs["pixel_values_videos"][0].view(3, 2, patch, patch) * std + mean
    expected = np.stack([np.asarray(frame)[:patch, :patch] for frame in videos[0].frames[:2]])  # (2, p, p, 3)
    assert np.abs(first.permute(1, 2, 3, 0).numpy() * 255 - expected).max() < 1.0


def test_frames_larger_than_the_processors_own_bounds_are_kept(engine_of):
    # The tiny checkpoints' video processors bound a frame at 50,176 / 65,536 pixels (their
    # `size`); our frames are sized by VideoSettings alone (do_resize=False).
    engine = engine_of
    video = sample_video(str(CLIP), settings_for(engine, fps=1.0))
    fw, fh = video.frame_wh
    assert fw * fh > engine.processor.video_processor.size["longest_edge"]
    inputs, _ = model_inputs(engine, video)
    assert inputs["video_grid_thw"][0].tolist()[1:] == [
        fh // generation(engine.family).patch_size,
        fw // generation(engine.family).patch_size,
    ]


# -- time, per generation ----------------------------------------------------------------------------


def test_each_generation_gets_time_its_own_way(engine_of):
    engine = engine_of
    video = sample_video(str(CLIP), settings_for(engine, fps=1.0))  # 4 frames at 0.5, 1.5, 2.5, 3.5 s
    assert video.timestamps == pytest.approx((0.5, 1.5, 2.5, 3.5))
    inputs, text = model_inputs(engine, video)
    timing = generation(engine.family).video_timing
    if timing == "none":  # Qwen2-VL
        assert "second_per_grid_ts" not in inputs and not TIMESTAMP.search(text)
    elif timing == "absolute-time":  # Qwen2.5-VL
        assert inputs["second_per_grid_ts"].tolist() == pytest.approx([2.0]) and not TIMESTAMP.search(text)
    else:  # Qwen3-VL, Qwen3.5: one timestamp per pair of frames, then the pair's tokens
        assert TIMESTAMP.findall(text) == ["1.0", "3.0"]
        assert "second_per_grid_ts" not in inputs
        per_pair = video.visual_tokens // 2
        assert (
            re.findall(r"<\d+\.\d seconds><\|vision_start\|>((?:<\|video_pad\|>)+)<\|vision_end\|>", text)
            == ["<|video_pad|>" * per_pair] * 2
        )
    # The whole video, exactly, right after its label.
    assert f"Video 1: {layout(engine.family, video)}What happens?<|im_end|>" in text


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, tuple[str, dict]]:
    """Clips whose sampled times are not round (NTSC frame rate, odd lengths, a variable frame
    rate), each with the VideoSettings keywords it is sampled with."""
    tmp_path = tmp_path_factory.mktemp("clips")
    vfr = [0, 40, 90, 170, 200, 260, 330, 400, 410, 480, 560, 600, 690, 720, 800, 880, 900, 990, 1040, 1100]
    return {
        "rocket, 2 a second": (str(CLIP), {}),
        "NTSC 3.7 s, 1 a second": (
            str(write_video(tmp_path / "ntsc.mp4", fps=Fraction(30000, 1001), frames=111)),
            {"fps": 1.0},
        ),
        "25 fps 5.2 s, 4 a second": (str(write_video(tmp_path / "pal.mp4", fps=25, frames=130)), {"fps": 4.0}),
        "variable frame rate": (
            str(write_video(tmp_path / "vfr.mp4", fps=25, frames=len(vfr), pts_ms=vfr)),
            {"fps": 4.0},
        ),
    }


@pytest.mark.parametrize("family", ["qwen2.5-vl"])
def test_qwen25_seconds_per_grid_is_two_over_our_sample_rate_and_spaces_the_positions(family, tiny_checkpoints, clips):
    """Qwen2.5-VL's processor: second_per_grid_ts = temporal_patch_size / metadata.sampled_fps
    (processing_qwen2_5_vl.py `_process_videos`); the model: temporal position of grid k =
    start + int(k × tokens_per_second × second_per_grid_ts) (modeling_qwen2_5_vl.py
    `get_vision_position_ids`), so positions follow seconds, whatever the sampling rate."""
    engine = tiny_checkpoints.engine(generation(family).tiny_checkpoint)
    temporal_patch = engine.processor.video_processor.temporal_patch_size
    tokens_per_second = engine.model.config.vision_config.tokens_per_second
    for what, (path, kwargs) in clips.items():
        video = sample_video(path, settings_for(engine, **kwargs))
        inputs, _ = model_inputs(engine, video)
        step = inputs["second_per_grid_ts"].item()
        assert step == pytest.approx(temporal_patch / video.sample_fps, rel=1e-6), what  # a float32 tensor
        assert step == pytest.approx(2 * video.duration / len(video.frames), rel=1e-6), (
            what
        )  # a float32 tensor  # a pair of frames' span
        positions, _ = engine.model.model.get_rope_index(
            inputs["input_ids"],
            inputs["mm_token_type_ids"],
            video_grid_thw=inputs["video_grid_thw"],
            second_per_grid_ts=inputs["second_per_grid_ts"],
        )
        temporal = positions[0, 0][inputs["mm_token_type_ids"][0] == 2]
        t, h, w = inputs["video_grid_thw"][0].tolist()
        per_grid = temporal.view(t, h * w // 4)
        assert (per_grid == per_grid[:, :1]).all()
        starts = per_grid[:, 0] - per_grid[0, 0]
        assert starts.tolist() == [int(k * tokens_per_second * step) for k in range(t)], what


@pytest.mark.parametrize("family", ["qwen3-vl", "qwen3.5"])
def test_qwen3_timestamps_are_our_frames_real_times(family, tiny_checkpoints, clips):
    """Qwen3VLProcessor.replace_video_token writes f"<{t:.1f} seconds>" before each pair of
    frames, t = mean of frames_indices / fps over the pair (`_calculate_timestamps`): with our
    metadata, the mean of the pair's real times, for any frame rate."""
    engine = tiny_checkpoints.engine(generation(family).tiny_checkpoint)
    for what, (path, kwargs) in clips.items():
        video = sample_video(path, settings_for(engine, **kwargs))
        _, text = model_inputs(engine, video)
        assert TIMESTAMP.findall(text) == pair_times(video), what
        metadata = video_metadata(video)
        assert [i / metadata["fps"] for i in metadata["frames_indices"]] == pytest.approx(video.timestamps), what


def test_a_ten_second_video_at_one_frame_a_second(tiny_checkpoints, tmp_path):
    # Frames at 0.5, 1.5, ... 9.5 s (the middle of each second); pairs at 1, 3, 5, 7, 9 s.
    engine = tiny_checkpoints.engine("tiny-random-qwen3-vl")
    video = sample_video(str(write_video(tmp_path / "ten.mp4", fps=10, frames=100)), settings_for(engine, fps=1.0))
    assert video.timestamps == pytest.approx([k + 0.5 for k in range(10)])
    _, text = model_inputs(engine, video)
    assert TIMESTAMP.findall(text) == ["1.0", "3.0", "5.0", "7.0", "9.0"]


# -- the app's whole path, per generation ------------------------------------------------------------


@pytest.fixture
def app_of(engine_of, monkeypatch):
    """Handlers on the generation's engine, recording what the model is given at each answer."""
    seen: list = []
    prepare = engine_of.prepare_inputs

    def recording(messages, settings):
        inputs = prepare(messages, settings)
        seen.append((inputs, engine_of.tokenizer.decode(inputs["input_ids"][0])))
        return inputs

    monkeypatch.setattr(engine_of, "prepare_inputs", recording)
    slot = EngineSlot(engine_of.model_name, engine_of.family)
    slot.fill(AtLeast(engine_of, min_new_tokens=3))
    return ChatHandlers(slot, min_update_interval=0.0), engine_of, seen


def captions(chatbot: list[dict]) -> list[str]:
    return [
        m["content"]
        for m in chatbot
        if m["role"] == "user" and isinstance(m["content"], str) and m["content"].startswith("**")
    ]


def test_a_picture_and_a_video_then_another_video(app_of, tmp_path):
    # Thinking off: eight tokens of a thinking model would all be reasoning (videos are the subject).
    handlers, engine, seen = app_of
    f = engine.resize_factor
    *_, reply = handlers.chat({"text": "What happens?", "files": [str(PHOTO), str(CLIP)]}, None, Settings(max_new_tokens=8, thinking=False))
    chatbot, conversation = shown(reply), reply.conversation
    assert conversation.turns[0].status == "done" and conversation.turns[0].answer
    video = conversation.turns[0].attachments[1].video
    inputs, text = seen[-1]
    picture = "<|image_pad|>" * (int(inputs["image_grid_thw"].prod()) // generation(engine.family).merge_size**2)
    assert f"Picture 1: <|vision_start|>{picture}<|vision_end|>Video 1: {layout(engine.family, video)}What happens?" in text
    assert video_pads(engine, inputs) == video.visual_tokens
    w, h = video.frame_wh
    assert w % f == 0 and h % f == 0
    assert (
        captions(chatbot)[1]
        == f"**Video 1** · rocket-launch.mp4 · 8 frames at 2.0 fps, {w}×{h} px each, {video.visual_tokens:,} visual tokens"
    )

    second = write_video(tmp_path / "second.mp4", size=(96, 64), fps=10, frames=30)
    *_, reply = handlers.chat({"text": "And this one?", "files": [str(second)]}, conversation, Settings(max_new_tokens=8, thinking=False))
    chatbot, conversation = shown(reply), reply.conversation
    assert conversation.turns[1].status == "done"
    inputs, text = seen[-1]
    assert text.index("Picture 1: ") < text.index("Video 1: ") < text.index("Video 2: ")
    videos = [a.video for a in conversation.attachments() if a.is_video]
    assert f"Video 1: {layout(engine.family, videos[0])}What happens?" in text
    assert f"Video 2: {layout(engine.family, videos[1])}And this one?" in text
    assert video_pads(engine, inputs) == sum(v.visual_tokens for v in videos)
    assert captions(chatbot)[2].startswith("**Video 2** · second.mp4 · ")
    if generation(engine.family).video_timing == "timestamps":
        assert TIMESTAMP.findall(text) == pair_times(videos[0]) + pair_times(videos[1])


def test_a_video_sent_while_the_model_loads_is_answered_once_it_has(engine_of):
    slot = EngineSlot("loading", engine_of.family)  # the family app.py reads from the checkpoint's config
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    updates = handlers.chat({"text": "What happens?", "files": [str(CLIP)]}, None, Settings(max_new_tokens=4))
    conversation = next(updates).conversation  # still loading: the video is sampled already
    video = conversation.turns[0].attachments[0].video
    assert video.factor == engine_of.resize_factor
    threading.Timer(0.2, slot.fill, [AtLeast(engine_of, min_new_tokens=2)]).start()
    *_, last = updates
    conversation = last.conversation
    assert conversation.turns[0].status == "done"
    assert conversation.turns[0].attachments[0].video is video  # taken as sampled
    inputs = engine_of.prepare_inputs(to_model_messages(conversation, ""), GenerationSettings())
    assert video_pads(engine_of, inputs) == video.visual_tokens


def test_a_conversation_saved_with_another_generation_is_answered(tiny_checkpoints, tmp_path):
    # A video sampled for Qwen2-VL (sides multiples of 28), saved, loaded into a Qwen3-VL app
    # (multiples of 32): its frames are resized once to the nearest size of 32, and the tokens
    # shown are again the processor's.
    from demo.record.session_file import dump_conversation

    old = ChatHandlers(_filled(tiny_checkpoints.engine("tiny-random")), min_update_interval=0.0)
    *_, first = old.chat({"text": "What happens?", "files": [str(CLIP)]}, None, Settings(max_new_tokens=4))
    saved = first.conversation
    assert saved.turns[0].attachments[0].video.factor == 28
    path = tmp_path / "conversation.json"
    path.write_text(dump_conversation(saved), "utf-8")

    engine = tiny_checkpoints.engine("tiny-random-qwen3-vl")
    new = ChatHandlers(_filled(engine), min_update_interval=0.0)
    loaded = new.load(str(path), None).conversation
    *_, reply = new.chat("And then?", loaded, Settings(max_new_tokens=4))
    chatbot, conversation = shown(reply), reply.conversation
    assert conversation.turns[-1].status == "done", conversation.turns[-1].error
    video = conversation.turns[0].attachments[0].video
    assert video.factor == 32 and video.frame_wh[0] % 32 == 0 and video.frame_wh[1] % 32 == 0
    inputs = engine.prepare_inputs(to_model_messages(conversation, ""), GenerationSettings())
    assert video_pads(engine, inputs) == video.visual_tokens
    assert f"{video.visual_tokens:,} visual tokens" in captions(chatbot)[0]


def _filled(engine) -> EngineSlot:
    slot = EngineSlot(engine.model_name, engine.family)
    slot.fill(AtLeast(engine, min_new_tokens=2))
    return slot
