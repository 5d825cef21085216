"""What a sampled video is, and how big its frames may be: the pure half of video support.

`VideoSettings` says how to sample (frames per second, frame count, pixel budget, the model's
resize factor); `frame_count` and `frame_size` turn a duration and a source size into the
number of frames and the one size they all get: sides multiples of `factor`, pixel count within
the per-frame bounds and within the whole video's `total_pixels` budget. `SampledVideo` holds
the frames the model sees, and `processor_video_kwargs` hands them to a Qwen VL processor as
they are, with metadata from which each generation's processor reads the frames' real timing
(Qwen2.5-VL's seconds per temporal grid, Qwen3-VL's and Qwen3.5's `<t seconds>`; Qwen2-VL has
none). Decoding a file into a `SampledVideo` is `demo.media.video_decode.sample_video` (PyAV).
Imports neither PyAV, torch nor transformers; knows nothing of Gradio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from demo.media.resize import smart_resize
from grounding.generations import DEFAULT_RESIZE_FACTOR

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi")


def is_video_file(path: str) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


# The default bounds in units of factor² pixels (one merged patch of one frame), the same for
# every generation, as qwen-vl-utils 0.0.14 counts them (VIDEO_MIN_TOKEN_NUM = 128,
# VIDEO_MAX_TOKEN_NUM = 768) and transformers' Qwen3-VL video processor (32 × 32 × 768).
FRAME_MIN_UNITS = 128
FRAME_MAX_UNITS = 768
VIDEO_UNITS = 64 * FRAME_MIN_UNITS  # summed over every frame; the prompt gets half (pairs of frames)


@dataclass(frozen=True)
class VideoSettings:
    """How to sample a video. Pixel counts are width × height of one resized frame.

    `factor` is the model's resize factor (patch × merge: 28 for Qwen2-VL and Qwen2.5-VL, 32 for
    Qwen3-VL and Qwen3.5, from `grounding.generations`). The pixel bounds left at None follow it,
    so that every generation gets the same budget in tokens: frames of 128 × factor² to
    768 × factor² pixels (each pair of frames then costs 128 to 768 visual tokens), and
    64 × 128 × factor² pixels over all the frames of a video (every frame counted), which is at
    most 4,096 visual tokens. For the 2B model in bfloat16 on a 2-core CPU that is about 75 s of
    vision encoding (4.6 s measured per 256-token image, scaled; not measured with video). Any
    video longer than about 5 s costs nearly the whole budget: fewer frames get more pixels
    each, up to max_pixels.
    """

    fps: float = 2.0
    max_frames: int = 64
    total_pixels: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    factor: int = DEFAULT_RESIZE_FACTOR

    def __post_init__(self) -> None:
        if not 0.25 <= self.fps <= 4:
            raise ValueError(f"fps must be within [0.25, 4], got {self.fps}")
        if self.max_frames < 2 or self.max_frames % 2:
            raise ValueError(f"max_frames must be even and at least 2, got {self.max_frames}")
        if self.factor < 1:
            raise ValueError(f"factor must be positive, got {self.factor}")
        token = self.factor**2
        defaults = {"min_pixels": FRAME_MIN_UNITS, "max_pixels": FRAME_MAX_UNITS, "total_pixels": VIDEO_UNITS}
        for name, units in defaults.items():
            if getattr(self, name) is None:  # frozen: set once, here
                object.__setattr__(self, name, units * token)
        if self.min_pixels < token:
            raise ValueError(f"min_pixels must be at least factor² = {token}, got {self.min_pixels}")
        if self.max_pixels < self.min_pixels:
            raise ValueError(f"max_pixels ({self.max_pixels}) is smaller than min_pixels ({self.min_pixels})")
        if self.total_pixels < 2 * self.min_pixels:
            raise ValueError(
                f"total_pixels must hold two frames of min_pixels ({2 * self.min_pixels}), got {self.total_pixels}"
            )


DEFAULT_SETTINGS = VideoSettings()


@dataclass(frozen=True)
class SampledVideo:
    """The frames the model sees, and where in the source they come from.

    `frames` are RGB, all `frame_wh`, an even count; a frame is repeated when the source has
    fewer frames than were asked for. `timestamps` are seconds from the video stream's start.
    `decoded_frames` and `seeks` say what reading it cost.
    """

    frames: tuple[Image.Image, ...]
    timestamps: tuple[float, ...]
    frame_wh: tuple[int, int]
    source_wh: tuple[int, int]
    source_fps: float
    duration: float
    sample_fps: float
    factor: int = DEFAULT_RESIZE_FACTOR
    decoded_frames: int = field(default=0, compare=False)
    seeks: int = field(default=0, compare=False)

    @property
    def visual_tokens(self) -> int:
        """Its `<|video_pad|>` tokens in the prompt: frame pairs × (w/factor) × (h/factor) (temporal patch 2,
        merge 2×2). The vision markers and Qwen3-VL's `<t seconds>` around them are counted with the text."""
        w, h = self.frame_wh
        return len(self.frames) // 2 * (w // self.factor) * (h // self.factor)

    def for_factor(self, factor: int) -> SampledVideo:
        """These frames for a model whose sides are multiples of `factor`: itself when they are.

        Otherwise (a conversation saved with one generation and answered by another) every frame
        is resized to the size of that factor nearest its own, no larger (transformers'
        smart_resize with its pixel count as the maximum); times and frame count stay.
        """
        if factor == self.factor:
            return self
        w, h = self.frame_wh
        new_h, new_w = smart_resize(h, w, factor, factor * factor, max(w * h, factor * factor))
        frames = {id(frame): frame.resize((new_w, new_h), Image.Resampling.BICUBIC) for frame in self.frames}
        return replace(
            self, frames=tuple(frames[id(frame)] for frame in self.frames), frame_wh=(new_w, new_h), factor=factor
        )

    def describe(self) -> str:
        """One line for the chat, e.g. '24 frames at 2.0 fps, 336×196 px each, 1,008 visual tokens'."""
        if self.sample_fps >= 0.95:
            rate = f" at {self.sample_fps:.1f} fps"
        else:
            rate = f", one every {1 / self.sample_fps:.1f} s"
        w, h = self.frame_wh
        return f"{len(self.frames)} frames{rate}, {w}×{h} px each, {self.visual_tokens:,} visual tokens"


def frame_count(duration: float, source_frames: int | None, settings: VideoSettings) -> int:
    """How many frames to sample: duration × fps rounded to an even count, at least 2, at most
    max_frames, at most the source's frame count (rounded up to even), and at most as many frames
    of min_pixels as total_pixels holds (the budget drops frames before it shrinks them below min)."""
    n = max(2, math.floor(duration * settings.fps / 2 + 0.5) * 2)
    n = min(n, settings.max_frames, settings.total_pixels // settings.min_pixels // 2 * 2)
    if source_frames:
        n = min(n, max(2, math.ceil(source_frames / 2) * 2))
    return n


def frame_size(source_wh: tuple[int, int], n_frames: int, settings: VideoSettings) -> tuple[int, int]:
    """The (w, h) every frame is resized to, such that n_frames × w × h <= total_pixels.

    qwen-vl-utils 0.0.14 (`fetch_video`) uses max_pixels = max(min(VIDEO_MAX_PIXELS,
    total_pixels / nframes × 2), 1.05 × min_pixels): its budget counts each pair of frames once,
    and min_pixels wins over it. Here the budget counts every frame and always holds:
    cap = min(max_pixels, total_pixels // n_frames) (at least min_pixels, see `frame_count`), then
    smart_resize(h, w, factor, min_pixels, cap); when its rounding up to multiples of factor
    overshoots the cap, the sides are scaled to the cap and rounded down instead (Qwen's
    scale-down branch: the frame ends a little under min_pixels); when even that does not fit
    (an extreme aspect ratio), the longer side gives up one factor at a time.
    """
    width, height = source_wh
    f = settings.factor
    cap = min(settings.max_pixels, settings.total_pixels // n_frames)
    h, w = smart_resize(height, width, f, min(settings.min_pixels, cap), cap)
    if h * w > cap:  # rounding up overshot: scale to the cap and round down instead
        scale = math.sqrt(cap / (height * width))
        h, w = max(f, math.floor(height * scale / f) * f), max(f, math.floor(width * scale / f) * f)
    while h * w > cap and max(h, w) > f:
        w, h = (w - f, h) if w >= h else (w, h - f)
    return w, h


def processor_video_kwargs(*videos: SampledVideo) -> dict:
    """Keyword arguments for a Qwen VL processor call that take these videos exactly as sampled.

    `processor(text=[prompt], images=..., **processor_video_kwargs(*videos))`, videos in
    conversation order, each as a (T, H, W, 3) uint8 array. In `videos_kwargs`, so that they
    never reach the image processor: `do_resize=False` keeps the frames' size (already multiples
    of the factor) whatever `size` the call passes for images; `do_sample_frames=False` keeps
    every frame (and with it the video processors' own `fps`, `min_frames` and `max_frames`
    stay unused); `cap_pixels_per_frame=False` silences transformers' warning about a budget
    that only applies when it resizes; `video_metadata` (see `video_metadata`) gives each
    generation its timing: Qwen2-VL ignores it, Qwen2.5-VL takes its seconds per temporal grid
    from it, Qwen3-VL and Qwen3.5 the `<t seconds>` before each pair of frames (since transformers
    5.25 those per-pair blocks replace the template's whole `<|vision_start|><|video_pad|><|vision_end|>`,
    two tokens fewer than 5.23 wrote; the pads, `SampledVideo.visual_tokens`, are the same). No
    `fps`: transformers 5.23 and 5.25 reject qwen-vl-utils' list of fps for Qwen2-VL.
    """
    if not videos:
        return {}
    return {
        "videos": [np.stack([np.asarray(frame) for frame in video.frames]) for video in videos],
        "videos_kwargs": {
            "do_sample_frames": False,
            "do_resize": False,
            "cap_pixels_per_frame": False,
            "video_metadata": [video_metadata(video) for video in videos],
        },
    }


def video_metadata(video: SampledVideo) -> dict:
    """transformers' `VideoMetadata` fields for `video`, such that the processors read its real timing.

    transformers (5.23, 5.25) reads two things from it (`video_utils.VideoMetadata`):
    `sampled_fps` = len(frames_indices) / total_num_frames × fps, from which Qwen2.5-VL's
    processor makes `second_per_grid_ts` = temporal_patch_size / sampled_fps; and the frame
    times frames_indices / fps, which Qwen3-VL's processor averages over each pair of frames
    into the `<t seconds>` it writes before the pair. So, with fps the source's frame rate:
    frames_indices = each frame's time × fps (its position in source frames: a whole number
    for a constant frame rate, a fraction otherwise) and total_num_frames = frames / sample_fps
    × fps (the duration in source frames, a float as qwen-vl-utils also writes it for a list of
    frames): sampled_fps is then exactly `sample_fps`, and the times exactly `timestamps`.
    """
    rate = video.sample_fps if video.sample_fps > 0 else 1.0  # > 0 unless a saved file says otherwise
    fps = video.source_fps or rate
    return {
        "fps": fps,
        "duration": video.duration,
        "total_num_frames": len(video.frames) / rate * fps,
        "frames_indices": [t * fps for t in video.timestamps],
    }
