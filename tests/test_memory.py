"""Memory per session, measured on the launched app (its RSS, from outside): pictures are kept at the
size the model and the page need, and a session's memory is given back when it ends.

The full figure of the issue (four 64-megapixel pictures, under 600 MB) is the slow test; the
default one uses 16-megapixel pictures, which the app kept whole before (64 MB each).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from demo.media.pictures import UploadError, refit
from demo.record import session_file
from demo.record.conversation import Attachment, Conversation, Turn
from demo.record.limits import Limits
from demo.record.session_file import dump_conversation, read_conversation
from tests.helpers import parts, wait_until
from tests.launched import launched_app

MB = 2**20


def big_jpeg(path: Path, megapixels: float, seed: int) -> Path:
    side = int((megapixels * 1_000_000) ** 0.5)
    small = np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR).save(path, quality=85)
    return path


def session_growth(tmp_path: Path, megapixels: float) -> tuple[int, int]:
    """RSS growth of one session sending four pictures, and what is left once it has ended."""
    app = launched_app()  # warmed up with a picture: the vision path's first use is not part of a session
    photos = [big_jpeg(tmp_path / f"big-{i}.jpg", megapixels, i) for i in range(4)]
    assert wait_until(lambda: not app.session_folders(), timeout=20)
    baseline = app.rss()
    client = app.client()
    history, _ = client.predict({"text": "Describe them.", "files": [handle_file(str(p)) for p in photos]}, api_name="/chat")
    shown = [part.get("alt_text") for m in history for part in m["content"] if part.get("alt_text")]
    assert shown == [f"Picture {n}" for n in (1, 2, 3, 4)] and history[-1]["role"] == "assistant"
    grown = app.rss() - baseline
    client.close()  # as a closed tab: the heartbeat ends, Gradio runs the unload event
    assert wait_until(lambda: not app.session_folders(), timeout=20)
    return grown, app.rss() - baseline


def test_four_16_megapixel_pictures_cost_a_session_little_and_come_back(tmp_path):
    grown, left = session_growth(tmp_path, 16)
    print(f"16 MP x 4: +{grown / MB:.0f} MB during the session, +{left / MB:.0f} MB after it ended")
    assert grown < 100 * MB, f"a session grew the app by {grown / MB:.0f} MB"  # kept whole, they were 256 MB
    assert left < 50 * MB, f"{left / MB:.0f} MB was still held after the session ended"


@pytest.mark.slow
def test_four_64_megapixel_pictures_grow_a_session_by_less_than_600_mb(tmp_path):
    grown, left = session_growth(tmp_path, 64)
    print(f"64 MP x 4: +{grown / MB:.0f} MB during the session, +{left / MB:.0f} MB after it ended")
    assert grown < 600 * MB, f"a session grew the app by {grown / MB:.0f} MB"
    assert left < 100 * MB, f"{left / MB:.0f} MB was still held after the session ended"


# -- loaded conversations: the same budgets, checked from the headers before any pixel is decoded ----


def png_b64(image: Image.Image, **options) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG", **options)
    return base64.b64encode(out.getvalue()).decode()


def conversation_file(tmp_path: Path, images: list[dict]) -> Path:
    path = tmp_path / "saved.json"
    turn = {"text": "q", "images": images, "answer": "a", "status": "done", "error": ""}
    path.write_text(json.dumps({"format": "qwen-vl-chat/conversation", "version": 1, "turns": [turn]}))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if a picture's pixels are decoded."""

    def refuse(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(session_file, "load_picture", refuse)


def test_a_tiny_file_of_huge_one_bit_pictures_is_refused_before_decoding(tmp_path, no_decoding):
    """The attack of the issue: 1-bit PNGs of 8000x8000 are a few kB each and 256 MB each once decoded."""
    bomb = png_b64(Image.new("1", (8000, 8000)), optimize=True)
    path = conversation_file(tmp_path, [{"name": f"{i}.png", "png_base64": bomb} for i in range(8)])
    assert path.stat().st_size < 100_000
    with pytest.raises(UploadError, match=r"a picture of turn 1 is 8000×8000, larger than a picture may be kept"):
        read_conversation(str(path), Limits())


def test_pictures_each_allowed_but_too_many_pixels_together_are_refused_before_decoding(tmp_path, no_decoding):
    limits = Limits(max_images=3)  # a picture up to 16,384 x 32² pixels; all of them up to twice that + 3 x 1024²
    side = int((limits.max_visual_tokens * 32 * 32) ** 0.5)
    big = png_b64(Image.new("1", (side, side)), optimize=True)
    path = conversation_file(tmp_path, [{"name": f"{i}.png", "png_base64": big} for i in range(3)])
    assert side * side <= session_file.largest_picture(limits) and 3 * side * side > session_file.pixel_budget(limits)
    with pytest.raises(UploadError, match="hold more pixels than a conversation may keep"):
        read_conversation(str(path), limits)


def test_a_loaded_video_is_held_to_a_videos_pixel_budget(tmp_path, no_decoding):
    frame = png_b64(Image.new("1", (1792, 1792)), optimize=True)  # 4 frames of 3.2 MP: twice a video's budget
    video = {"name": "v.mp4", "kind": "video", "frames_png_base64": [frame] * 4, "timestamps": [0, 1, 2, 3],
             "source_wh": [1792, 1792], "source_fps": 1.0, "duration": 4.0, "sample_fps": 1.0, "factor": 28}
    with pytest.raises(UploadError, match="a video of turn 1 has more pixels than a video may have"):
        read_conversation(str(conversation_file(tmp_path, [video])), Limits())


def test_loaded_pictures_are_kept_at_display_size_and_decoded_again_when_the_model_needs_more(tmp_path):
    saved = Image.new("RGB", (3000, 2000), "teal")
    path = conversation_file(tmp_path, [{"name": "wide.png", "png_base64": png_b64(saved), "original_wh": [6000, 4000]}])
    loaded = session_file.load_conversation(str(path), Limits(), tmp_path / "images")
    picture = loaded.turns[0].attachments[0]
    assert picture.size_wh == (6000, 4000) and picture.image.size == (1024, 683)  # boxes in the original's pixels
    bigger = refit(picture.image, picture.size_wh, picture.path, (1960, 1316))  # a model asked to see more
    assert bigger.size == (1974, 1316)  # decoded again from the saved file, kept covering what it needs
    assert refit(bigger, picture.size_wh, picture.path, (448, 308)).size == (1024, 683)  # and shrunk again


def test_a_conversation_the_app_saved_loads_back_within_the_budget(tmp_path):
    """The budget is what a live conversation can keep: as many display-size pictures as it may hold,
    even when the visual-token limit is small."""
    limits = Limits(max_images=4, max_visual_tokens=64)
    pictures = [Attachment(path="", image=Image.new("RGB", (1024, 1024), (i, 0, 0)), name=f"{i}.png", original_wh=(4096, 4096)) for i in range(4)]
    path = tmp_path / "saved.json"
    path.write_text(dump_conversation(Conversation([Turn("all of them", pictures, answer="ok", status="done")])))
    loaded = read_conversation(str(path), limits).conversation
    assert [a.size_wh for a in loaded.images()] == [(4096, 4096)] * 4


def test_a_big_picture_is_kept_small_and_its_boxes_stay_in_its_own_pixels(tmp_path):
    """Kept at display size (the scripted model sees 28x28), drawn at that size, exported in the original's pixels."""
    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.views.export import detections_record
    from tests.fakes import ScriptedEngine
    from tests.helpers import shown

    photo = tmp_path / "wide.jpg"
    Image.new("RGB", (4000, 3000), "olive").save(photo, quality=90)
    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([["<|object_ref_start|>it<|object_ref_end|><|box_start|>(100,100),(600,700)<|box_end|>"]]))
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    *_, reply = handlers.chat({"text": "Where?", "files": [str(photo)]}, None)
    chatbot, conversation = shown(reply), reply.conversation
    picture = conversation.turns[0].attachments[0]
    assert picture.size_wh == (4000, 3000) and picture.image.size == (1024, 768)
    assert chatbot[0]["content"].startswith("**Picture 1** · wide.jpg · 4000×3000 → 28×28 px")
    drawn = next(c["path"] for c in parts(chatbot) if isinstance(c, dict) and "annotated" in c["alt_text"])
    assert Image.open(drawn).size == (1024, 768)
    record = detections_record(conversation, "qwen2-vl")
    assert record["images"][0]["width"] == 4000 and record["detections"][0]["bbox_xyxy"] == [400.0, 300.0, 2400.0, 2100.0]
    handlers.end_session()


def frames_video(frames: int, size: tuple[int, int], factor: int = 32) -> dict:
    frame = png_b64(Image.new("RGB", size, "gray"), optimize=True)
    return {"name": "v.mp4", "kind": "video", "frames_png_base64": [frame] * frames, "timestamps": [i / 2 for i in range(frames)],
            "source_wh": list(size), "source_fps": 30.0, "duration": frames / 2, "sample_fps": 2.0, "factor": factor}


def test_loaded_videos_together_are_held_to_a_requests_visual_tokens_before_decoding(tmp_path, no_decoding):
    """A live conversation's videos cost one request at most --max-visual-tokens (every request sends them
    all); before, a 408 kB file of ten such videos held 62 megapixels of frames (+371 MB here)."""
    video = frames_video(14, (768, 576))  # 3,024 visual tokens: within a video's own budget
    path = conversation_file(tmp_path, [video] * 6)  # 18,144 tokens together
    assert path.stat().st_size < 300_000
    with pytest.raises(UploadError, match="its videos cost more than the 16,384 visual tokens a request may have"):
        read_conversation(str(path), Limits())


def test_a_loaded_videos_strip_is_a_small_preview(tmp_path):
    path = conversation_file(tmp_path, [frames_video(14, (768, 576))])
    loaded = session_file.load_conversation(str(path), Limits(), tmp_path / "images")
    video = loaded.turns[0].attachments[0]
    assert video.video.frame_wh == (768, 576) and len(video.video.frames) == 14  # what the model sees, whole
    assert Image.open(video.path).size == (8 * 341, 256)  # the strip shown: eight frames, 256 px high
