"""Decoding uploaded images into what the model and the person both see.

Every image the app sends to a model is decoded here, from a file Gradio accepted as an
upload: never from a URL or a path taken from text. Errors come out as `UploadError`, whose
text is one sentence for the chat. Knows nothing of Gradio or of any model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
MAX_IMAGE_PIXELS = 64_000_000  # larger images are refused (decompression bombs included)


class UploadError(ValueError):
    """An upload that cannot be used; the text says why, in one sentence."""


def is_image_file(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_image(path: str, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an image file as RGB, turned the way the person sees it (EXIF orientation).

    Transparent images are composited on white; animations give their first frame.
    Raises UploadError for an empty, unreadable, truncated or oversized file.
    """
    name = Path(path).name
    if Path(path).stat().st_size == 0:
        raise UploadError(f"{name} is an empty file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                if opened.width * opened.height > max_pixels:
                    raise UploadError(
                        f"{name} is {opened.width}×{opened.height}: too many pixels (this app takes up to {max_pixels:,})."
                    )
                opened.seek(0)
                image = ImageOps.exif_transpose(opened)
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"{name} decompresses to too many pixels to be used safely.") from None
    except UnidentifiedImageError:
        raise UploadError(f"{name} is not an image this app can read.") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UploadError(f"{name} could not be decoded (it may be truncated or corrupt): {e}.") from None
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")
