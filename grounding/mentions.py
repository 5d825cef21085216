"""What the answer's prose says about images: "Picture N" mentions, and reasoning to skip."""

from __future__ import annotations

import bisect
import re

_CN_NUMERAL = "[零一二两三四五六七八九十]{1,3}"
MENTION_RE = re.compile(
    r"\b(?:picture|image)\s*(?:#|no\.)?\s*(?P<en>[0-9]{1,4})(?![0-9]|\.[0-9])\b"
    rf"|图(?:片|像)?\s*(?P<zh>[0-9]{{1,4}}|{_CN_NUMERAL})"
    rf"|第\s*(?P<nth>[0-9]{{1,4}}|{_CN_NUMERAL})\s*[张幅]",
    re.IGNORECASE,
)
_CN_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"两": 2}
_THINK_BLOCK_RE = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)


def _chinese_number(text: str) -> int | None:
    """1-99 written in Chinese numerals (一, 十二, 二十三) or ASCII digits."""
    if text.isascii():
        return int(text)
    if "十" not in text:
        return _CN_DIGITS[text] if len(text) == 1 else None
    tens, _, ones = text.partition("十")
    if "十" in ones or len(tens) > 1 or len(ones) > 1:
        return None
    return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)


def find_mentions(text: str) -> list[tuple[int, int]]:
    """``(end offset, picture number)`` of each image mention, in order.

    English ``Picture N`` / ``Image N`` (any case, also ``Image #N``), Chinese
    ``图N`` / ``图片N`` / ``图像N`` / ``第N张`` (``N`` in digits or 一…九十九).
    Ordinals ("the second image") and plurals ("images 1 and 2") are not read.
    """
    mentions = []
    for m in MENTION_RE.finditer(text):
        number = _chinese_number(m.group("en") or m.group("zh") or m.group("nth"))
        if number is not None:
            mentions.append((m.end(), number))
    return mentions


#: A mention of a bigger number names no picture ("an image 1024 pixels wide"), unless a
#: conversation has that many.
MAX_NAMED = 99


def named_picture(offset: int, mentions: list[tuple[int, int]], count: int) -> int | None:
    """The picture number the last mention ending at or before ``offset`` names, or None.

    The number may name no picture of ``count`` (0, or more than ``count``): the caller
    flags it. Numbers above ``max(count, MAX_NAMED)`` are not taken as names and skipped.
    """
    i = bisect.bisect_right(mentions, (offset, float("inf")))
    for _, number in reversed(mentions[:i]):
        if number <= max(count, MAX_NAMED):
            return number
    return None


def mask_reasoning(text: str) -> str:
    """``text`` with Qwen3 "Thinking" reasoning blanked out (same length, same offsets).

    Blanks ``<think>…</think>`` (to the end if unclosed, as while streaming) and,
    when the chat template put ``<think>`` in the prompt, everything before a lone
    ``</think>``.
    """
    if "think>" not in text:
        return text
    masked = _THINK_BLOCK_RE.sub(lambda m: " " * len(m.group()), text)
    lone_close = masked.rfind("</think>")
    if lone_close != -1:
        cut = lone_close + len("</think>")
        masked = " " * cut + masked[cut:]
    return masked
