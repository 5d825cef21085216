"""Videos in the chat: labels, the processor, bad files, no second decode, reuse, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.engines.base import GenerationSettings
from demo.engines.slot import EngineSlot
from demo.page.handlers import ChatHandlers
from demo.page.settings import Settings
from demo.record.conversation import Conversation, Turn, to_model_messages
from demo.record.limits import Limits
from demo.record.session_file import dump_conversation, load_conversation
from tests.fakes import AtLeast
from tests.helpers import parts, shown
from tests.test_video import BAD, write_video

SHORT = Settings(max_new_tokens=8)


@pytest.fixture
def handlers(engine):
    slot = EngineSlot("tiny")
    slot.fill(AtLeast(engine, min_new_tokens=3))
    return ChatHandlers(slot, min_update_interval=0.0)


def test_an_image_and_a_video_in_one_turn_stream_an_answer(handlers, engine, photos, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", size=(96, 64), fps=10, frames=30)
    updates = list(handlers.chat({"text": "What happens?", "files": [str(photos["chelsea"]), str(clip)]}, None, SHORT))
    chatbot, conversation = shown(updates[-1]), updates[-1].conversation
    assert len(updates) > 2 and conversation.turns[0].status == "done"
    prompt = engine.render_prompt(to_model_messages(conversation, "You are a helpful assistant."))
    assert "Picture 1: <|vision_start|><|image_pad|><|vision_end|>Video 1: <|vision_start|><|video_pad|>" in prompt
    inputs = engine.prepare_inputs(to_model_messages(conversation, ""), GenerationSettings())
    t, h, w = inputs["video_grid_thw"][0].tolist()
    pads = int((inputs["input_ids"][0] == engine.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())
    video = conversation.turns[0].attachments[1].video
    assert pads == t * h * w // 4 == video.visual_tokens
    # What the model reads (Qwen2-VL): the label, then the video's pads in one pair of vision markers.
    text = engine.tokenizer.decode(inputs["input_ids"][0])
    assert f"Video 1: <|vision_start|>{'<|video_pad|>' * pads}<|vision_end|>What happens?" in text
    assert t == len(video.frames) // 2
    captions = [m["content"] for m in chatbot if m["role"] == "user" and isinstance(m["content"], str)]
    assert captions[0].startswith("**Picture 1** · chelsea.png")
    assert captions[1].startswith("**Video 1** · clip.mp4 · 6 frames at 2.0 fps") and "visual tokens" in captions[1]
    player = [m["content"] for m in chatbot if isinstance(m["content"], dict)][1]
    assert player["alt_text"] == "Video 1" and Path(player["path"]).read_bytes() == clip.read_bytes()  # the session's copy


def test_the_sampling_settings_reach_the_decoder(handlers, tmp_path):
    clip = write_video(tmp_path / "long.mp4", size=(64, 48), fps=10, frames=100)  # 10 s
    settings = Settings(max_new_tokens=8, system_prompt="", video_fps=0.5, video_max_frames=4)
    conversation = list(handlers.chat({"text": "?", "files": [str(clip)]}, None, settings))[-1].conversation
    video = conversation.turns[0].attachments[0].video
    assert len(video.frames) == 4 and video.sample_fps == pytest.approx(0.4, abs=0.11)


@pytest.mark.parametrize(
    ("make", "says"),
    [b[1:] for b in BAD if b[0] != "missing"] + [(lambda d: d / "gone.mp4", "gone.mp4 could not be read (the upload is gone")],
    ids=[b[0] for b in BAD if b[0] != "missing"] + ["missing"],
)
def test_each_bad_video_gets_its_sentence_and_the_next_turn_works(handlers, tmp_path, make, says):
    *_, reply = handlers.chat("Hello", None, SHORT)
    path = make(tmp_path)
    (reply,) = list(handlers.chat({"text": "And this?", "files": [str(path)]}, reply.conversation, SHORT))
    chatbot = shown(reply)
    assert chatbot[-1]["content"].startswith("⚠ Not sent: ") and says in chatbot[-1]["content"]
    assert len(reply.conversation.turns) == 1
    *_, reply = handlers.chat("Still there?", reply.conversation, SHORT)
    assert [t.status for t in reply.conversation.turns] == ["done", "done"]


def test_a_one_frame_video_is_answered(handlers, tmp_path):
    clip = write_video(tmp_path / "still.mp4", frames=1)
    conversation = list(handlers.chat({"text": "?", "files": [str(clip)]}, None, SHORT))[-1].conversation
    assert conversation.turns[0].status == "done" and len(conversation.turns[0].attachments[0].video.frames) == 2


def test_follow_ups_reuse_the_decoded_frames(handlers, tmp_path, monkeypatch):
    import demo.engines.model_input as module

    decoded = []
    original = module.sample_video
    monkeypatch.setattr(module, "sample_video", lambda *a, **k: decoded.append(a) or original(*a, **k))
    clip = write_video(tmp_path / "clip.mp4", frames=20)
    conversation = list(handlers.chat({"text": "What is this?", "files": [str(clip)]}, None, SHORT))[-1].conversation
    frames = conversation.turns[0].attachments[0].video.frames
    conversation = list(handlers.chat("And then?", conversation, SHORT))[-1].conversation
    conversation = list(handlers.regenerate(conversation, SHORT))[-1].conversation
    assert len(decoded) == 1 and conversation.turns[0].attachments[0].video.frames is frames


def test_kv_reuse_with_a_video_is_exact(engine, tmp_path):
    from demo.engines.model_input import attach
    from demo.media.video import VideoSettings

    clip = attach(str(write_video(tmp_path / "clip.mp4", size=(80, 60), frames=20)), VideoSettings(max_frames=4), engine, GenerationSettings())
    settings = GenerationSettings(max_new_tokens=10, min_new_tokens=10)
    conversation = Conversation(turns=[Turn("Watch.", [clip])])
    engine.forget("video")
    for follow_up in ("What moves?", "Anything else?"):
        inputs = engine.prepare_inputs(to_model_messages(conversation, ""), settings)
        reused = engine.generate(inputs, settings, "video").sequences[0, inputs["input_ids"].shape[1]:].tolist()
        fresh = engine.generate(inputs, settings)[0, inputs["input_ids"].shape[1]:].tolist()
        assert reused == fresh
        conversation.turns[-1].answer, conversation.turns[-1].status = engine.tokenizer.decode(reused), "done"
        conversation.turns[-1].answer = engine.clean(conversation.turns[-1].answer)
        conversation.turns.append(Turn(follow_up))
    engine.forget("video")


def test_a_conversation_with_a_video_saves_and_loads(handlers, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=20)
    conversation = list(handlers.chat({"text": "Watch.", "files": [str(clip)]}, None, SHORT))[-1].conversation
    saved = tmp_path / "c.json"
    saved.write_text(dump_conversation(conversation))
    loaded = load_conversation(str(saved), Limits(), tmp_path / "loaded")
    before, after = conversation.turns[0].attachments[0].video, loaded.turns[0].attachments[0].video
    assert [f.tobytes() for f in after.frames] == [f.tobytes() for f in before.frames]
    assert after.timestamps == before.timestamps and after.visual_tokens == before.visual_tokens
    loaded = list(handlers.chat("And now?", loaded, SHORT))[-1].conversation
    assert loaded.turns[-1].status == "done"


def test_timestamps_in_an_answer_about_a_video_are_shown_bold(handlers, tmp_path):
    from demo.views.chat import chatbot_messages

    clip = write_video(tmp_path / "clip.mp4", frames=20)
    conversation = list(handlers.chat({"text": "When?", "files": [str(clip)]}, None, SHORT))[-1].conversation
    conversation.turns[0].answer = "The cat jumps at 00:12 and again at 1:02:03, then <|box_start|>(1,2),(3,4)<|box_end|>."
    chatbot = chatbot_messages(conversation, "qwen2-vl")
    bubble = parts(chatbot, "assistant")
    assert "at **00:12** and again at **1:02:03**" in bubble[0]
    assert "| 1 | — | (1, 2, 3, 4) |" in bubble[1]  # a box about the video is listed, as written
