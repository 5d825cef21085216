"""Finding the frame on screen at each of an increasing series of times in a video stream, with PyAV:
`video_decode.sample_video`'s reader.

It decodes forward, or seeks when that is cheaper: when the keyframe before the next time wanted
lies at least 4 frames ahead of the decoder (the container's keyframe index says where keyframes
are), or, with no index, when that time is at least `SEEK_MIN_GAP_S` and `SEEK_MIN_GAP_FRAMES`
ahead. A seek that lands behind the decoder (a file without an index, whose demuxer went back to
a keyframe already passed) turns seeking off: every later seek would decode the same frames again.
Every decoded frame is counted against the video's `DecodeLimit`. Errors are PyAV's (and the
limit's `UploadError`): `sample_video` turns them into one sentence.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import av

from demo.media.video_plan import DecodeLimit, Keyframes, seek_key

SEEK_MIN_GAP_S = 2.0  # with no keyframe index: seek when the next frame wanted is this far ahead...
SEEK_MIN_GAP_FRAMES = 16  # ...and at least this many source frames ahead
_EPS = 1e-6


class FrameFinder:
    """Finds the frame on screen at each of an increasing series of times: the last frame that
    starts at or before it. Decodes forward, or seeks ahead when that is cheaper. Holds at most
    two decoded frames: that one (`cur`) and the one after it (`ahead`)."""

    MAX_DAMAGED_PACKETS = 10_000  # a guard against looping on a stream that is damaged throughout

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        start_pts: int,
        limit: DecodeLimit,
    ) -> None:
        self.container, self.stream, self.start_pts, self.limit = container, stream, start_pts, limit
        self.frames: Iterator[av.VideoFrame] = container.decode(stream)
        self.cur: tuple[av.VideoFrame, float] | None = None
        self.ahead: tuple[av.VideoFrame, float] | None = None
        self.fps = 0.0
        self.keyframes: Keyframes | None = None
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
                self.limit.check_time()
                if self.damaged > self.MAX_DAMAGED_PACKETS:
                    return None
                self.frames = self.container.decode(self.stream)
                continue
            self.decoded += 1
            self.limit.decoded(frame.width, frame.height)
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
            return (seek_key(self.keyframes, target) - position) * self.fps >= 4
        gap = target - position
        return gap >= SEEK_MIN_GAP_S and gap * self.fps >= SEEK_MIN_GAP_FRAMES

    def _seek(self, target: float) -> None:
        """Seek to the keyframe at or before target; further back if the demuxer overshot."""
        back, position = 0.0, self._position()
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
            if got[1] < position - _EPS and not self.keyframes:
                # Landed behind the decoder (no index: the demuxer went back to a keyframe it had
                # passed, the start maybe): every later seek would decode the same frames again.
                self.can_seek = False
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
