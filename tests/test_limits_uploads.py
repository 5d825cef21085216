"""Upload limits that fit the media: pictures and videos have limits of their own, the page says
them, a 30-minute 720p video is accepted and answered, and uploads go to disk as they arrive."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from gradio_client import handle_file

import app
from demo.record.limits import MB, LimitError, Limits
from tests.launched import launched_app
from tests.test_browser import ask, bot_messages, page, scroll_chat_to_top  # noqa: F401, F811 - the browser tests' page fixture


def long_video(path: Path, minutes: int = 30, size: tuple[int, int] = (1280, 720), distinct: int = 12) -> Path:
    """A `minutes`-long H.264 MP4 at one frame a second, in about a second: a dozen keyframes of
    blocky noise are encoded once, then their packets are repeated with new timestamps (~34 MB)."""
    width, height = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "32", "keyint": "1"}  # every frame a keyframe
        encoded = []
        for i in range(distinct):
            blocks = rng.integers(0, 256, (height // 40, width // 40, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(np.repeat(blocks, 40, 0), 40, 1), format="rgb24")
            frame.pts = i
            encoded += [bytes(p) for p in stream.encode(frame)]
        encoded += [bytes(p) for p in stream.encode()]
        for n in range(minutes * 60):
            packet = av.Packet(encoded[n % len(encoded)])
            packet.stream, packet.time_base, packet.pts, packet.dts, packet.is_keyframe = stream, Fraction(1, 1), n, n, True
            out.mux(packet)
    return path


def test_pictures_and_videos_have_their_own_limits():
    limits = Limits(max_image_mb=20, max_video_mb=1500)
    limits.check_files([30 * MB], ["clip.mp4"], [True])  # a video over the picture limit
    with pytest.raises(LimitError, match=r"photo.png is 30 MB, more than the 20 MB allowed for a picture\."):
        limits.check_files([30 * MB], ["photo.png"], [False])
    with pytest.raises(LimitError, match=r"more than the 1,500 MB allowed for a video\."):
        limits.check_files([1501 * MB], ["long.mp4"], [True])
    assert limits.max_upload_mb == 1500
    assert limits.describe_uploads() == "pictures up to 20 MB, videos up to 1,500 MB"


def test_the_default_video_limit_takes_30_minutes_of_720p_from_a_phone():
    # Apple's own figure for 720p at 30 fps: 40 MB a minute (README, "Upload limits").
    assert Limits().max_video_mb * MB >= 30 * 40 * 1_000_000


@pytest.mark.parametrize(
    "argv, env, image_mb, video_mb",
    [
        ([], {}, 20, 1500),
        (["--max-image-mb", "5", "--max-video-mb", "700"], {}, 5, 700),
        (["--max-file-mb", "50"], {}, 50, 50),  # the older flag sets both
        (["--max-file-mb", "50", "--max-video-mb", "900"], {}, 50, 900),  # a specific flag wins
        ([], {"QWEN_CHAT_MAX_VIDEO_MB": "333", "QWEN_CHAT_MAX_IMAGE_MB": "7"}, 7, 333),
    ],
)
def test_flags_and_variables_set_each_limit(monkeypatch, argv, env, image_mb, video_mb):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    limits = app.limits_from(app.parse_args(argv))
    assert (limits.max_image_mb, limits.max_video_mb) == (image_mb, video_mb)


def test_the_page_says_each_limit_before_a_person_hits_it():
    from demo.engines.slot import EngineSlot
    from demo.page.handlers import ChatHandlers
    from demo.page.ui import build_ui

    demo = build_ui(ChatHandlers(EngineSlot("x"), limits=Limits(max_image_mb=12, max_video_mb=900, max_system_prompt_chars=3000)))
    shown = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert "pictures up to 12 MB, videos up to 900 MB" in shown["upload-limits"].value
    prompts = [b for b in demo.blocks.values() if getattr(b, "label", "") and str(b.label).startswith("System prompt")]
    assert prompts[0].max_length == 3000 and "3,000 characters" in prompts[0].label


def test_a_30_minute_720p_video_is_accepted_and_answered(tmp_path):
    """Through the launched app with its default limits: a video larger than the old 20 MB limit."""
    clip = long_video(tmp_path / "recording.mp4")
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1280, 720) and container.duration / 1e6 == pytest.approx(1800, abs=1)
    assert clip.stat().st_size > 20 * MB
    client = launched_app().client()
    history, textbox = client.predict({"text": "What happens in Video 1?", "files": [handle_file(str(clip))]}, api_name="/chat")
    captions = [m["content"][0].get("text", "") for m in history if m["role"] == "user"]
    assert any(c.startswith("**Video 1** · recording.mp4 · 64 frames, one every 28.1 s") for c in captions), captions
    assert history[-1]["role"] == "assistant" and not history[-1]["content"][0]["text"].startswith("⚠")
    assert textbox == {"__type__": "update"}  # cleared by the answer's first update, then left alone
    # It was uploaded into the app's own temporary directory, and now lives in the session's folder.
    launched = launched_app()
    player = next(part["file"]["path"] for m in history for part in m["content"] if part.get("alt_text") == "Video 1")
    assert Path(player).name == "recording.mp4" and Path(player).parent.parent.parent in launched.session_folders()
    assert Path(player).is_relative_to(launched.temp) and Path(player).stat().st_size == clip.stat().st_size
    client.close()


def test_a_picture_over_its_limit_gets_one_sentence_and_changes_nothing(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (2600, 3000, 3), dtype=np.uint8)
    big = tmp_path / "huge.png"
    from PIL import Image

    Image.fromarray(noise).save(big, compress_level=0)
    assert big.stat().st_size > 20 * MB
    client = launched_app().client()
    before, _ = client.predict({"text": "Hello", "files": []}, api_name="/chat")
    after, _ = client.predict({"text": "And this?", "files": [handle_file(str(big))]}, api_name="/chat")
    notice = after[-1]["content"][0]["text"]
    assert notice.startswith("⚠ Not sent: huge.png is ") and notice.endswith("more than the 20 MB allowed for a picture.")
    assert after[:-1] == before  # the conversation as it was
    client.close()


def test_an_upload_goes_to_disk_as_it_arrives(tmp_path):
    """A 150 MB upload does not pass through the app's memory (Gradio's multipart parser writes each
    chunk to a file); it is then refused, as a video that cannot be read, in one sentence."""
    fake = tmp_path / "not-a-video.mp4"
    with open(fake, "wb") as f:
        f.truncate(150 * MB)  # zeros
    launched = launched_app()
    client = launched.client()
    baseline, peak, done = launched.rss(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], launched.rss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        history, _ = client.predict({"text": "Watch.", "files": [handle_file(str(fake))]}, api_name="/chat")
    finally:
        done.set()
        sampler.join()
    assert history[-1]["content"][0]["text"].startswith("⚠ Not sent: not-a-video.mp4 could not be read as a video")
    print(f"a 150 MB upload grew the app by {(peak[0] - baseline) / MB:.0f} MB at most")
    assert peak[0] - baseline < 60 * MB, f"the app grew by {(peak[0] - baseline) / MB:.0f} MB during a 150 MB upload"
    client.close()


@pytest.mark.browser
def test_in_the_browser_a_30_minute_720p_video_is_sent_and_answered(page, tmp_path, artifacts):  # noqa: F811
    """What a person does: reads the limits under the textbox, attaches the recording, sends it."""
    limits = page.locator("#upload-limits")
    assert "pictures up to 20 MB, videos up to 1,500 MB" in limits.inner_text()
    clip = long_video(tmp_path / "screen-recording.mp4")
    page.set_input_files("#message input[type=file]", [str(clip)])
    page.wait_for_timeout(1500)  # the upload
    ask(page, "What happens in Video 1?")
    chat = page.locator("#chatbot")
    assert "Video 1 · screen-recording.mp4 · 64 frames, one every 28.1 s" in chat.inner_text()
    assert chat.locator("video").count() == 1 and not bot_messages(page).last.inner_text().startswith("⚠")
    scroll_chat_to_top(page)
    page.screenshot(path=str(artifacts / "long-video.png"))
