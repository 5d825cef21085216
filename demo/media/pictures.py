"""Decoding uploaded images into what the model and the person both see, and no more.

Every image the app sends to a model is decoded here, from a file Gradio accepted as an
upload (or from the bytes of a loaded conversation): never from a URL or a path taken from
text. Its size is read from the header and checked before any pixel is decoded. A picture is
kept at the size the model sees it at, or at `DISPLAY_SIDE` on its longer side if that is larger
(to draw boxes on), never larger than the original: a 64-megapixel photo costs a few megabytes
once decoded, not a quarter of a gigabyte. JPEGs are decoded straight at a reduced scale when
that is enough; other formats are decoded whole once, then reduced. The original size is kept
beside the picture, so boxes stay in the original's pixels.

Decoding takes memory for a moment, far more than what is kept (a 2.5 kB WebP of 7000×7000
pixels takes about 800 MB while it is decoded and reduced): what a decode will take is estimated
from the header (`decode_bytes`) and reserved from the process's decoding budget
(`demo.media.budget`) before a pixel is decoded, so concurrent answers cannot add those moments up
past it. Only the formats the app takes are opened (Pillow would otherwise try each of its
plugins on any file).

Errors come out as `UploadError`, whose text is one sentence for the chat. Knows nothing of
Gradio or of any model.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from demo.media import budget
from demo.media.errors import UploadError  # raised here, and imported from here by the rest of the app

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
MAX_IMAGE_PIXELS = 64_000_000  # larger images are refused (decompression bombs included)
DISPLAY_SIDE = 1024  # a kept picture is at least this long on its longer side (unless the original is smaller)
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # Pillow's names (a camera's MPO comes through JPEG)

Size = tuple[int, int]  # (width, height)
Source = str | Path | bytes

_ORIENTATION = 0x0112  # the EXIF tag
_TRANSPOSE = {  # EXIF orientation -> what turns the stored pixels the way the person sees them (as ImageOps.exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def is_image_file(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def kept_size(original_wh: Size, need_wh: Size | None = None, display_side: int = DISPLAY_SIDE) -> Size:
    """The size a picture of `original_wh` is kept at: scaled down (never up, aspect kept) only as far
    as it still covers `need_wh` (what the model sees; None: not known yet) and `display_side`."""
    width, height = original_wh
    scale = display_side / max(width, height)
    if need_wh is not None:
        scale = max(scale, need_wh[0] / width, need_wh[1] / height)
    if scale >= 1:
        return original_wh
    return max(1, round(width * scale)), max(1, round(height * scale))


def probe_image(source: Source, name: str | None = None, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Size:
    """The (width, height) the person sees (EXIF orientation applied), from the header alone."""
    with _opened(source, name, max_pixels) as (opened, original, _):
        return original


def load_picture(
    source: Source,
    name: str | None = None,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    need: Callable[[Size], Size | None] | None = None,
    keep_all: bool = False,
) -> tuple[Image.Image, Size]:
    """Decode an image as RGB, turned the way the person sees it; return it and its original size.

    It is kept at `kept_size(original, need(original))` (`need` gives the size the model sees a
    picture of that size at), or whole with `keep_all`. Transparent images are composited on white;
    animations give their first frame. Raises UploadError for an empty, unreadable, truncated or
    oversized file (whatever `need` raises goes through).
    """
    with _opened(source, name, max_pixels) as (opened, original, transpose):
        target = original if keep_all else kept_size(original, need(original) if need else None)
        stored = (target[1], target[0]) if transpose in _SWAPS else target  # in the file's own orientation
        label = name or _name(source)
        with _decoding(label):
            if stored != opened.size:
                opened.draft(None, stored)  # JPEG: decode at 1/2, 1/4 or 1/8 scale, never below `stored`
            with budget.reserve(decode_bytes(opened), label):  # waits its turn, or refuses, before decoding
                opened.load()
                image = _resizable(opened)
                if image.size != stored:
                    image = image.resize(stored, Image.Resampling.LANCZOS, reducing_gap=3.0)
                if transpose is not None:
                    image = image.transpose(transpose)
                image = _to_rgb(image)
                return (image.copy() if image is opened else image), original  # `opened` is closed on the way out


def load_image(path: str, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """The whole image (no reduction), as `load_picture` decodes it."""
    return load_picture(path, max_pixels=max_pixels, keep_all=True)[0]


def refit(image: Image.Image, original_wh: Size, source: str | None, need_wh: Size) -> Image.Image:
    """The picture at the size it must be kept at for a model that sees it at `need_wh`.

    Shrinks the kept picture when it is larger than needed; decodes `source` again (the original
    upload) when more pixels are needed than were kept. Without a readable source, the picture stays
    as it is (the model gets it enlarged).
    """
    target = kept_size(original_wh, need_wh)
    if image.size == target:
        return image
    if image.width >= target[0] and image.height >= target[1]:
        return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if source and Path(source).is_file():
        try:
            again, _ = load_picture(source, need=lambda _: need_wh)
        except UploadError:
            return image
        if again.width > image.width:
            return again
    return image


# -- decoding ---------------------------------------------------------------------------------

_DECODED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}  # per pixel, as Pillow holds it; others 4
_WEBP_BYTES = 12  # libwebp's canvas and its copy of the previous frame (4 each), and the 4 it hands Pillow
_FIXED_BYTES = 16 * 1024 * 1024  # the codec's own buffers


def decode_bytes(opened: Image.Image) -> int:
    """About the most memory `load_picture` holds at once while it decodes `opened` (opened, not
    decoded; after `draft`): the decoded pixels, the copy a conversion makes, the premultiplied
    copy Pillow resizes an image with transparency through, and WebP's own buffers, plus a byte a
    pixel for the reduced result. Measured on 4000×4000 images, it is 1.05 to 2 times what a decode
    took (an RGB PNG: 85 MB for an estimate of 92; a WebP: 245 for 275; a palette GIF: 161 for 169)."""
    width, height = opened.size
    mode = opened.mode
    per_pixel = _DECODED_BYTES.get(mode, 4) + 1
    if mode not in ("L", "LA", "RGB", "RGBA"):
        per_pixel += 4 if mode != "1" else 1  # `_resizable` converts it
    if mode in ("RGBA", "LA", "P", "PA") or "transparency" in opened.info:
        per_pixel += 4  # resized through a premultiplied copy
    if opened.format == "WEBP":
        per_pixel += _WEBP_BYTES
    return width * height * per_pixel + _FIXED_BYTES


_SWAPS = (Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90)


class _opened:
    """Context manager: the opened (not decoded) image, its size as seen, and its EXIF turn."""

    def __init__(self, source: Source, name: str | None, max_pixels: int) -> None:
        self.source, self.name, self.max_pixels = source, name or _name(source), max_pixels

    def __enter__(self) -> tuple[Image.Image, Size, Image.Transpose | None]:
        if (len(self.source) if isinstance(self.source, bytes) else Path(self.source).stat().st_size) == 0:
            raise UploadError(f"{self.name} is an empty file.")
        with _decoding(self.name):
            self.image = Image.open(
                io.BytesIO(self.source) if isinstance(self.source, bytes) else self.source, formats=FORMATS
            )
            try:
                width, height = self.image.size
                if width * height > self.max_pixels:
                    raise UploadError(
                        f"{self.name} is {width}×{height}: too many pixels (this app takes up to {self.max_pixels:,})."
                    )
                self.image.seek(0)
                transpose = _TRANSPOSE.get(self.image.getexif().get(_ORIENTATION))
            except BaseException:
                self.image.close()
                raise
        original = (height, width) if transpose in _SWAPS else (width, height)
        return self.image, original, transpose

    def __exit__(self, *exc) -> None:
        self.image.close()


class _decoding:
    """Context manager turning Pillow's errors into one UploadError sentence about `name`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("error", Image.DecompressionBombWarning)

    def __exit__(self, kind, error, traceback) -> None:
        self._warnings.__exit__(kind, error, traceback)
        if kind is None or isinstance(error, UploadError):
            return
        if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise UploadError(f"{self.name} decompresses to too many pixels to be used safely.") from None
        if isinstance(error, MemoryError):
            raise UploadError(f"{self.name} needs more memory to decode than this machine has free.") from None
        if isinstance(error, UnidentifiedImageError):
            raise UploadError(f"{self.name} is not an image this app can read.") from None
        if isinstance(error, (OSError, SyntaxError, ValueError, EOFError)):
            raise UploadError(f"{self.name} could not be decoded (it may be truncated or corrupt): {error}.") from None


def _name(source: Source) -> str:
    return "the image" if isinstance(source, bytes) else Path(source).name


def _resizable(image: Image.Image) -> Image.Image:
    """The decoded image in a mode Pillow resizes with a proper filter (alpha kept for later)."""
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("P", "PA"):
        return image.convert("RGBA")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda v: v / 256).convert("L")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, F
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, "white")
        background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")
