"""Our image sizes and video frames against qwen-vl-utils 0.0.14, the Qwen team's reference.

qwen-vl-utils is what the model cards use to prepare pictures and videos; the app does not run it
(it fetches any URL or path named in a message, and its torchvision video reader fails on
torchvision 0.29), so here it only ever gets numbers and PIL images this test made itself, and
videos as lists of frames. Every row says whether we agree with it, and when we do not, why
(the README's "qwen-vl-utils" section says the same in prose):

- images: `demo.media.resize.smart_resize` is transformers' rule (what the processor applies),
  which differs from qwen-vl-utils' own `smart_resize` only for sides that round to zero;
  our default cap is 1,280 visual tokens a picture, qwen-vl-utils' 16,384.
- frame counts (`frame_count` vs `smart_nframes`): nearest even count against rounding down,
  at least 2 frames against 4, 64 frames at most by default against 768, a frame repeated
  to make an even count against one dropped, and our pixel budget drops frames.
- frame sizes (`frame_size` vs `fetch_video`): our budget counts every frame, qwen-vl-utils'
  each pair of frames once and lets 1.05 × min_pixels win over it; its list-of-frames path
  resizes each frame first to multiples of twice the factor.
- timing: its list-of-frames metadata puts frame i at i / sample_fps s; ours, at the frame's
  real time.
"""

from __future__ import annotations

import pytest
import qwen_vl_utils  # requirements-test.txt; it imports torch and torchvision itself
from PIL import Image
from qwen_vl_utils.vision_process import (
    IMAGE_MAX_TOKEN_NUM,
    IMAGE_MIN_TOKEN_NUM,
    fetch_image,
    fetch_video,
    smart_nframes,
)

from demo.media.resize import smart_resize
from demo.media.video import SampledVideo, VideoSettings, frame_count, frame_size, video_metadata
from grounding.generations import generation

PATCHES = {"qwen2-vl": 14, "qwen2.5-vl": 14, "qwen3-vl": 16, "qwen3.5": 16}
FAMILIES = tuple(PATCHES)


def test_the_patch_sizes_are_the_registry_s():
    for family, patch in PATCHES.items():
        g = generation(family)
        assert (g.patch_size, g.merge_size, g.resize_factor) == (patch, 2, 2 * patch)


def _factor(family: str) -> int:
    return generation(family).resize_factor


# -- images: the resize rule -----------------------------------------------------------------------

# (what, height, width, min_pixels in factor² units, max_pixels in factor² units, agree)
# `agree` False rows say why in their comment; sizes given as ("f", k) are k × factor.
IMAGE_ROWS = [
    ("a photo", 427, 640, 4, 1280, True),
    ("exact multiples", ("f", 12), ("f", 16), 4, 1280, True),
    ("exact multiples at the cap", ("f", 32), ("f", 40), 4, 1280, True),
    ("tiny: both scale up to the minimum", 10, 10, 4, 1280, True),
    ("huge: both scale down to the cap", 6000, 8000, 4, 1280, True),
    ("rounding up overshoots the cap: both round down", 1004, 1004, 4, 1280, True),
    ("199:1, both sides nonzero when rounded", ("f", 1), ("f", 199), 4, 1280, True),
    # A side under factor / 2 rounds to 0. transformers (and so the processor, and we) keep the 0,
    # find 0 pixels under min_pixels and scale the whole image up to min_pixels: 13×2600 becomes
    # f×(about 30 f). qwen-vl-utils first clamps the side to one factor (`max(factor, round(...))`)
    # and keeps the long side: 13×2600 becomes f×2604 (28) or f×2592 (32).
    ("a thin strip: a side rounds to zero", 13, 2600, 4, 1280, False),
    # Same clamp, under a small max_pixels: transformers' scale-down branch keeps at least one
    # factor per side (`max(factor, floor(...))`) and exceeds max_pixels; qwen-vl-utils' floors
    # the short side to 0 (an image the processor cannot take).
    ("extreme aspect under a small cap", ("f", 1), ("f", 200), 1, 125, False),
]


def _side(value, factor: int) -> int:
    return value[1] * factor if isinstance(value, tuple) else value


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("what, height, width, min_units, max_units, agree", IMAGE_ROWS, ids=[r[0] for r in IMAGE_ROWS])
def test_image_sizes_follow_its_smart_resize(family, what, height, width, min_units, max_units, agree):
    f = _factor(family)
    h, w = _side(height, f), _side(width, f)
    ours = smart_resize(h, w, f, min_units * f * f, max_units * f * f)
    theirs = qwen_vl_utils.smart_resize(h, w, f, min_units * f * f, max_units * f * f)
    assert ours[0] % f == 0 and ours[1] % f == 0
    if agree:
        assert ours == theirs
        return
    assert ours != theirs
    assert min(theirs) in (0, f)  # its clamp is the only cause: its short side is 0 or one factor
    assert min(ours) == f


@pytest.mark.parametrize("family", FAMILIES)
def test_both_refuse_an_aspect_ratio_above_200(family):
    f = _factor(family)
    for rule in (smart_resize, qwen_vl_utils.smart_resize):
        with pytest.raises(ValueError, match="aspect ratio"):
            rule(10, 2010, f, 4 * f * f, 1280 * f * f)


@pytest.mark.parametrize("family", FAMILIES)
def test_fetch_image_resizes_like_our_rule_given_the_same_bounds(family):
    # fetch_image itself (PIL images only: never a string), with its patch size per generation.
    f, patch = _factor(family), PATCHES[family]
    for w, h in ((640, 427), (1000, 30), (333, 333)):
        image = Image.new("RGB", (w, h), "gray")
        got = fetch_image({"image": image, "min_pixels": 4 * f * f, "max_pixels": 1280 * f * f}, image_patch_size=patch)
        assert got.size == tuple(reversed(smart_resize(h, w, f, 4 * f * f, 1280 * f * f)))


@pytest.mark.parametrize("family", FAMILIES)
def test_its_default_cap_is_16384_tokens_ours_1280(family):
    # Deliberate: a 2000×1500 photo keeps its size at qwen-vl-utils' default cap (16,384 tokens'
    # worth of pixels): about 3,800 visual tokens (patch 14), 2,900 (patch 16). Ours caps at 1,280
    # (DEFAULT_MAX_VISUAL_TOKENS, Qwen's own advice for a manageable prompt) unless --max-pixels
    # raises it. Both floors are 4 tokens' worth (our engine's: the checkpoint's own min_pixels).
    f, patch = _factor(family), PATCHES[family]
    assert (IMAGE_MIN_TOKEN_NUM, IMAGE_MAX_TOKEN_NUM) == (4, 16384)
    from demo.media.resize import DEFAULT_MAX_VISUAL_TOKENS

    image = Image.new("RGB", (2000, 1500), "gray")
    theirs = fetch_image({"image": image}, image_patch_size=patch).size
    ours_h, ours_w = smart_resize(1500, 2000, f, 4 * f * f, DEFAULT_MAX_VISUAL_TOKENS * f * f)
    assert theirs[0] * theirs[1] // (f * f) > 2 * DEFAULT_MAX_VISUAL_TOKENS
    assert ours_h * ours_w // (f * f) <= DEFAULT_MAX_VISUAL_TOKENS


# (width, height, how fetch_image compares): images given to each generation's real engine, whose
# bounds are the checkpoint's own size["shortest_edge"] and the smaller of its size["longest_edge"]
# and 1,280 tokens (the tiny checkpoints' longest_edge is 64 tokens' worth).
ENGINE_IMAGES = [
    (640, 427, "same"),
    (1000, 1000, "same"),  # both scale down to the cap
    (64, 64, "same"),  # both scale up to the minimum
    # A side under half a factor (see IMAGE_ROWS): it clamps the side to one factor and keeps the
    # long side (28×588 / 32×608); transformers, and so the processor and we, scale the whole
    # image to min_pixels (28×392 / 32×448).
    (600, 13, "differs"),
    # Under this small cap its scale-down floors the short side to 0 and PIL refuses the resize;
    # we keep one factor (28×1932 / 32×2208), as the processor does.
    (3000, 40, "raises"),
]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_engines_vision_cost_against_fetch_image(family, tiny_checkpoints):
    from demo.engines.base import GenerationSettings

    engine = tiny_checkpoints.engine(generation(family).tiny_checkpoint)
    f, patch = engine.resize_factor, PATCHES[family]
    assert engine.patch_size == patch
    bounds = {"min_pixels": engine.default_min_pixels, "max_pixels": engine.default_max_pixels}
    for w, h, relation in ENGINE_IMAGES:
        cost = engine.vision_cost((w, h), GenerationSettings())
        assert cost.tokens == (cost.input_wh[0] // f) * (cost.input_wh[1] // f)
        image = Image.new("RGB", (w, h), "gray")
        if relation == "raises":
            assert min(cost.input_wh) == f
            with pytest.raises(ValueError, match="must be > 0"):
                fetch_image({"image": image, **bounds}, image_patch_size=patch)
            continue
        theirs = fetch_image({"image": image, **bounds}, image_patch_size=patch).size
        assert (cost.input_wh == theirs) is (relation == "same"), (w, h, cost.input_wh, theirs)


# -- videos: how many frames -----------------------------------------------------------------------

# (what, source frames, source fps, sample fps, max_frames, ours, theirs): `frame_count` against
# `smart_nframes({"fps": ..., "max_frames": ...}, total_frames, video_fps)`.
FRAME_COUNT_ROWS = [
    ("10 s at 30 fps, 2 a second", 300, 30.0, 2.0, 64, 20, 20),
    ("rocket-launch.mp4: 4 s at 12 fps", 48, 12.0, 2.0, 64, 8, 8),
    ("long: both stop at max_frames", 30000, 30.0, 2.0, 64, 64, 64),
    # At least 2 frames (one temporal patch) here; qwen-vl-utils takes at least FPS_MIN_FRAMES = 4.
    ("1 s clip: our minimum is 2, its 4", 30, 30.0, 2.0, 64, 2, 4),
    # duration × fps = 5.2: we round to the nearest even count, it rounds down to even.
    ("2.6 s: nearest even vs rounding down", 65, 25.0, 2.0, 64, 6, 4),
    ("NTSC: 59.99 s, 1 a second", 1798, 29.97, 1.0, 64, 60, 58),
    # 1.5 s at 4 a second asks for 6 frames of a source that has 3: we take its 3 and repeat the
    # last (an even count, as transformers' patchify would pad it); it rounds down to 2.
    ("3 source frames, 4 a second asked", 3, 2.0, 4.0, 64, 4, 2),
]


@pytest.mark.parametrize(
    "what, total, source_fps, fps, max_frames, ours, theirs", FRAME_COUNT_ROWS, ids=[r[0] for r in FRAME_COUNT_ROWS]
)
def test_frame_counts_against_smart_nframes(what, total, source_fps, fps, max_frames, ours, theirs):
    settings = VideoSettings(fps=fps, max_frames=max_frames)
    assert frame_count(total / source_fps, total, settings) == ours
    assert smart_nframes({"fps": fps, "max_frames": max_frames}, total_frames=total, video_fps=source_fps) == theirs


def test_frame_counts_agree_wherever_the_count_is_even_and_in_range():
    # A sweep: whenever duration × fps is an even number within [4, max_frames] and the source has
    # that many frames, both rules give it; elsewhere they differ by the rounding alone (2 frames).
    seen = 0
    for source_fps in (10.0, 24.0, 25.0, 30.0, 60.0):
        for total in range(int(source_fps), int(source_fps) * 40, 7):
            for fps in (0.5, 1.0, 2.0, 4.0):
                settings = VideoSettings(fps=fps, max_frames=64)
                ours = frame_count(total / source_fps, total, settings)
                theirs = smart_nframes({"fps": fps, "max_frames": 64}, total_frames=total, video_fps=source_fps)
                wanted = total / source_fps * fps
                if wanted.is_integer() and wanted % 2 == 0 and 4 <= wanted <= 64:
                    assert ours == theirs == wanted
                    seen += 1
                elif 4 <= wanted <= 64:
                    assert 0 <= ours - theirs <= 2  # nearest even vs rounding down
    assert seen > 20


def test_its_default_max_frames_is_768_ours_64():
    # Deliberate: a 10-minute video at 2 frames a second is 1,200 frames wanted; qwen-vl-utils'
    # default takes 768 (about 200,000 visual tokens at its minimum frame size), ours 64 (the
    # Settings slider goes to 128), within our 4,096-token budget.
    assert smart_nframes({"fps": 2.0}, total_frames=18000, video_fps=30.0) == 768
    assert frame_count(600.0, 18000, VideoSettings()) == 64


def test_a_one_frame_video_is_refused_by_it_and_doubled_by_us():
    # Deliberate: a one-frame video (a still saved as MP4) is two identical frames for us (one
    # temporal patch); smart_nframes raises "nframes should in interval [2, 1]".
    assert frame_count(0.04, 1, VideoSettings()) == 2
    with pytest.raises(ValueError, match="nframes"):
        smart_nframes({"fps": 2.0}, total_frames=1, video_fps=25.0)


def test_our_budget_drops_frames_where_it_shrinks_them_below_its_floor():
    # Deliberate: with a budget of 6 minimum-size frames and 20 frames wanted, we sample 6 frames;
    # qwen-vl-utils samples 20 and floors their size at 1.05 × min_pixels, over 3× the budget.
    settings = VideoSettings(total_pixels=6 * 128 * 28 * 28)
    assert frame_count(10.0, 300, settings) == 6
    assert smart_nframes({"fps": 2.0, "max_frames": 64}, total_frames=300, video_fps=30.0) == 20
    frames = [Image.new("RGB", (448, 336), "gray")] * 20
    video = fetch_video({"video": frames, "min_pixels": settings.min_pixels, "total_pixels": settings.total_pixels})
    _, _, h, w = video.shape
    assert 20 * h * w > 3 * settings.total_pixels


# -- videos: how big each frame is -----------------------------------------------------------------

# (what, source (w, h) in factors, frames, agree with its budget as given, agree with half of it)
# `frame_size(source, n, VideoSettings(factor=f))` against qwen-vl-utils' `fetch_video` on a list of
# n PIL frames of the source's size, with our min_pixels, max_pixels and total_pixels. Sources are
# multiples of 2 × factor within max_pixels, so that its first pass over each frame (the last row)
# leaves them alone and the rows compare the video rule itself.
FRAME_SIZE_ROWS = [
    ("4:3, few frames: max_pixels decides", (16, 12), 4, True, True),
    ("16:9, few frames: max_pixels decides", (16, 9), 4, True, True),
    # The budget decides. Ours counts every frame (n × w × h <= total_pixels); qwen-vl-utils counts
    # each pair of frames once (total_pixels / n × 2 a frame): with half our budget it gives ours.
    ("16:10, 16 frames: the budget decides", (16, 10), 16, False, True),
    ("tiny frames scale up to min_pixels", (6, 4), 4, True, True),
    # Its list-of-frames path first runs fetch_image(frame, image_factor) on every frame:
    # fetch_image takes a *patch size* there and multiplies it by 2, so each frame is first
    # rounded to multiples of 2 × factor (56 or 64), here 1 factor high becomes 2. Ours stays.
    ("200:1, one factor high", (200, 1), 4, False, False),
]


@pytest.mark.parametrize("family", ("qwen2-vl", "qwen3-vl"))  # the two factors, 28 and 32
@pytest.mark.parametrize("what, source, n, agree, agree_half", FRAME_SIZE_ROWS, ids=[r[0] for r in FRAME_SIZE_ROWS])
def test_frame_sizes_against_fetch_video(family, what, source, n, agree, agree_half):
    f, patch = _factor(family), PATCHES[family]
    settings = VideoSettings(factor=f)
    source_wh = (source[0] * 2 * f, source[1] * 2 * f) if source[1] > 1 else (source[0] * f, f)
    ours = frame_size(source_wh, n, settings)
    assert n * ours[0] * ours[1] <= settings.total_pixels
    frames = [Image.new("RGB", source_wh, "gray")] * n
    for total, expected in ((settings.total_pixels, agree), (settings.total_pixels / 2, agree_half)):
        ele = {
            "video": frames,
            "min_pixels": settings.min_pixels,
            "max_pixels": settings.max_pixels,
            "total_pixels": total,
        }
        _, _, h, w = fetch_video(ele, image_patch_size=patch).shape
        assert ((w, h) == ours) is expected, (total, (w, h), ours)
        if not expected and total == settings.total_pixels and source[1] > 1:
            assert n * w * h > settings.total_pixels  # it spends twice our budget


@pytest.mark.parametrize("family", ("qwen2-vl", "qwen3-vl"))
def test_its_frame_list_path_resizes_frames_we_keep(family):
    # Frames the app sampled (sides multiples of the factor, here odd multiples: 15 × 9 factors)
    # given to its list-of-frames path come back rounded to multiples of 2 × factor (16 × 8): a
    # different size and shape. The app hands the processor its frames as they are.
    f, patch = _factor(family), PATCHES[family]
    settings = VideoSettings(factor=f)
    frames = [Image.new("RGB", (15 * f, 9 * f), "gray")] * 4
    assert frame_size((15 * f, 9 * f), 4, settings) == (15 * f, 9 * f)
    ele = {"video": frames, "min_pixels": settings.min_pixels, "max_pixels": settings.max_pixels}
    _, _, h, w = fetch_video(ele, image_patch_size=patch).shape
    assert (w, h) == (16 * f, 8 * f)


def test_its_frame_list_timing_starts_at_zero_ours_at_the_frames_real_times():
    # Both give the processor the same sampled fps (so Qwen2.5-VL's seconds per grid agree), but
    # its list-of-frames metadata puts frame i at i / sample_fps (fps = sample_fps, frames_indices
    # = 0, 1, 2...) while ours puts each frame at its time in the video: for 4 frames sampled from
    # a 4 s video, 0, 1, 2, 3 s there against 0.5, 1.5, 2.5, 3.5 s here (the middle of each second).
    frames = tuple(Image.new("RGB", (56, 56), "gray") for _ in range(4))
    video = SampledVideo(
        frames=frames,
        timestamps=(0.5, 1.5, 2.5, 3.5),
        frame_wh=(56, 56),
        source_wh=(56, 56),
        source_fps=12.0,
        duration=4.0,
        sample_fps=1.0,
    )
    _, theirs = fetch_video({"video": list(frames), "sample_fps": 1.0}, return_video_metadata=True)
    ours = video_metadata(video)

    def times(meta):
        return [i / meta["fps"] for i in meta["frames_indices"]]

    def sampled_fps(meta):
        return len(meta["frames_indices"]) / meta["total_num_frames"] * meta["fps"]

    assert sampled_fps(ours) == pytest.approx(sampled_fps(theirs)) == pytest.approx(1.0)
    assert times(theirs) == [0.0, 1.0, 2.0, 3.0]
    assert times(ours) == pytest.approx([0.5, 1.5, 2.5, 3.5])
