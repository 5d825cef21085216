"""Limits on what one person may send: file size, images per turn and per conversation,
prompt length, and visual tokens per request. Each is a flag of app.py with a default that
keeps a shared CPU or a small GPU usable; each refusal is one sentence saying which limit.

Pure: it counts what it is given and knows nothing of Gradio or of any engine.
"""

from __future__ import annotations

from dataclasses import dataclass


class LimitError(ValueError):
    """A message refused because it is over a limit; the text says which, in one sentence."""


@dataclass(frozen=True)
class Limits:
    max_file_mb: float = 20.0
    max_images_per_turn: int = 8
    max_images: int = 32  # per conversation
    max_prompt_chars: int = 8000  # per message
    max_visual_tokens: int = 16384  # all images of a request together

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    def check_files(self, sizes_bytes: list[int], names: list[str]) -> None:
        """Refuse a turn with too many files or too large a file."""
        if len(sizes_bytes) > self.max_images_per_turn:
            raise LimitError(
                f"{len(sizes_bytes)} images in one message is more than the {self.max_images_per_turn} allowed."
            )
        for size, name in zip(sizes_bytes, names, strict=True):
            if size > self.max_file_mb * 1024 * 1024:
                raise LimitError(f"{name} is {size / 1024 / 1024:.1f} MB, more than the {self.max_file_mb:g} MB allowed.")

    def check_turn(self, text: str, images_before: int, new_images: int) -> None:
        """Refuse a message that is too long or would bring too many images into the conversation."""
        if len(text) > self.max_prompt_chars:
            raise LimitError(f"The message is {len(text):,} characters long, more than the {self.max_prompt_chars:,} allowed.")
        if images_before + new_images > self.max_images:
            raise LimitError(
                f"This conversation would hold {images_before + new_images} images, more than the {self.max_images} "
                "allowed: clear it or start a new one."
            )

    def check_visual_tokens(self, tokens: int) -> None:
        """Refuse a request whose images together cost too many visual tokens."""
        if tokens > self.max_visual_tokens:
            raise LimitError(
                f"The images of this conversation would cost {tokens:,} visual tokens, more than the "
                f"{self.max_visual_tokens:,} allowed: lower the max pixels per image, or clear the conversation."
            )
