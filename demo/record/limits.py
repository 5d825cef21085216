"""Limits on what one person may send: file sizes (pictures and videos apart), images per turn and
per conversation, message and system prompt length, visual tokens and prompt tokens per request,
turns and text per conversation. Most are flags (`demo/flags.py`), with defaults that keep a shared CPU or
a small GPU usable; each refusal is one sentence saying which limit. A loaded conversation is held
to the same limits (`demo.record.session_file`): what a live conversation can hold loads back.

Pure: it counts what it is given and knows nothing of Gradio or of any engine.
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024


class LimitError(ValueError):
    """A message refused because it is over a limit; the text says which, in one sentence."""


@dataclass(frozen=True)
class Limits:
    max_image_mb: float = 20.0  # one picture file
    # One video file: 30 minutes of 720p from a phone is 1,200 MB (Apple's figure for 720p at 30 fps:
    # 40 MB a minute), a screen recording less (OBS's 2.5 Mbit/s default: 560 MB). See docs/safety.md.
    max_video_mb: float = 1500.0
    max_images_per_turn: int = 8  # pictures and videos in one message
    max_images: int = 32  # pictures and videos in one conversation
    max_prompt_chars: int = 8000  # per message
    max_system_prompt_chars: int = 4000
    max_visual_tokens: int = 16384  # all pictures and videos of a request together
    max_prompt_tokens: int = 24576  # the whole request: text, pictures and videos
    # Turns in one conversation: its prompt reaches --max-prompt-tokens long before with any real
    # answers; the bound keeps reading and showing a loaded conversation's text to a second or two.
    max_turns: int = 1000
    # Text in one conversation (questions, answers, reasoning, error texts): a new message is refused
    # once it holds this much; a loaded one may hold one answer more (`loaded_text_chars`).
    max_text_chars: int = 1_000_000

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    @property
    def max_answer_chars(self) -> int:
        """The longest answer (and the longest reasoning) one turn of a loaded conversation may hold."""
        return 100 * self.max_prompt_chars

    @property
    def loaded_text_chars(self) -> int:
        """The most text a loaded conversation may hold: what a live one may, and the answer that followed."""
        return self.max_text_chars + 2 * self.max_answer_chars

    @property
    def max_upload_mb(self) -> float:
        """The largest file of any kind: the server-wide upload limit (each kind is checked apart)."""
        return max(self.max_image_mb, self.max_video_mb)

    def describe_uploads(self) -> str:
        """'pictures up to 20 MB, videos up to 1,500 MB', for the page."""
        return f"pictures up to {_size(self.max_image_mb)}, videos up to {_size(self.max_video_mb)}"

    def check_files(self, sizes_bytes: list[int], names: list[str], videos: list[bool] | None = None) -> None:
        """Refuse a turn with too many files, or a picture or video over its size limit."""
        if len(sizes_bytes) > self.max_images_per_turn:
            raise LimitError(
                f"{len(sizes_bytes)} images in one message is more than the {self.max_images_per_turn} allowed."
            )
        for size, name, is_video in zip(sizes_bytes, names, videos or [False] * len(names), strict=True):
            limit, kind = (self.max_video_mb, "video") if is_video else (self.max_image_mb, "picture")
            if size > limit * MB:
                raise LimitError(f"{name} is {_size(size / MB)}, more than the {_size(limit)} allowed for a {kind}.")

    def check_turn(self, text: str, images_before: int, new_images: int) -> None:
        """Refuse a message that is too long or would bring too many images into the conversation."""
        if len(text) > self.max_prompt_chars:
            raise LimitError(f"The message is {len(text):,} characters long, more than the {self.max_prompt_chars:,} allowed.")
        if images_before + new_images > self.max_images:
            raise LimitError(
                f"This conversation would hold {images_before + new_images} images, more than the {self.max_images} "
                "allowed: clear it or start a new one."
            )

    def check_conversation(self, turns: int, text_chars: int) -> None:
        """Refuse a new message when the conversation already holds `turns` turns (the most allowed)
        or `text_chars` characters of text (the most allowed, with the message)."""
        if turns >= self.max_turns:
            raise LimitError(
                f"This conversation has {turns:,} turns, the most allowed ({self.max_turns:,}): clear it or start a new one."
            )
        if text_chars > self.max_text_chars:
            raise LimitError(
                f"This conversation would hold {text_chars:,} characters of text, more than the {self.max_text_chars:,} "
                "allowed: clear it or start a new one."
            )

    def check_system_prompt(self, text: str) -> None:
        """Refuse a system prompt that is too long."""
        if len(text) > self.max_system_prompt_chars:
            raise LimitError(
                f"The system prompt is {len(text):,} characters long, more than the {self.max_system_prompt_chars:,} "
                "allowed: shorten it in the settings."
            )

    def check_visual_tokens(self, tokens: int) -> None:
        """Refuse a request whose images together cost too many visual tokens."""
        if tokens > self.max_visual_tokens:
            raise LimitError(
                f"The images of this conversation would cost {tokens:,} visual tokens, more than the "
                f"{self.max_visual_tokens:,} allowed: lower the max pixels per image, or clear the conversation."
            )

    def check_prompt_tokens(self, tokens: int) -> None:
        """Refuse a request whose prompt (text, pictures and videos) is too long."""
        if tokens > self.max_prompt_tokens:
            raise LimitError(
                f"This conversation's prompt would be {tokens:,} tokens, more than the {self.max_prompt_tokens:,} "
                "allowed: clear the conversation, or send fewer or smaller pictures."
            )


def _size(mb: float) -> str:
    """1500 -> '1,500 MB', 20 -> '20 MB', 0.25 -> '0.25 MB' (MB of 2**20 bytes, as the flags)."""
    return f"{mb:.3g} MB" if mb < 10 else f"{mb:,.0f} MB"
