"""How much reading a video may cost, and the plan that keeps it within that: the bounds of
`video_decode.sample_video`.

A video file can ask for far more decoding than its size suggests: 3 MB of H.264 holds 100,000
tiny frames behind a single keyframe, and every frame wanted then has to be decoded from the
start (26 s for 64 of them, while the answer's queue slot waited). So each video gets a
decoding allowance, `DecodeLimit`: at most `MAX_DECODED_FRAMES` frames and `MAX_DECODED_PIXELS`
pixels decoded, `MAX_SCANNED_PACKETS` packets read, and `MAX_DECODE_SECONDS` of wall time; past
any of them it is refused with one sentence. Most of the time the refusal comes before decoding
anything: when the container has a keyframe index, `planned_frames` counts what the decoder will
decode (it seeks to the keyframe before each frame wanted, or decodes forward when that is
nearer), and a plan over the allowance is replaced by `keyframe_targets` (each slice of the
video takes the keyframe nearest its middle: a seek and a frame or two each) when there is one
within a slice's width of every middle, else refused at once.

`Keyframes` answers "the last keyframe at or before t" from the demuxer's index without reading
it whole (FFmpeg's own search: a 1.5 GB MP4 can list millions of samples), or from a list.
`decoder_bytes` estimates a decoder's memory for the process's decoding budget. Pure but for
reading PyAV's index; knows nothing of Gradio.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from collections.abc import Sequence

from demo.media.errors import UploadError

MAX_DECODED_FRAMES = 10_000  # about 0.7 s of tiny frames here: decoding has a cost per frame, however small
MAX_DECODED_PIXELS = 2_000_000_000  # about 2,200 frames of 720p, 960 of 1080p, 60 of 8K: 1-4 s on 2 cores
MAX_SCANNED_PACKETS = 120_000  # video packets read without decoding, under a second (no duration: 33 min at 60 fps)
MAX_DECODE_SECONDS = 10.0  # wall time, whatever the codec (AV1 and HEVC decode slower than H.264)
_EPS = 1e-6
_ADVICE = "re-encode it with a keyframe every few seconds, or send a shorter or smaller clip"


class Keyframes:
    """Keyframe times (s from the stream's start): the last one at or before a time."""

    def __init__(self, times: Sequence[float] | None = None, *, entries=None, start_pts: int = 0, time_base=None):
        self.times = sorted(times) if times is not None else None
        self.entries, self.start_pts = entries, start_pts
        self.time_base = float(time_base) if time_base is not None else 1.0

    @classmethod
    def from_index(cls, stream, start_pts: int) -> Keyframes | None:
        """From the demuxer's index, when it has one worth trusting: mp4/mov list every sample (key
        or not), Matroska its cue points (usually every keyframe). One entry alone says nothing."""
        entries = stream.index_entries
        if len(entries) < 2 or entries.search_timestamp(2**62, backward=True) < 0:
            return None
        return cls(entries=entries, start_pts=start_pts, time_base=stream.time_base)

    def before(self, t: float) -> float | None:
        """The last keyframe at or before `t`; None when there is none."""
        if self.times is not None:
            i = bisect.bisect_right(self.times, t + _EPS) - 1
            return self.times[i] if i >= 0 else None
        pts = self.start_pts + math.floor((t + _EPS) / self.time_base)
        i = self.entries.search_timestamp(pts, backward=True)
        return (self.entries[i].timestamp - self.start_pts) * self.time_base if i >= 0 else None

    def after(self, t: float) -> float | None:
        """The first keyframe at or after `t`; None when there is none."""
        if self.times is not None:
            i = bisect.bisect_left(self.times, t - _EPS)
            return self.times[i] if i < len(self.times) else None
        pts = self.start_pts + math.ceil((t - _EPS) / self.time_base)
        i = self.entries.search_timestamp(pts, backward=False)
        return (self.entries[i].timestamp - self.start_pts) * self.time_base if i >= 0 else None


def seek_key(keyframes: Keyframes, target: float) -> float:
    """The keyframe a seek for `target` lands on (the first one when the target precedes it)."""
    key = keyframes.before(target)
    return key if key is not None else (keyframes.after(0.0) or 0.0)


def planned_frames(targets: Sequence[float], keyframes: Keyframes, fps: float, position: float = 0.0) -> int:
    """About how many frames `video_seek.FrameFinder` decodes for `targets`, starting at `position`:
    it seeks when the keyframe before a target is at least 4 frames ahead of it, then decodes from
    that keyframe; else it decodes forward. Two frames more per target (the one after is read)."""
    total = 0.0
    for target in targets:
        key = seek_key(keyframes, target)
        start = key if (key - position) * fps >= 4 else position
        total += max(0.0, target - start) * fps + 2
        position = max(position, target)
    return math.ceil(total)


def keyframe_targets(keyframes: Keyframes, n: int, duration: float) -> list[float] | None:
    """For each of n equal slices of `duration`, the keyframe nearest its middle (a keyframe may
    serve two slices: its frame then repeats); None when one is farther than a slice's width from
    it (the frames would not show the video evenly: a 1-minute 4K phone video with a keyframe a
    second is read so, one with a single keyframe is not)."""
    width = duration / n
    chosen = []
    for k in range(n):
        middle = (k + 0.5) * width
        options = [t for t in (keyframes.before(middle), keyframes.after(middle)) if t is not None]
        nearest = min(options, key=lambda t: abs(t - middle), default=None)
        if nearest is None or abs(nearest - middle) > width + _EPS:
            return None
        chosen.append(nearest)
    return chosen


def check_plan(name: str, frames: int, pixels_per_frame: int, wanted: int) -> None:
    """UploadError when decoding `frames` frames of `pixels_per_frame` is over the allowance."""
    if frames > MAX_DECODED_FRAMES or frames * pixels_per_frame > MAX_DECODED_PIXELS:
        raise UploadError(
            f"{name} would take too long to decode: taking {wanted} frames from it means decoding about "
            f"{frames:,} (its keyframes are too far apart), more than this app decodes for one video; {_ADVICE}."
        )


class DecodeLimit:
    """The allowance of one video: counts what is decoded and read, and refuses past it."""

    def __init__(self, name: str, seconds: float | None = None) -> None:
        self.name = name
        self.deadline = time.monotonic() + (MAX_DECODE_SECONDS if seconds is None else seconds)
        self.frames = self.pixels = self.packets = 0

    def decoded(self, width: int, height: int) -> None:
        self.frames += 1
        self.pixels += width * height
        if self.frames > MAX_DECODED_FRAMES or self.pixels > MAX_DECODED_PIXELS:
            raise UploadError(
                f"{self.name} would take too long to decode: it needs more than the {self.frames - 1:,} frames "
                f"this app decodes for one video (its keyframes are too far apart or not indexed); {_ADVICE}."
            )
        self.check_time()

    def scanned(self) -> None:
        self.packets += 1
        if self.packets > MAX_SCANNED_PACKETS:
            raise UploadError(
                f"{self.name} has more than the {MAX_SCANNED_PACKETS:,} packets this app reads to find a video's "
                f"length (it says neither its duration nor where its keyframes are); {_ADVICE}."
            )
        if self.packets % 1024 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise UploadError(
                f"{self.name} would take too long to decode: it was still being read after "
                f"{MAX_DECODE_SECONDS:g} s; {_ADVICE}."
            )


def decoder_bytes(width: int, height: int, bits_per_pixel: int | None, sampled_pixels: int) -> int:
    """About the most memory decoding a video of `width`×`height` frames holds: the decoder's
    reference and threading frames (12 at 4K and 8K with 2 threads, measured: 160 and 613 MB),
    one more per thread, and the sampled frames kept (4 bytes a pixel)."""
    threads = min(os.cpu_count() or 1, 8)
    per_pixel = (bits_per_pixel or 12) / 8
    return int(width * height * per_pixel * (12 + threads)) + 4 * sampled_pixels + 16 * 1024 * 1024
