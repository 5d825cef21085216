"""demo/media/video.py and video_decode.py: sampling frames from uploaded videos, on synthetic videos written with PyAV.

Every frame written carries its index as a 4×4 grid of black/white cells (bit i in cell i), so a
sampled frame says which source frame it is, whatever size it was resized to.
"""

from __future__ import annotations

import io
import math
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from demo.media import video_decode
from demo.media.pictures import UploadError
from demo.media.video import (
    VIDEO_EXTENSIONS,
    SampledVideo,
    VideoSettings,
    frame_count,
    frame_size,
    is_video_file,
    processor_video_kwargs,
)
from demo.media.video_decode import sample_video

DEFAULT = VideoSettings()


# -- writing test videos ----------------------------------------------------------------------------


def pattern(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose 4×4 cells are white where `index` has a 1 bit (bit 0 top left, row by row)."""
    array = np.zeros((height, width, 3), np.uint8)
    for bit in range(16):
        if index >> bit & 1:
            r, c = divmod(bit, 4)
            array[r * height // 4 : (r + 1) * height // 4, c * width // 4 : (c + 1) * width // 4] = 255
    return array


def read_index(image: Image.Image) -> int:
    gray = np.asarray(image.convert("L"))
    h, w = gray.shape
    return sum(1 << bit for bit in range(16) if gray[int((bit // 4 + 0.5) * h / 4), int((bit % 4 + 0.5) * w / 4)] > 127)


class _Unseekable(io.RawIOBase):
    """A write-only stream that cannot seek: the muxer then leaves out duration and cues."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)


def write_video(
    path: Path,
    *,
    size: tuple[int, int] = (64, 48),
    fps: int = 10,
    frames: int = 20,
    codec: str = "libx264",
    gop: int | None = None,
    pts_ms: list[int] | None = None,
    rotation: int = 0,
    audio_seconds: float = 0.0,
    unseekable: bool = False,
) -> Path:
    """Write frames 0..frames-1 (each showing its index) and return the path."""
    sink = _Unseekable() if unseekable else None
    fmt = "matroska" if unseekable else None
    with av.open(sink if sink is not None else str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "12", "sc_threshold": "0"}
        if gop:
            stream.codec_context.gop_size = gop
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 2_000_000
        if rotation:
            stream.set_display_rotation(rotation)
        if pts_ms:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        audio = out.add_stream("aac", rate=16000) if audio_seconds else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(i, *size), format="rgb24")
            if pts_ms:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if audio is not None:
            _write_silence(out, audio, audio_seconds)
    if sink is not None:
        path.write_bytes(sink.data)
    return path


def _write_silence(out: av.container.OutputContainer, audio: av.audio.stream.AudioStream, seconds: float) -> None:
    for i in range(int(seconds * 16000 / 1024)):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, i * 1024
        out.mux(audio.encode(frame))
    out.mux(audio.encode())


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        _write_silence(out, out.add_stream("aac", rate=16000), seconds)
    return path


def expected_indices(video: SampledVideo, fps: float, frames: int) -> list[int]:
    """The source frame on screen at the middle of each of n equal slices of the duration."""
    n = len(video.frames)
    return [min(frames - 1, math.floor((k + 0.5) * video.duration / n * fps + 1e-6)) for k in range(n)]


def check_invariants(video: SampledVideo, settings: VideoSettings) -> None:
    n, (w, h) = len(video.frames), video.frame_wh
    assert n % 2 == 0 and 2 <= n <= settings.max_frames
    assert w % settings.factor == 0 and h % settings.factor == 0
    assert all(f.size == (w, h) and f.mode == "RGB" for f in video.frames)
    assert n * w * h <= settings.total_pixels and w * h <= settings.max_pixels
    assert len(video.timestamps) == n
    assert all(a <= b for a, b in zip(video.timestamps, video.timestamps[1:], strict=False))
    assert all(0 <= t <= video.duration for t in video.timestamps)
    assert video.visual_tokens == n // 2 * (w // settings.factor) * (h // settings.factor)


# -- sampling: frame counts, sizes, times, content --------------------------------------------------

CASES = [
    # id, file name, writer kwargs, settings, expected frame count
    # 5 s at 10 fps, default 2 fps: 10 frames.
    ("mp4-h264-10fps", "a.mp4", dict(fps=10, frames=50), DEFAULT, 10),
    # WebM/VP8 at 25 fps, 3 s: 6 frames; Matroska gives no stream duration, only the container's.
    ("webm-vp8-25fps", "b.webm", dict(size=(96, 64), fps=25, frames=75, codec="libvpx"), DEFAULT, 6),
    # MPEG-4 Part 2 at 30 fps, 4 s in AVI: 8 frames.
    ("avi-mpeg4-30fps", "c.avi", dict(size=(160, 96), fps=30, frames=120, codec="mpeg4"), DEFAULT, 8),
    # 60 fps, 2 s in Matroska: 4 frames.
    ("mkv-h264-60fps", "d.mkv", dict(fps=60, frames=120), DEFAULT, 4),
    # QuickTime, 2.5 s at 4 fps asked: 10 frames (the count is rounded to even).
    ("mov-4fps-asked", "e.mov", dict(fps=24, frames=60), VideoSettings(fps=4.0), 10),
    # 20 s at 0.5 fps asked: 10 frames.
    ("slow-rate", "f.mp4", dict(fps=10, frames=200), VideoSettings(fps=0.5), 10),
    # max_frames caps the count: 20 s at 2 fps would be 40.
    ("max-frames-cap", "g.mp4", dict(fps=10, frames=200), VideoSettings(max_frames=8), 8),
    # A budget of 6 frames at min_pixels drops frames before shrinking them: 40 -> 6.
    ("budget-drops-frames", "h.mp4", dict(fps=10, frames=200), VideoSettings(total_pixels=6 * 128 * 28 * 28), 6),
    # 0.3 s (3 frames): rounds to 0, so 2 frames.
    ("very-short", "i.mp4", dict(fps=10, frames=3), DEFAULT, 2),
    # 3 frames at 2 fps, 4 fps asked: 6 rounded, capped to 4 (3 frames rounded up to even); one repeats.
    ("fewer-frames-than-asked", "j.mp4", dict(fps=2, frames=3), VideoSettings(fps=4.0), 4),
    # 720p, 1 s at 24 fps: 2 frames, each within max_pixels (768 tokens' worth).
    ("720p", "k.mp4", dict(size=(1280, 720), fps=24, frames=24), DEFAULT, 2),
    # Qwen3-VL's factor 32.
    (
        "factor-32",
        "l.mp4",
        dict(fps=10, frames=40),
        VideoSettings(factor=32, min_pixels=128 * 32 * 32, max_pixels=768 * 32 * 32, total_pixels=64 * 128 * 32 * 32),
        8,
    ),
    # A video with a sound track: the sound is ignored.
    ("with-audio", "m.mp4", dict(fps=10, frames=30, audio_seconds=3.0), DEFAULT, 6),
]


@pytest.mark.parametrize(("name", "writer", "settings", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_sampling_follows_the_settings_and_the_source_times(tmp_path, name, writer, settings, expected):
    path = write_video(tmp_path / name, **writer)
    video = sample_video(str(path), settings)
    check_invariants(video, settings)
    assert len(video.frames) == expected
    fps, frames = writer.get("fps", 10), writer.get("frames", 20)
    assert video.source_wh == writer.get("size", (64, 48))
    assert video.source_fps == pytest.approx(fps)
    assert video.duration == pytest.approx(frames / fps, abs=0.05)
    assert video.sample_fps == pytest.approx(expected / video.duration)
    indices = expected_indices(video, fps, frames)
    assert [read_index(f) for f in video.frames] == indices
    assert video.timestamps == pytest.approx([i / fps for i in indices], abs=1e-3)


def test_a_one_frame_video_gives_two_identical_frames(tmp_path):
    video = sample_video(str(write_video(tmp_path / "one.mp4", frames=1)))
    check_invariants(video, DEFAULT)
    assert len(video.frames) == 2 and video.timestamps == (0.0, 0.0)
    assert [read_index(f) for f in video.frames] == [0, 0]


def test_a_long_video_is_sampled_by_seeking(tmp_path):
    # 10 minutes at 10 fps, 64×48, a keyframe every 2 s: 6,000 frames, 64 of them wanted.
    path = write_video(tmp_path / "long.mp4", fps=10, frames=6000, gop=20)
    started = time.perf_counter()
    video = sample_video(str(path))
    elapsed = time.perf_counter() - started
    check_invariants(video, DEFAULT)
    assert len(video.frames) == 64 and video.duration == pytest.approx(600)
    assert video.seeks >= 60  # one per frame wanted, but when the next keyframe is behind the decoder
    assert video.decoded_frames <= 64 * 21  # at most one keyframe interval per frame, not 6,000
    assert elapsed < 5
    assert [read_index(f) for f in video.frames] == expected_indices(video, 10, 6000)
    assert "64 frames, one every 9.4 s" in video.describe()


def test_sampling_near_the_frame_rate_decodes_forward(tmp_path):
    # 4 fps out of 10: seeking would not pay.
    path = write_video(tmp_path / "dense.mp4", fps=10, frames=100, gop=20)
    video = sample_video(str(path), VideoSettings(fps=4.0))
    assert video.seeks == 0 and video.decoded_frames <= 100
    assert [read_index(f) for f in video.frames] == expected_indices(video, 10, 100)


def test_unknown_duration_is_read_from_the_packets(tmp_path):
    # Matroska written to a pipe: no duration in the container or the stream, no cues to seek by.
    path = write_video(tmp_path / "live.mkv", fps=10, frames=1200, gop=20, unseekable=True)
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    video = sample_video(str(path))
    check_invariants(video, DEFAULT)
    assert len(video.frames) == 64 and video.duration == pytest.approx(120, abs=0.2)
    assert video.seeks > 0 and video.decoded_frames < 1200
    assert [read_index(f) for f in video.frames] == expected_indices(video, 10, 1200)


def test_variable_frame_rate_takes_the_frame_on_screen(tmp_path):
    steps = [40, 20, 100, 250, 40, 500, 20, 60] * 5
    pts = [0, *np.cumsum(steps).tolist()][:40]
    path = write_video(tmp_path / "vfr.mp4", frames=40, pts_ms=pts, fps=25)
    video = sample_video(str(path))
    check_invariants(video, DEFAULT)
    n = len(video.frames)
    for k, (frame, t) in enumerate(zip(video.frames, video.timestamps, strict=True)):
        target = (k + 0.5) * video.duration / n
        on_screen = max(i for i, p in enumerate(pts) if p / 1000 <= target + 1e-6)
        assert read_index(frame) == on_screen and t == pytest.approx(pts[on_screen] / 1000)


def test_a_shorter_video_track_than_the_container_says(tmp_path):
    # Matroska: the container lasts as long as the 4 s sound track, the pictures stop at 2 s.
    path = write_video(tmp_path / "short-video.mkv", fps=10, frames=20, audio_seconds=4.0)
    with av.open(str(path)) as container:
        assert container.duration / av.time_base > 3.5 and container.streams.video[0].duration is None
    video = sample_video(str(path))
    check_invariants(video, DEFAULT)
    assert video.duration == pytest.approx(2.0, abs=0.05) and len(video.frames) == 4
    assert [read_index(f) for f in video.frames] == expected_indices(video, 10, 20)


def test_a_damaged_stretch_is_skipped(tmp_path):
    # 60 s at 10 fps with noise over 2 kB in the middle: the decoder skips the damaged packets.
    # The frames wanted within the damaged stretch (about 6 s, keyframes included) show what the
    # decoder conceals it with; the others are exact.
    path = write_video(tmp_path / "scratched.mp4", fps=10, frames=600, gop=20)
    size = path.stat().st_size
    _damage(path, size // 2, size // 2 + 2000)
    video = sample_video(str(path))
    check_invariants(video, DEFAULT)
    assert len(video.frames) == 64
    right = sum(read_index(f) == i for f, i in zip(video.frames, expected_indices(video, 10, 600), strict=True))
    assert right >= 48


def test_rotated_video_is_turned_upright(tmp_path):
    # The display matrix says: turn 90° clockwise. Cell 0 (top left as stored) ends top right.
    path = write_video(tmp_path / "portrait.mp4", size=(64, 48), frames=10, rotation=-90)
    video = sample_video(str(path))
    assert video.source_wh == (48, 64)
    w, h = video.frame_wh
    assert h > w
    gray = np.asarray(video.frames[1].convert("L"))  # frame index 3: cells 0 and 1 white
    assert gray[h // 8, w - w // 8] > 127 and gray[h // 8, w // 8] < 128


def test_a_huge_video_is_decoded_small(tmp_path):
    # One 8K frame: decoded straight to the frame size by the decoder's scaler.
    path = tmp_path / "8k.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 7680, 4320, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        frame = av.VideoFrame(7680, 4320, "yuv420p")
        for plane, value in zip(frame.planes, (200, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    video = sample_video(str(path))
    check_invariants(video, DEFAULT)
    assert video.source_wh == (7680, 4320) and len(video.frames) == 2
    assert video.frame_wh[0] * video.frame_wh[1] <= DEFAULT.max_pixels


# -- bad inputs -------------------------------------------------------------------------------------


def _png_renamed(tmp_path: Path) -> Path:
    path = tmp_path / "photo.mp4"
    Image.new("RGB", (40, 30), "red").save(path, format="PNG")
    return path


def _jpeg_renamed(tmp_path: Path) -> Path:
    path = tmp_path / "photo.webm"
    Image.new("RGB", (40, 30), "red").save(path, format="JPEG")
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _cut(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _damage(path: Path, start: int, end: int) -> Path:
    """Overwrite bytes [start, end) with seeded noise."""
    data = bytearray(path.read_bytes())
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def _damaged_throughout(tmp_path: Path) -> Path:
    path = write_video(tmp_path / "noise-inside.mp4", frames=50)
    data = path.read_bytes()
    return _damage(path, data.index(b"mdat") + 4, data.index(b"moov") - 4)  # every frame's bytes, not the index


def _unknown_codec(tmp_path: Path) -> Path:
    data = write_video(tmp_path / "source.mp4").read_bytes()
    path = tmp_path / "odd-codec.mp4"
    path.write_bytes(data.replace(b"avc1", b"zzz1"))  # the sample entry's fourcc: no decoder knows it
    return path


BAD = [
    # id, how to make the file, what the sentence says
    # A zero-byte upload.
    ("empty", lambda d: _bytes(d / "empty.mp4", b""), "is an empty file"),
    # Bytes that are no container at all.
    ("garbage", lambda d: _bytes(d / "noise.mp4", bytes(range(256)) * 40), "could not be read as a video"),
    # MP4 cut in half: its index (moov) is at the end, so nothing can be opened.
    (
        "truncated-mp4",
        lambda d: _cut(write_video(d / "whole.mp4", frames=50), d / "half.mp4"),
        "could not be read as a video",
    ),
    # WebM cut in half: opens, and says it lasts 4 s, but the frames stop at about 2 s.
    (
        "truncated-webm",
        lambda d: _cut(write_video(d / "whole.webm", fps=25, frames=100, codec="libvpx"), d / "half.webm"),
        "probably truncated",
    ),
    # Sound only, under a video's extension.
    ("audio-only", lambda d: write_audio_only(d / "song.mp4"), "has no video track (only sound)"),
    # A PNG renamed .mp4: FFmpeg would open it as a one-frame video; refused, it is a picture.
    ("png-as-mp4", _png_renamed, "is a PNG image, not a video"),
    # A JPEG renamed .webm.
    ("jpeg-as-webm", _jpeg_renamed, "is a JPEG image, not a video"),
    # An intact container whose every frame is noise.
    ("damaged-throughout", _damaged_throughout, "has no frame that could be decoded"),
    # A codec FFmpeg has no decoder for.
    ("unknown-codec", _unknown_codec, "uses a video codec this app cannot decode"),
    # 2000×8 (FFV1 takes any size): beyond Qwen's 200:1.
    ("too-thin", lambda d: write_video(d / "strip.mkv", size=(2000, 8), frames=2, codec="ffv1"), "too long and thin"),
    # A path that does not exist.
    ("missing", lambda d: d / "nowhere.mp4", "could not be read as a video"),
]


@pytest.mark.parametrize(("make", "says"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_inputs_raise_one_sentence(tmp_path, make, says):
    path = make(tmp_path)
    with pytest.raises(UploadError) as caught:
        sample_video(str(path))
    message = str(caught.value)
    assert message.startswith(path.name) and says in message
    assert message.endswith(".") and ". " not in message and "\n" not in message


def test_an_absurd_resolution_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(video_decode, "MAX_SOURCE_PIXELS", 64 * 48 - 1)
    path = write_video(tmp_path / "big.mp4")
    with pytest.raises(
        UploadError, match=r"^big\.mp4 is 64×48 pixels per frame, more than the 3,071 this app accepts\.$"
    ):
        sample_video(str(path))


def test_no_av_exception_escapes(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(av.VideoFrame, "to_image", broken)
    with pytest.raises(UploadError, match="could not be read as a video"):
        sample_video(str(write_video(tmp_path / "ok.mp4")))


# -- settings, sizes, names -------------------------------------------------------------------------

BAD_SETTINGS = [
    # fps outside 0.25..4
    dict(fps=0.2),
    dict(fps=5.0),
    # max_frames odd, or below 2
    dict(max_frames=7),
    dict(max_frames=0),
    # min_pixels below one factor × factor tile
    dict(min_pixels=100),
    # max below min
    dict(max_pixels=1000, min_pixels=2000),
    # a budget that does not hold two frames of min_pixels
    dict(total_pixels=128 * 28 * 28),
]


@pytest.mark.parametrize("kwargs", BAD_SETTINGS)
def test_settings_are_checked(kwargs):
    with pytest.raises(ValueError):
        VideoSettings(**kwargs)


@pytest.mark.parametrize(
    "source_wh", [(64, 48), (1280, 720), (720, 1280), (1920, 1080), (7680, 4320), (3000, 20), (28, 28)]
)
@pytest.mark.parametrize("n_frames", [2, 10, 64])
def test_frame_size_keeps_the_budget_and_the_shape(source_wh, n_frames):
    w, h = frame_size(source_wh, n_frames, DEFAULT)
    assert w % 28 == 0 and h % 28 == 0
    assert n_frames * w * h <= DEFAULT.total_pixels and w * h <= DEFAULT.max_pixels
    if max(source_wh) / min(source_wh) < 20:  # thin frames cannot keep their ratio in multiples of 28
        assert w / h == pytest.approx(source_wh[0] / source_wh[1], rel=0.2)


def test_frame_count_rules():
    assert frame_count(10.0, 100, DEFAULT) == 20  # 2 fps
    assert frame_count(10.2, None, DEFAULT) == 20  # rounded to even
    assert frame_count(3600.0, None, DEFAULT) == 64  # max_frames
    assert frame_count(0.0, 1, DEFAULT) == 2  # one frame still makes a pair
    assert frame_count(10.0, 5, VideoSettings(fps=4)) == 6  # no more than the source has, rounded up to even


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("clip.mp4", True),
        ("CLIP.MOV", True),
        ("a.webm", True),
        ("a.mkv", True),
        ("a.avi", True),
        ("a.png", False),
        ("mp4", False),
    ],
)
def test_is_video_file(path, expected):
    assert is_video_file(path) is expected
    assert set(VIDEO_EXTENSIONS) == {".mp4", ".webm", ".mov", ".mkv", ".avi"}


def test_describe(tmp_path):
    video = sample_video(str(write_video(tmp_path / "d.mp4", fps=10, frames=120)))
    assert video.describe() == "24 frames at 2.0 fps, 392×280 px each, 1,680 visual tokens"


# -- the processor takes the frames as they are -----------------------------------------------------


def test_processor_takes_the_frames_as_sampled(tmp_path, engine):
    processor, model = engine.processor, engine.model
    first = sample_video(str(write_video(tmp_path / "one.mp4", size=(96, 64), fps=10, frames=30)))
    second = sample_video(str(write_video(tmp_path / "two.webm", size=(64, 96), fps=25, frames=50, codec="libvpx")))
    picture = Image.new("RGB", (100, 80), "white")
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": first},
                {"type": "image", "image": picture},
                {"type": "video", "video": second},
                {"type": "text", "text": "What happens?"},
            ],
        }
    ]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, add_vision_id=True)
    assert "Video 1: <|vision_start|><|video_pad|>" in prompt and "Video 2: " in prompt and "Picture 1: " in prompt
    # `size` for the images, as the engine passes it: it must not touch the videos.
    inputs = processor(
        text=[prompt],
        images=[picture],
        size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16},
        return_tensors="pt",
        **processor_video_kwargs(first, second),
    )
    pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    grids = inputs["video_grid_thw"].tolist()
    for video, (t, h, w) in zip((first, second), grids, strict=True):
        assert (t, h * 14, w * 14) == (len(video.frames) // 2, video.frame_wh[1], video.frame_wh[0])
    assert int((inputs["input_ids"] == pad).sum()) == sum(t * h * w // 4 for t, h, w in grids)
    assert sum(t * h * w // 4 for t, h, w in grids) == first.visual_tokens + second.visual_tokens
    # Qwen2-VL: each video's pads stay in the template's one pair of markers, right after its label
    # (Qwen3-VL's per-pair layout: tests/test_video_generations.py).
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert f"Video 1: <|vision_start|>{'<|video_pad|>' * first.visual_tokens}<|vision_end|>Picture 1: " in text
    assert f"Video 2: <|vision_start|>{'<|video_pad|>' * second.visual_tokens}<|vision_end|>What happens?" in text
    # The model takes them too.
    import torch

    with torch.inference_mode():
        logits = model(**inputs).logits
    assert logits.shape[1] == inputs["input_ids"].shape[1]


def test_processor_kwargs_without_videos():
    assert processor_video_kwargs() == {}


def test_qwen2_5_vl_gets_the_time_step_from_the_metadata(tmp_path, engine):
    # Qwen2.5-VL's processor (same tokens and video processor as the tiny Qwen2-VL checkpoint):
    # its seconds per temporal grid come from the metadata, 2 / 24 s when there is none.
    from transformers import Qwen2_5_VLProcessor

    base = engine.processor
    processor = Qwen2_5_VLProcessor(
        image_processor=base.image_processor, video_processor=base.video_processor, tokenizer=base.tokenizer
    )
    video = sample_video(str(write_video(tmp_path / "v.mp4", fps=10, frames=100)), VideoSettings(fps=1.0))
    inputs = processor(text=["<|vision_start|><|video_pad|><|vision_end|>"], **processor_video_kwargs(video))
    assert inputs["second_per_grid_ts"] == pytest.approx([2 / video.sample_fps], rel=0.01)
