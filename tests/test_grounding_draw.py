"""Tests of grounding.draw and grounding.fonts on synthetic images."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from grounding import PALETTE, Detection, draw, fonts, label_color, parse
from grounding.draw import font_size, line_width

GREY = (128, 128, 128)
EXAMPLES = Path("/work/shared/examples")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_font_cache():
    fonts.find_cjk_font.cache_clear()
    fonts._truetype.cache_clear()
    yield
    fonts.find_cjk_font.cache_clear()
    fonts._truetype.cache_clear()


def grey(width: int = 200, height: int = 100, mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (width, height), GREY if mode == "RGB" else (*GREY, 255))


def box(x1, y1, x2, y2, label: str = "") -> Detection:
    return Detection(label=label, image=1, bbox=(x1, y1, x2, y2))


def test_box_edges_in_label_colour():
    out = draw(grey(), [box(20, 10, 120, 80)])
    color = label_color("")
    for xy in [(20, 45), (21, 45), (119, 45), (70, 10), (70, 79)]:  # the four edges, 2 px wide
        assert out.getpixel(xy) == color, xy
    for xy in [(18, 45), (70, 45), (122, 45), (70, 82)]:  # outside and inside the outline
        assert out.getpixel(xy) == GREY, xy


def test_box_at_image_edge_is_visible():
    out = draw(grey(), [box(150, 0, 200, 100)])  # x2 == width, y2 == height
    assert out.getpixel((199, 50)) == label_color("")
    assert out.getpixel((170, 99)) == label_color("")


def test_label_on_filled_tag_above_box():
    out = draw(grey(), [box(50, 60, 150, 95, "cat")])
    assert out.getpixel((51, 59)) == label_color("cat")  # the tag's padding, right above the box
    assert out.getpixel((51, 20)) == GREY  # the tag is small


def test_tag_without_room_above_goes_inside_and_stays_in_image():
    label = "a long label near the corner"
    out = draw(grey(), [box(190, 0, 200, 30, label)])
    tag_columns = [x for x in range(200) if out.getpixel((x, 1)) == label_color(label)]
    assert min(tag_columns) < 100  # moved left so the whole tag fits
    assert max(tag_columns) == 199
    assert out.getpixel((150, 40)) == GREY  # inside the box's top, not below it


def test_long_multiline_label_is_shortened():
    label = "line one\n" + "word " * 100
    out = draw(grey(400, 200), [box(0, 100, 400, 200, label)])
    tag_columns = [x for x in range(400) if out.getpixel((x, 99)) == label_color(label)]
    assert max(tag_columns) < 399  # a tag of 40 characters, not 500


def test_point_is_a_filled_circle_with_outline():
    out = draw(grey(), [Detection(label="p", image=1, point=(100, 50))])
    color = label_color("p")
    assert out.getpixel((100, 50)) == color
    assert out.getpixel((105, 50)) == (255, 255, 255)  # outline
    assert out.getpixel((110, 50)) == GREY


def test_quad_is_drawn_as_polygon():
    (d,) = parse("<quad>(100,100),(900,100),(900,900),(100,900)</quad>", "qwen-vl", [(100, 100)])
    out = draw(grey(100, 100), [d])
    assert out.getpixel((10, 50)) == label_color("")
    assert out.getpixel((50, 50)) == GREY


def test_input_is_not_changed():
    image = grey()
    before = image.tobytes()
    out = draw(image, [box(20, 10, 120, 80, "cat"), Detection(label="p", image=1, point=(5, 5))])
    assert image.tobytes() == before and image.mode == "RGB"
    assert out is not image and out.tobytes() != before


def test_no_detections_gives_an_equal_copy():
    image = grey()
    out = draw(image, [])
    assert out is not image and out.tobytes() == image.tobytes()


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16", "CMYK"], ids=str)
def test_any_mode_gives_rgb(mode):
    image = Image.new(mode, (60, 40))
    before = image.tobytes()
    out = draw(image, [box(5, 5, 50, 30, "x")])
    assert out.mode == "RGB" and out.size == (60, 40)
    assert image.tobytes() == before


def test_transparent_pixels_become_white():
    out = draw(Image.new("RGBA", (40, 40), (255, 0, 0, 0)), [])
    assert out.getpixel((20, 20)) == (255, 255, 255)


def test_line_width_scales_with_image():
    assert line_width(200, 100) == 2
    assert line_width(2000, 2000) == 8
    big = draw(grey(2000, 2000), [box(200, 200, 1800, 1800)])
    assert big.getpixel((206, 1000)) == label_color("")  # inside an 8 px outline
    assert big.getpixel((209, 1000)) == GREY


@pytest.mark.parametrize(
    "size, fit, line, label",
    [
        ((451, 300), None, 2, 12),  # at its own size: the smallest readable
        ((4000, 3000), None, 14, 97),  # a big photo at its own size: grows with it
        ((451, 300), (520, 200), 3, 20),  # a chat thumbnail 200 px high: 1.5× smaller, so 1.5× thicker
        ((4000, 3000), (520, 200), 33, 195),  # 15× smaller on screen: ~2.2 px lines and ~13 px labels there
        ((200, 100), (520, 200), 2, 12),  # shown at its own size or larger: as at its own size
    ],
)
def test_lines_and_labels_are_sized_for_where_the_picture_is_shown(size, fit, line, label):
    assert (line_width(*size, fit), font_size(*size, fit)) == (line, label)


def test_a_big_photo_in_a_thumbnail_keeps_visible_lines():
    """Drawn for a 200 px high thumbnail, then shrunk to it as the browser would: the box still shows."""
    drawn = draw(grey(4000, 3000), [box(1000, 1000, 3000, 2500, "cat")], fit=(520, 200))
    thumbnail = drawn.resize((267, 200), Image.Resampling.LANCZOS)
    red = label_color("cat")
    edge = [thumbnail.getpixel((x, 120)) for x in range(60, 72)]  # the left edge, x = 1000 / 15 ≈ 67
    assert sum(sum(abs(a - b) for a, b in zip(p, red, strict=True)) < 90 for p in edge) >= 2  # at least 2 px in the label's colour
    with pytest.raises(ValueError):
        line_width(10, 10, (0, 5))


def test_label_colour_is_stable_across_processes():
    assert label_color("cat") == (255, 225, 25)  # crc32 based: fixed forever
    assert label_color("dog") == (245, 130, 48)
    assert label_color("") == PALETTE[0]
    code = "from grounding import label_color; print(label_color('cat'), label_color('红色的杯子'))"
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                       env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}).stdout
        for seed in ("1", "2")
    }
    assert outputs == {f"{label_color('cat')} {label_color('红色的杯子')}\n"}


def test_same_label_same_colour_in_one_drawing():
    out = draw(grey(), [box(10, 40, 60, 90, "cup"), box(110, 40, 160, 90, "cup")])
    assert out.getpixel((10, 60)) == out.getpixel((110, 60)) == label_color("cup")


def test_cjk_label_without_any_font(monkeypatch):
    monkeypatch.setattr(fonts, "find_cjk_font", lambda: None)
    out = draw(grey(), [box(20, 40, 120, 90, "红色的杯子"), Detection(label="击掌", image=1, point=(150, 50))])
    assert out.getpixel((21, 39)) == label_color("红色的杯子")  # the tag is still drawn


def test_cjk_label_with_a_font(monkeypatch):
    path = fonts.find_cjk_font() or "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    if not os.path.isfile(path):
        pytest.skip("no TrueType font on this machine")
    monkeypatch.setattr(fonts, "find_cjk_font", lambda: path)
    assert fonts.label_font("红色的杯子", 14).path == path
    out = draw(grey(), [box(20, 40, 120, 90, "红色的杯子")])
    assert out.getpixel((21, 39)) == label_color("红色的杯子")


def test_unreadable_font_falls_back(monkeypatch, tmp_path):
    broken = tmp_path / "broken.ttc"
    broken.write_bytes(b"not a font")
    monkeypatch.setattr(fonts, "find_cjk_font", lambda: str(broken))
    assert fonts.label_font("红色", 14) is fonts.default_font(14)
    draw(grey(), [box(20, 40, 120, 90, "红色")])


def test_latin_labels_use_default_font(monkeypatch):
    monkeypatch.setattr(fonts, "find_cjk_font", lambda: pytest.fail("not needed for Latin text"))
    assert fonts.label_font("café", 14) is fonts.default_font(14)


def test_font_finder_none_when_nothing_installed(monkeypatch):
    monkeypatch.setattr(fonts, "COMMON_CJK_FONT_PATHS", ())
    monkeypatch.setattr(fonts.shutil, "which", lambda name: None)
    assert fonts.find_cjk_font() is None


def test_font_finder_reads_fc_list(monkeypatch):
    monkeypatch.setattr(fonts, "COMMON_CJK_FONT_PATHS", ())
    monkeypatch.setattr(fonts.shutil, "which", lambda name: "/usr/bin/fc-list")
    monkeypatch.setattr(fonts.os.path, "isfile", lambda p: p.startswith("/fonts/"))
    calls = []

    def fake_run(args, **kwargs):
        calls.append((args, kwargs["timeout"]))
        return types.SimpleNamespace(stdout="/fonts/b.ttc: \n/fonts/a.ttf: \n\n")

    monkeypatch.setattr(fonts.subprocess, "run", fake_run)
    assert fonts.find_cjk_font() == "/fonts/a.ttf"
    assert fonts.find_cjk_font() == "/fonts/a.ttf"
    assert len(calls) == 1 and calls[0][0][1] == ":lang=zh" and calls[0][1] > 0  # cached, with a timeout


def test_font_finder_survives_fc_list_timeout(monkeypatch):
    monkeypatch.setattr(fonts, "COMMON_CJK_FONT_PATHS", ())
    monkeypatch.setattr(fonts.shutil, "which", lambda name: "/usr/bin/fc-list")

    def hang(args, **kwargs):
        raise subprocess.TimeoutExpired(args, kwargs["timeout"])

    monkeypatch.setattr(fonts.subprocess, "run", hang)
    assert fonts.find_cjk_font() is None


@pytest.mark.skipif(not (EXAMPLES / "coffee.png").exists(), reason="example photos not present")
def test_real_photo_end_to_end():
    photo = Image.open(EXAMPLES / "coffee.png")
    answer = (
        '```json\n[{"bbox_2d": [120, 60, 560, 380], "label": "cup"}, {"point_2d": [300, 200], "label": "handle"}]'
        "\n```"
    )
    detections = parse(answer, "qwen2.5-vl", [photo.size], [(616, 420)])
    before = photo.tobytes()
    out = draw(photo, [d for d in detections if d.image == 1])
    assert out.size == photo.size and photo.tobytes() == before
    x1 = detections[0].bbox[0]
    assert out.getpixel((round(x1), 250)) == label_color("cup")


def test_chinese_and_japanese_labels_render_with_the_installed_cjk_font():
    """With a CJK font on the system (CI installs fonts-wqy-microhei), labels are real glyphs, not boxes."""
    from PIL import ImageFont

    from grounding.fonts import find_cjk_font, label_font

    find_cjk_font.cache_clear()
    path = find_cjk_font()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no CJK font: CI must install fonts-wqy-microhei as the README says")
        pytest.skip("no CJK font installed")
    font = ImageFont.truetype(path, 24)
    cat, dog = font.getmask("猫"), font.getmask("狗")
    assert cat.getbbox() and bytes(cat) != bytes(dog)  # two different glyphs: the font has them
    assert getattr(label_font("写真の猫", 24), "path", None) == path
    image = Image.new("RGB", (200, 120), "white")
    drawn = draw(image, [Detection(label="猫", image=1, bbox=(20, 40, 180, 110))])
    assert drawn.tobytes() != image.tobytes()
