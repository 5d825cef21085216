"""Fonts for labels: a CJK-capable system font when one is installed, else PIL's default.

Nothing is downloaded. The CJK font is looked for once per process: first a fixed
list of common paths (Debian/Ubuntu/Fedora/Arch packages, macOS, Windows), then
``fc-list`` (fontconfig) with a timeout.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from PIL import ImageFont

COMMON_CJK_FONT_PATHS: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian/Ubuntu fonts-noto-cjk
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",  # Arch
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",  # Fedora
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
    "C:/Windows/Fonts/meiryo.ttc",
)
_FC_LIST_TIMEOUT_S = 3.0


@functools.lru_cache(maxsize=1)
def find_cjk_font() -> str | None:
    """Path of an installed font with Chinese/Japanese glyphs, or None. Cached."""
    for path in COMMON_CJK_FONT_PATHS:
        if os.path.isfile(path):
            return path
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return None
    for lang in ("zh", "ja", "ko"):
        try:
            result = subprocess.run(
                [fc_list, f":lang={lang}", "file"],
                capture_output=True,
                text=True,
                timeout=_FC_LIST_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        paths = sorted(line.strip().rstrip(":") for line in result.stdout.splitlines() if line.strip())
        for path in paths:
            if os.path.isfile(path):
                return path
    return None


def needs_wide_font(text: str) -> bool:
    """True when ``text`` has characters beyond Latin (CJK, Cyrillic, ...)."""
    return any(ord(c) > 0x24F for c in text)


@functools.lru_cache(maxsize=32)
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.truetype(path, size)
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=32)
def default_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's built-in font at ``size`` (a fixed-size bitmap font on a Pillow without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ValueError):
        return ImageFont.load_default()


def label_font(text: str, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The font to write ``text`` in: the CJK font for non-Latin text if found, else the default."""
    if needs_wide_font(text):
        path = find_cjk_font()
        font = _truetype(path, size) if path else None
        if font is not None:
            return font
    return default_font(size)
