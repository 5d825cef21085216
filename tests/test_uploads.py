"""Hostile and unusual uploads, and the limits: each gets one sentence and the session goes on.

The files are generated here, small on disk. They go through the same handler a browser's
upload reaches, with the real engine on the tiny checkpoint deciding what it can take.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from demo.engines.slot import EngineSlot
from demo.media.pictures import UploadError, load_image
from demo.page.handlers import ChatHandlers
from demo.page.settings import Settings
from demo.record.limits import Limits
from tests.fakes import AtLeast
from tests.helpers import shown

SHORT = Settings(max_new_tokens=8)  # the answers' words do not matter here


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`×`height` (a decompression bomb's header), with one tiny data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def exif_rotated_jpeg() -> bytes:
    """40×20 pixels stored, EXIF orientation 6: a person sees it 20×40 (rotated 90° clockwise)."""
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red on the stored left: on top once turned
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(image, "JPEG", exif=exif.tobytes(), quality=95)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), color) for color in ("blue", "yellow")]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def transparent_png() -> bytes:
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 8, 16))
    return encoded(image, "PNG")


def sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (16, 16))
    image.putdata([4096 * (i % 16) for i in range(256)])
    return encoded(image, "PNG")


GOOD = [
    # (file name, bytes, what the model gets: size, and a pixel check)
    ("one-pixel.png", encoded(Image.new("RGB", (1, 1), "green"), "PNG"), (1, 1)),  # 1×1 is scaled up by the processor
    ("cmyk.jpg", encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"), (16, 16)),  # CMYK JPEG becomes RGB
    ("deep.png", sixteen_bit_png(), (16, 16)),  # 16-bit greyscale PNG
    ("palette.png", encoded(Image.new("RGB", (16, 16), "purple").convert("P"), "PNG"), (16, 16)),  # palette PNG
    ("clear.png", transparent_png(), (16, 16)),  # transparency: composited on white
    ("moving.gif", animated_gif(), (16, 16)),  # animation: its first frame
    ("turned.jpg", exif_rotated_jpeg(), (20, 40)),  # EXIF orientation applied
]

BAD = [
    # (file name, bytes, words the sentence must contain)
    ("empty.png", b"", "empty file"),  # zero bytes
    ("cut.png", encoded(Image.new("RGB", (64, 64), "red"), "PNG")[:100], "could not be decoded"),  # truncated PNG
    ("cut.jpg", encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")[:300], "could not be decoded"),  # truncated JPEG
    ("notes.png", b"just some text, not an image\n" * 10, "not an image this app can read"),  # text renamed .png
    ("bomb.png", png_with_size(100_000, 100_000), "too many pixels"),  # decompression bomb: 10 gigapixels
    ("big.png", png_with_size(10_000, 9_000), "too many pixels"),  # 90 megapixels: over the app's own cap
    ("wide.png", encoded(Image.new("RGB", (10_000, 10)), "PNG"), "aspect ratio"),  # 1000:1, the processor refuses > 200
    ("tall.png", encoded(Image.new("RGB", (10, 10_000)), "PNG"), "aspect ratio"),  # 1:1000
    ("page.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not an image"),  # a type the app does not take
    ("script.html", b"<script>alert(1)</script>", "not an image"),  # nor this one
]


@pytest.fixture
def handlers(engine):
    slot = EngineSlot("tiny")
    slot.fill(AtLeast(engine, min_new_tokens=3))
    return ChatHandlers(slot, min_update_interval=0.0)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("name, data, size", GOOD, ids=[g[0] for g in GOOD])
def test_unusual_images_are_answered(handlers, tmp_path, name, data, size):
    *_, reply = handlers.chat({"text": "What is this?", "files": [write(tmp_path, name, data)]}, None, SHORT)
    turn = reply.conversation.turns[0]
    assert turn.status == "done", turn.error
    image = turn.attachments[0].image
    assert image.mode == "RGB" and image.size == size


def test_what_the_person_sees_is_what_the_model_gets(tmp_path):
    turned = load_image(write(tmp_path, "turned.jpg", exif_rotated_jpeg()))
    assert turned.size == (20, 40)
    top, bottom = turned.getpixel((10, 2)), turned.getpixel((10, 37))
    assert top[0] > 200 and top[1] < 80 and bottom == (255, 255, 255) or bottom[1] > 200  # red stripe on top
    clear = load_image(write(tmp_path, "clear.png", transparent_png()))
    assert clear.getpixel((2, 2)) == (255, 0, 0) and clear.getpixel((12, 2)) == (255, 255, 255)
    gif = load_image(write(tmp_path, "moving.gif", animated_gif()))
    assert gif.getpixel((8, 8))[2] > 200  # the blue first frame
    deep = load_image(write(tmp_path, "deep.png", sixteen_bit_png()))
    assert deep.getpixel((0, 0)) == (0, 0, 0) and deep.getpixel((15, 0))[0] > 200  # scaled, not clipped


@pytest.mark.parametrize("name, data, words", BAD, ids=[b[0] for b in BAD])
def test_bad_uploads_get_one_sentence_and_the_session_goes_on(handlers, tmp_path, name, data, words):
    *_, reply = handlers.chat("Hello", None, SHORT)
    updates = list(handlers.chat({"text": "And this?", "files": [write(tmp_path, name, data)]}, reply.conversation, SHORT))
    (reply,) = updates
    notice = shown(reply)[-1]["content"]
    assert notice.startswith("⚠ Not sent: ") and words in notice
    assert "\n" not in notice and "Traceback" not in notice
    assert len(reply.conversation.turns) == 1 and reply.message is None  # the textbox keeps the message
    *_, reply = handlers.chat("Still there?", reply.conversation, SHORT)
    assert [t.status for t in reply.conversation.turns] == ["done", "done"]


@pytest.mark.parametrize(
    "limits, message, words",
    [
        (Limits(max_images_per_turn=1), {"files": ["a", "b"]}, "2 images in one message is more than the 1 allowed"),  # per turn
        (Limits(max_images=2), {"files": ["a", "b", "c"]}, "would hold 3 images, more than the 2 allowed"),  # per conversation
        (Limits(max_prompt_chars=10), {"text": "x" * 11}, "11 characters long, more than the 10 allowed"),  # prompt length
        (Limits(max_image_mb=0.001), {"files": ["a"]}, "MB, more than the 0.001 MB allowed for a picture"),  # file size
        (Limits(max_visual_tokens=10), {"files": ["a"]}, "more than the 10 allowed"),  # visual tokens per request
    ],
)
def test_each_limit_refuses_with_a_sentence(engine, tmp_path, limits, message, words):
    slot = EngineSlot("tiny")
    slot.fill(engine)
    handlers = ChatHandlers(slot, limits=limits)
    photo = write(tmp_path, "photo.png", encoded(Image.effect_noise((200, 200), 40).convert("RGB"), "PNG"))
    files = [photo for _ in message.get("files", [])]
    notice = shown(list(handlers.chat({"text": message.get("text", "look"), "files": files}, None, SHORT))[0])[-1]["content"]
    assert words in notice


def test_limits_refuse_nonsense_values():
    with pytest.raises(ValueError):
        Limits(max_images=0)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".gif", ".webp", ".txt", ""]))
def test_any_bytes_uploaded_either_load_or_give_an_upload_error(tmp_path, data, suffix):
    path = tmp_path / f"upload{suffix}"
    path.write_bytes(data)
    try:
        image = load_image(str(path))
    except UploadError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert image.mode == "RGB"
