"""The page's settings as one object: what the person set, checked only when an answer needs it.

`Settings` holds the values of the settings components as they arrive (numbers may be floats
or None, as Gradio gives them); `generation()` and `video()` turn them into the engine's and
the video sampler's settings and raise ValueError naming a bad one, so that a handler can
refuse the message with that sentence. Knows nothing of Gradio.
"""

from __future__ import annotations

from dataclasses import dataclass

from demo.engines.base import GenerationSettings
from demo.media.video import VideoSettings


@dataclass(frozen=True)
class Settings:
    """The settings accordion's values. Empty or 0 pixel bounds mean the model's default.

    `thinking` is the "think before answering" switch (models whose template has one; None:
    the model's own default). `zoom` lets a model trained for it zoom into pictures itself (`grounding.zoom`).
    """

    # The defaults are the engine's and the video sampler's own.
    max_new_tokens: float = GenerationSettings.max_new_tokens
    temperature: float = GenerationSettings.temperature
    top_p: float = GenerationSettings.top_p
    system_prompt: str = GenerationSettings.system_prompt
    min_pixels: float | None = None
    max_pixels: float | None = None
    video_fps: float = VideoSettings.fps
    video_max_frames: float = VideoSettings.max_frames
    thinking: bool | None = None
    zoom: bool = True

    def generation(self) -> GenerationSettings:
        """The engine's settings; ValueError names a bad value."""
        try:
            return GenerationSettings(
                max_new_tokens=int(self.max_new_tokens),
                temperature=float(self.temperature),
                top_p=float(self.top_p),
                system_prompt=self.system_prompt or "",
                min_pixels=int(self.min_pixels) if self.min_pixels else None,
                max_pixels=int(self.max_pixels) if self.max_pixels else None,
                thinking=None if self.thinking is None else bool(self.thinking),
                zoom=bool(self.zoom),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"Invalid setting: {e}") from None

    def video(self, factor: int) -> VideoSettings:
        """How to sample a video for a model whose resize factor is `factor`; ValueError names a bad value."""
        try:
            return VideoSettings(fps=float(self.video_fps), max_frames=int(self.video_max_frames) // 2 * 2, factor=factor)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Invalid video setting: {e}") from None
