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
least `SEEK_MIN_GAP_S` ahead: `demo.media.video_seek`). Otherwise it decodes forward.

What reading a video may cost is bounded (`demo.media.video_plan`): the frames and pixels decoded,
the packets read and the wall time, each refused past its limit with one sentence, and planned
before decoding when the container indexes its keyframes (a file that would need too much is
refused at once, or read from its keyframes when they are close enough). The decoder's memory
is reserved from the process's decoding budget first (`demo.media.budget`).

What it reads: the stream's time base and start offset, its duration (the stream's, else the
container's, else the packets' timestamps), frame rate, keyframe index and display rotation.
What it does not: audio (ignored), non-square pixels (frames keep their stored shape), interlacing,
HDR tone mapping, a duration that says less than the file holds (the rest is never seen). Errors
are `UploadError`, one sentence naming the file; no PyAV exception escapes. Knows nothing of
Gradio; imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

from demo.media import budget
from demo.media.errors import UploadError
from demo.media.video import DEFAULT_SETTINGS, SampledVideo, VideoSettings, frame_count, frame_size
from demo.media.video_plan import DecodeLimit, Keyframes, check_plan, decoder_bytes, keyframe_targets, planned_frames
from demo.media.video_seek import FrameFinder

MAX_SOURCE_PIXELS = 8192 * 8192  # a frame larger than this is refused; 8K UHD (7680×4320) is decoded
MAX_ASPECT_RATIO = 200  # Qwen's smart_resize refuses longer, thinner frames
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
        try:
            return _sample(path, name, settings)
        except _Shorter as shorter:  # sample again over the video track's own span
            return _sample(path, name, settings, video_duration=shorter.duration, limit=shorter.limit)
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


class _Shorter(Exception):
    """The video track ends well before the container says: sample again over `duration`."""

    def __init__(self, duration: float, limit: DecodeLimit) -> None:
        self.duration, self.limit = duration, limit


def _sample(
    path: str, name: str, settings: VideoSettings, video_duration: float | None = None, limit: DecodeLimit | None = None
) -> SampledVideo:
    with av.open(path, metadata_errors="ignore") as container:
        stream = _video_stream(container, name)
        declared = (stream.codec_context.width, stream.codec_context.height)
        if all(declared):  # before decoding anything huge
            _check_size(name, declared)
        fmt = stream.codec_context.format
        bits = fmt.padded_bits_per_pixel if fmt is not None else None
        need = decoder_bytes(*(declared if all(declared) else (3840, 2160)), bits, settings.total_pixels)
        with budget.reserve(need, name):
            limit = limit or DecodeLimit(name)  # the time allowed starts once the memory is there
            return _decode(path, name, settings, container, stream, limit, video_duration)


def _decode(
    path: str,
    name: str,
    settings: VideoSettings,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    limit: DecodeLimit,
    video_duration: float | None,
) -> SampledVideo:
    stream.thread_type = "AUTO"
    tb = stream.time_base
    start_pts = stream.start_time if stream.start_time is not None else 0
    decoder = FrameFinder(container, stream, start_pts, limit)
    first = decoder.first()
    if first is None:
        raise UploadError(f"{name} has no frame that could be decoded (it may be truncated or corrupt).")
    rotation = first.rotation if first.rotation in _QUARTER_TURNS else 0
    source_wh = (first.height, first.width) if rotation in (90, -90) else (first.width, first.height)
    _check_size(name, source_wh)

    duration = video_duration or _duration(container, stream, tb)
    source_frames = stream.frames or None
    keyframes = Keyframes.from_index(stream, start_pts)
    if duration is None:  # no duration anywhere: read every packet's timestamp (no decoding)
        scan = _scan_packets(path, stream.index, limit)
        duration, source_frames, keyframes = scan.video_end, scan.video_packets, scan.keyframes
    source_fps = float(stream.average_rate or stream.guessed_rate or 0) or (
        source_frames / duration if source_frames and duration else 0.0
    )
    decoder.fps, decoder.keyframes = source_fps, keyframes

    n = frame_count(duration, source_frames, settings)
    w, h = frame_size(source_wh, n, settings)
    size = (h, w) if rotation in (90, -90) else (w, h)  # as stored, before turning
    targets = [(k + 0.5) * duration / n for k in range(n)]
    if keyframes is not None and source_fps > 0:  # what decoding them will take, before decoding them
        pixels = first.width * first.height
        planned = planned_frames(targets, keyframes, source_fps, decoder.ahead[1])
        try:
            check_plan(name, planned, pixels, n)
        except UploadError:  # too much: at keyframes, a seek and a frame or two each, if they are close enough
            targets = keyframe_targets(keyframes, n, duration) or targets
            check_plan(name, planned_frames(targets, keyframes, source_fps, decoder.ahead[1]), pixels, n)
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
        scan = _scan_packets(path, stream.index, limit, every_stream=True)
        if video_duration is None and scan.video_end < duration - slack and scan.any_end >= duration - slack:
            raise _Shorter(max(scan.video_end, _EPS), limit)
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


@dataclass(frozen=True)
class _Scan:
    video_end: float  # seconds from the video stream's start to the end of its last packet
    video_packets: int
    keyframes: Keyframes | None
    any_end: float  # the same, over every stream's packets


def _scan_packets(path: str, index: int, limit: DecodeLimit, every_stream: bool = False) -> _Scan:
    """What the packets say, read without decoding: a pass over the file's bytes (within `limit`).
    `any_end` covers every stream's packets only when asked (`every_stream`), else the video's."""
    with av.open(path, metadata_errors="ignore") as container:
        video = container.streams[index]
        origin = float((video.start_time or 0) * video.time_base)
        bases = {s.index: float(s.time_base) if s.time_base else 0.0 for s in container.streams}
        video_end = any_end = 0.0
        count, keys, stamped = 0, [], False
        for packet in container.demux() if every_stream else container.demux(video):
            limit.scanned()
            stream_index = packet.stream_index
            if packet.size == 0 or packet.pts is None:
                count += stream_index == index and packet.size > 0
                continue
            t = packet.pts * bases[stream_index] - origin
            end = t + (packet.duration or 0) * bases[stream_index]
            any_end = max(any_end, end)
            if stream_index == index:
                count, stamped, video_end = count + 1, True, max(video_end, end)
                if packet.is_keyframe:
                    keys.append(t)
        if not stamped:  # no timestamps at all: count frames
            video_end = count / float(video.average_rate or video.guessed_rate or 25)
            any_end = max(any_end, video_end)
    return _Scan(video_end, count, Keyframes(keys) if len(keys) >= 2 else None, any_end)


def _reason(error: BaseException) -> str:
    text = (getattr(error, "strerror", None) or str(error)).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__
