"""Decoding uploaded videos, with PyAV, into a bounded set of frames a Qwen VL processor takes as-is.

`sample_video` opens a video file with PyAV and cuts its duration into n equal slices, n being
duration × `VideoSettings.fps` rounded to an even count (Qwen's temporal patch is 2), at most
`max_frames`. From each slice it takes the frame on screen at the slice's middle (the last frame
starting at or before it; a frame repeats when the source has fewer frames than slices). Every
frame is resized to the one size `demo.media.video.frame_size` gives. PyAV's scaler resizes
each frame right after it is decoded, so only the sampled frames, already small, are kept: a
30-minute or an 8K video costs the budget plus the decoder's own few frames.

Long videos are read by seeking: when the keyframe before the next frame wanted lies ahead of
where the decoder is, it seeks there instead of decoding every frame in between (the container's
keyframe index says where keyframes are; without one, it seeks when the next frame wanted is at
least `SEEK_MIN_GAP_S` ahead). Otherwise it decodes forward.

What it reads: the stream's time base and start offset, its duration (the stream's, else the
container's, else the packets' timestamps), frame rate, keyframe index and display rotation.
What it does not: audio (ignored), non-square pixels (frames keep their stored shape), interlacing,
HDR tone mapping, a duration that says less than the file holds (the rest is never seen). Errors
are `UploadError`, one sentence naming the file; no PyAV exception escapes. Knows nothing of
Gradio; imports neither torch nor transformers.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

from demo.media.pictures import UploadError
from demo.media.video import DEFAULT_SETTINGS, SampledVideo, VideoSettings, frame_count, frame_size

MAX_SOURCE_PIXELS = 8192 * 8192  # a frame larger than this is refused; 8K UHD (7680×4320) is decoded
MAX_ASPECT_RATIO = 200  # Qwen's smart_resize refuses longer, thinner frames
SEEK_MIN_GAP_S = 2.0  # with no keyframe index: seek when the next frame wanted is this far ahead...
SEEK_MIN_GAP_FRAMES = 16  # ...and at least this many source frames ahead
_EPS = 1e-6
_QUARTER_TURNS = {
    90: Image.Transpose.ROTATE_90,
    -90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    -180: Image.Transpose.ROTATE_180,
}


def sample_video(path: str, settings: VideoSettings = DEFAULT_SETTINGS) -> SampledVideo:
    """Decode `path` into `settings.fps` frames per second, resized within the settings' budget.

    Raises UploadError for an empty, corrupt, truncated or audio-only file, a still image, an
    unknown codec, or frames too large or too thin.
    """
    name = Path(path).name
    try:
        if Path(path).stat().st_size == 0:
            raise UploadError(f"{name} is an empty file.")
        return _sample(path, name, settings)
    except UploadError:
        raise
    except av.error.DecoderNotFoundError:
        raise UploadError(f"{name} uses a video codec this app cannot decode.") from None
    except MemoryError:
        raise UploadError(f"{name} needs more memory to decode than this machine has free.") from None
    except (av.FFmpegError, OSError, EOFError, ValueError, RuntimeError) as e:
        raise UploadError(
            f"{name} could not be read as a video (it may be corrupt or truncated): {_reason(e)}."
        ) from None


# -- reading --------------------------------------------------------------------------------------


def _sample(path: str, name: str, settings: VideoSettings, video_duration: float | None = None) -> SampledVideo:
    with av.open(path, metadata_errors="ignore") as container:
        stream = _video_stream(container, name)
        if stream.codec_context.width and stream.codec_context.height:  # before decoding anything huge
            _check_size(name, (stream.codec_context.width, stream.codec_context.height))
        stream.thread_type = "AUTO"
        tb = stream.time_base
        start_pts = stream.start_time if stream.start_time is not None else 0
        decoder = _Decoder(container, stream, start_pts)
        first = decoder.first()
        if first is None:
            raise UploadError(f"{name} has no frame that could be decoded (it may be truncated or corrupt).")
        rotation = first.rotation if first.rotation in _QUARTER_TURNS else 0
        source_wh = (first.height, first.width) if rotation in (90, -90) else (first.width, first.height)
        _check_size(name, source_wh)

        duration = video_duration or _duration(container, stream, tb)
        source_frames = stream.frames or None
        keyframes = _keyframes(stream, start_pts, tb)
        if duration is None:  # no duration anywhere: read every packet's timestamp (no decoding)
            scan = _scan_packets(path, stream.index)
            duration, source_frames, keyframes = scan.video_end, scan.video_packets, scan.keyframes
        source_fps = float(stream.average_rate or stream.guessed_rate or 0) or (
            source_frames / duration if source_frames and duration else 0.0
        )
        decoder.fps, decoder.keyframes = source_fps, keyframes

        n = frame_count(duration, source_frames, settings)
        w, h = frame_size(source_wh, n, settings)
        size = (h, w) if rotation in (90, -90) else (w, h)  # as stored, before turning
        targets = [(k + 0.5) * duration / n for k in range(n)]
        chosen: list[tuple[float, Image.Image]] = []
        for target in targets:
            frame, t = decoder.frame_at(target)
            if chosen and chosen[-1][0] == t:
                chosen.append(chosen[-1])  # the source has fewer frames than asked for: repeat
                continue
            image = frame.to_image(width=size[0], height=size[1], interpolation="BICUBIC")
            chosen.append((t, image.transpose(_QUARTER_TURNS[rotation]) if rotation else image))

        last_t = chosen[-1][0]
        slack = max(1.0, 0.1 * duration, 2 / source_fps if source_fps else 0.0)
        if decoder.eof and targets[-1] > last_t + slack:
            # The frames stop early. Shorter video than the container says (other streams last
            # longer): sample again over the video's own span. Else the file is cut or damaged.
            scan = _scan_packets(path, stream.index)
            if video_duration is None and scan.video_end < duration - slack and scan.any_end >= duration - slack:
                return _sample(path, name, settings, video_duration=max(scan.video_end, _EPS))
            raise UploadError(
                f"{name} could only be decoded up to {last_t:.1f} s of the {duration:.1f} s it declares, "
                "so it is probably truncated or corrupt."
            )
    return SampledVideo(
        frames=tuple(image for _, image in chosen),
        timestamps=tuple(t for t, _ in chosen),
        frame_wh=(w, h),
        source_wh=source_wh,
        source_fps=source_fps,
        duration=duration,
        sample_fps=n / duration if duration > 0 else settings.fps,
        factor=settings.factor,
        decoded_frames=decoder.decoded,
        seeks=decoder.seeks,
    )


def _video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    fmt = container.format.name
    if fmt.endswith("_pipe") or fmt == "image2":  # a still image under a video's extension
        kind = fmt.removesuffix("_pipe").upper() if fmt != "image2" else "still"
        raise UploadError(f"{name} is a {kind} image, not a video: send it as a picture instead.")
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        only = " (only sound)" if container.streams.audio else ""
        raise UploadError(f"{name} has no video track{only}.")
    stream = streams[0]
    if stream.codec_context is None:
        raise UploadError(f"{name} uses a video codec this app cannot decode.")
    return stream


def _check_size(name: str, source_wh: tuple[int, int]) -> None:
    w, h = source_wh
    if w < 1 or h < 1:
        raise UploadError(f"{name} has frames with no size (it may be corrupt).")
    if w * h > MAX_SOURCE_PIXELS:
        raise UploadError(f"{name} is {w}×{h} pixels per frame, more than the {MAX_SOURCE_PIXELS:,} this app accepts.")
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        raise UploadError(
            f"{name} is {w}×{h} pixels, too long and thin for the model (more than {MAX_ASPECT_RATIO}:1)."
        )


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream, tb) -> float | None:
    """The video stream's own duration, else the container's (which may include other streams)."""
    if stream.duration and stream.duration > 0:
        return float(stream.duration * tb)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _keyframes(stream: av.video.stream.VideoStream, start_pts: int, tb) -> list[float] | None:
    """Keyframe times from the demuxer's index, when it has one worth trusting.

    mp4/mov list every sample (key or not); Matroska lists cue points, usually every keyframe.
    An index holding a single keyframe and nothing else says nothing: None.
    """
    keys, others = [], 0
    for entry in stream.index_entries:
        if entry.is_keyframe:
            keys.append(float((entry.timestamp - start_pts) * tb))
        else:
            others += 1
    return sorted(keys) if keys and (len(keys) >= 2 or others) else None


@dataclass(frozen=True)
class _Scan:
    video_end: float  # seconds from the video stream's start to the end of its last packet
    video_packets: int
    keyframes: list[float] | None
    any_end: float  # the same, over every stream's packets


def _scan_packets(path: str, index: int) -> _Scan:
    """What the packets say, read without decoding: a pass over the file's bytes."""
    with av.open(path, metadata_errors="ignore") as container:
        video = container.streams[index]
        origin = float((video.start_time or 0) * video.time_base)
        video_end = any_end = 0.0
        count, keys, stamped = 0, [], False
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None:
                count += packet.stream.index == index and packet.size > 0
                continue
            s = packet.stream
            t = float(packet.pts * s.time_base) - origin
            end = t + float((packet.duration or 0) * s.time_base)
            any_end = max(any_end, end)
            if s.index == index:
                count, stamped, video_end = count + 1, True, max(video_end, end)
                if packet.is_keyframe:
                    keys.append(t)
        if not stamped:  # no timestamps at all: count frames
            video_end = count / float(video.average_rate or video.guessed_rate or 25)
            any_end = max(any_end, video_end)
    return _Scan(video_end, count, sorted(keys) if len(keys) >= 2 else None, any_end)


class _Decoder:
    """Finds the frame on screen at each of an increasing series of times: the last frame that
    starts at or before it. Decodes forward, or seeks ahead when that is cheaper. Holds at most
    two decoded frames: that one (`cur`) and the one after it (`ahead`)."""

    MAX_DAMAGED_PACKETS = 10_000  # a guard against looping on a stream that is damaged throughout

    def __init__(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream, start_pts: int):
        self.container, self.stream, self.start_pts = container, stream, start_pts
        self.frames: Iterator[av.VideoFrame] = container.decode(stream)
        self.cur: tuple[av.VideoFrame, float] | None = None
        self.ahead: tuple[av.VideoFrame, float] | None = None
        self.fps = 0.0
        self.keyframes: list[float] | None = None
        self.decoded = self.seeks = self.damaged = 0
        self.eof = False
        self.can_seek = True

    def _position(self) -> float:
        latest = self.ahead or self.cur
        return latest[1] if latest else -math.inf

    def _next(self) -> tuple[av.VideoFrame, float] | None:
        while True:
            try:
                frame = next(self.frames)
            except (StopIteration, av.error.EOFError):
                return None
            except av.error.InvalidDataError:
                # A damaged packet ends the generator; demuxing goes on after it with a new one.
                self.damaged += 1
                if self.damaged > self.MAX_DAMAGED_PACKETS:
                    return None
                self.frames = self.container.decode(self.stream)
                continue
            self.decoded += 1
            pts = frame.pts if frame.pts is not None else frame.dts
            if pts is None:  # no timestamps at all: count frames (right only when decoding from the start)
                return frame, max(0.0, self._position() + 1 / (self.fps or 25))
            return frame, float((pts - self.start_pts) * self.stream.time_base)

    def first(self) -> av.VideoFrame | None:
        self.ahead = self._next()
        return self.ahead[0] if self.ahead else None

    def _should_seek(self, target: float) -> bool:
        if not self.can_seek or self.fps <= 0:
            return False
        position = self._position()
        if self.keyframes:  # seek when the keyframe before the target is ahead of the decoder
            key = self.keyframes[max(bisect.bisect_right(self.keyframes, target + _EPS) - 1, 0)]
            return (key - position) * self.fps >= 4
        gap = target - position
        return gap >= SEEK_MIN_GAP_S and gap * self.fps >= SEEK_MIN_GAP_FRAMES

    def _seek(self, target: float) -> None:
        """Seek to the keyframe at or before target; further back if the demuxer overshot."""
        back = 0.0
        for _ in range(3):
            offset = max(0.0, target - back)
            try:
                self.container.seek(self.start_pts + int(offset / self.stream.time_base), stream=self.stream)
            except av.FFmpegError:
                self.can_seek = False  # decode forward from wherever the demuxer is
                self.frames = self.container.decode(self.stream)
                return
            self.seeks += 1
            self.frames = self.container.decode(self.stream)
            got = self._next()
            if got is None:  # nothing there (a truncated file): keep the last frame found
                self.eof = True
                return
            self.cur, self.ahead = None, got
            if offset == 0.0 or got[1] - target <= 1.5 / self.fps:
                return
            back = 2 * back + 1.0 + (got[1] - target)

    def frame_at(self, target: float) -> tuple[av.VideoFrame, float]:
        """The frame on screen at `target` (s): the first frame if it starts later, the last at the end."""
        if self.ahead is not None and self.ahead[1] <= target + _EPS:
            self.cur, self.ahead = self.ahead, None
        if self.ahead is None and not self.eof:
            if self._should_seek(target):
                self._seek(target)
            while not self.eof and (self.ahead is None or self.ahead[1] <= target + _EPS):
                if self.ahead is not None:
                    self.cur = self.ahead
                self.ahead = self._next()
                self.eof = self.ahead is None
        return self.cur or self.ahead


def _reason(error: BaseException) -> str:
    text = (getattr(error, "strerror", None) or str(error)).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__
