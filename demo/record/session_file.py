"""Saving a conversation to a JSON file and loading it back, images embedded as PNG.

A loaded file is untrusted: its structure is checked strictly, its texts and images are held
to the same limits as typed messages and uploads, its images are decoded by `demo.media.pictures` from
bytes (never from a path or URL the file names), and anything off refuses the whole file with
one sentence (`UploadError`). A live conversation's limits hold: its turns (`Limits.max_turns`)
and its text (`Limits.loaded_text_chars`) are counted before anything else, so a file of 60,000
turns is refused in a fraction of a second; numbers must be finite (no NaN, no Infinity, no 1e999)
and in range. Pixels are budgeted before any is decoded: every picture's and video frame's size is
read from its header first, each picture must be no larger than the model can be asked to see,
each video within a live video's budget, the videos together within one request's visual tokens
(as a live conversation's are), and all of them together within what a live conversation can keep
(`pixel_budget`). The file itself may be no larger than such a conversation saved (`max_file_bytes`).
Nothing is written until the whole file has been decoded and checked (`read_conversation`, then
`write_pictures`). Knows nothing of Gradio or of any engine.

A thinking model's reasoning is kept beside its answer (`reasoning`, `thought_seconds`), fields
added to version 1 without changing it: files written before have neither, and an answer of
theirs that holds a ``</think>`` is split into its reasoning and its answer when loaded. So are
the crops a model zoomed into (`zooms`: where in the answer, which picture, the region, the crop),
and the box a question is about (`region`: its picture, its box in that picture's pixels, its label;
checked to lie inside a picture seen by then).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from demo.media.pictures import DISPLAY_SIDE, UploadError, load_picture, probe_image
from demo.media.video import DEFAULT_SETTINGS as VIDEO_SETTINGS
from demo.media.video import SampledVideo
from demo.record.conversation import MAX_ZOOMS, Attachment, Conversation, Turn, Version, Zoom
from demo.record.limits import MB, LimitError, Limits
from demo.record.reasoning import CLOSE, split_reasoning
from demo.record.region import Region, check_region
from grounding.generations import GENERATIONS
from grounding.region_prompt import clean_label

FORMAT = "qwen-vl-chat/conversation"
VERSION = 1
_STATUSES = {"done", "stopped", "error"}
_FACTORS = {g.resize_factor for g in GENERATIONS}
_LARGEST_FACTOR = max(_FACTORS)


def largest_picture(limits: Limits) -> int:
    """The most pixels one loaded picture may have: what a live one can be kept at (the most the
    model can be asked to see one at, or a display size)."""
    return max(limits.max_visual_tokens * _LARGEST_FACTOR**2, DISPLAY_SIDE**2)


def pixel_budget(limits: Limits) -> int:
    """The most pixels a loaded conversation may hold, pictures and video frames together: what a live
    one can keep (the request's visual tokens' worth, twice for videos' frame pairs, plus a
    display-size picture for each image allowed)."""
    return 2 * limits.max_visual_tokens * _LARGEST_FACTOR**2 + limits.max_images * DISPLAY_SIDE**2


def max_file_bytes(limits: Limits) -> int:
    """The largest conversation file read: every pixel of the budget as an incompressible PNG (3
    bytes, plus PNG's framing) in base64, every character of text escaped (6 bytes), and room for
    each turn's and image's fields."""
    return pixel_budget(limits) * 4 * 4 // 3 + 6 * limits.loaded_text_chars + 4096 * limits.max_turns + 256 * 4096 * limits.max_images


def dump_conversation(conversation: Conversation) -> str:
    """The conversation as JSON text: questions, raw answers, statuses, images as PNG (base64), and
    each turn's other versions with the turns that followed them."""
    turns = [_dump_turn(turn) for turn in conversation.turns]
    return json.dumps({"format": FORMAT, "version": VERSION, "turns": turns}, ensure_ascii=False)


def _dump_turn(turn: Turn) -> dict:
    dumped = {**_dump_question(turn), "images": [_dump_attachment(attachment) for attachment in turn.attachments], **_dump_answer(turn)}
    if turn.versions:  # a version keeps the turn's pictures (an edit changes the words), not its own copy
        dumped["version"] = turn.version
        dumped["versions"] = [
            {"turn": {**_dump_question(v.turn), **_dump_answer(v.turn)}, "later": [_dump_turn(t) for t in v.later]} for v in turn.versions
        ]
    return dumped


def _dump_question(turn: Turn) -> dict:
    """The question's words, and the box it is about (None: the whole conversation's pictures)."""
    region = turn.region
    shown = None if region is None else {"picture": region.picture, "box": list(region.box), "label": region.label}
    return {"text": turn.text, "region": shown}


def _dump_answer(turn: Turn) -> dict:
    return {
        "answer": turn.answer,
        "reasoning": turn.reasoning,
        "thought_seconds": turn.thought_seconds,
        "status": turn.status if turn.status in _STATUSES else "stopped",  # an answer cut by saving mid-stream
        "error": turn.error,
        "input_sizes": [list(size) for size in turn.input_sizes],
        "zooms": [
            {"at": z.at, "source": z.source, "region_xyxy": list(z.region_xyxy), "reasoning": z.reasoning, "image": _dump_attachment(z.attachment)}
            for z in turn.zooms
        ],
    }


def _png64(image: Image.Image) -> str:
    png = io.BytesIO()
    image.save(png, format="PNG")
    return base64.b64encode(png.getvalue()).decode("ascii")


def _dump_attachment(attachment: Attachment) -> dict:
    if attachment.video is None:  # the picture as kept (what the model saw, or display size) and its size as sent
        return {"name": attachment.name, "png_base64": _png64(attachment.image), "original_wh": list(attachment.size_wh)}
    video = attachment.video  # its sampled frames: what the model saw
    return {
        "name": attachment.name,
        "kind": "video",
        "frames_png_base64": [_png64(frame) for frame in video.frames],
        "timestamps": list(video.timestamps),
        "source_wh": list(video.source_wh),
        "source_fps": video.source_fps,
        "duration": video.duration,
        "sample_fps": video.sample_fps,
        "factor": video.factor,
    }


@dataclass
class Loaded:
    """A conversation read and checked, and the files its attachments still need: for each, the
    PNG bytes that were decoded (a picture) or the strip of first frames to show (a video)."""

    conversation: Conversation
    files: list[tuple[Attachment, bytes | Image.Image]] = field(default_factory=list)


def load_conversation(path: str, limits: Limits, image_dir: Path) -> Conversation:
    """`read_conversation`, then `write_pictures` into `image_dir`."""
    return write_pictures(read_conversation(path, limits), image_dir)


def read_conversation(path: str, limits: Limits) -> Loaded:
    """Read and check a file `dump_conversation` wrote, decoding its pictures in memory.

    Nothing is written: `write_pictures` gives its pictures their files. Raises UploadError with
    one sentence for anything that is not such a file, or that is over the limits.
    """
    name = Path(path).name
    if Path(path).stat().st_size > max_file_bytes(limits):
        raise UploadError(f"{name} is too large to be a conversation this app saved.")
    try:
        data = json.loads(Path(path).read_text("utf-8"), parse_constant=_not_a_number)
        loaded = Loaded(Conversation())
        loaded.conversation = _conversation(data, limits, loaded.files)
        return loaded
    except UploadError as e:
        raise UploadError(f"{name} was not loaded: {e}") from None
    except (ValueError, RecursionError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise UploadError(f"{name} is not a conversation this app saved ({type(e).__name__}).") from None


def load_refusal(path: str, error: BaseException) -> str:
    """The sentence for a conversation file that could not be loaded (the conversation stays as it was)."""
    if isinstance(error, (UploadError, LimitError)):
        return str(error)
    name = Path(path).name
    if isinstance(error, OSError):  # its text may name the server's paths: only what went wrong
        return f"{name} was not loaded: the server could not read or write it ({error.strerror or type(error).__name__})."
    return f"{name} was not loaded: something in it could not be shown ({type(error).__name__})."


def _not_a_number(constant: str):
    raise UploadError(f"it holds {constant}, which is not a number")


def write_pictures(loaded: Loaded, image_dir: Path) -> Conversation:
    """Write the pictures `read_conversation` decoded (the bytes it checked) and the video strips
    into `image_dir`, point each attachment at its file, and return the conversation."""
    image_dir.mkdir(parents=True, exist_ok=True)
    for attachment, content in loaded.files:
        if isinstance(content, bytes):
            path = image_dir / f"{hashlib.sha256(content).hexdigest()[:24]}.png"  # our name: the file's name is only shown
            path.write_bytes(content)
        else:
            path = image_dir / f"strip-{hashlib.sha256(content.tobytes()).hexdigest()[:24]}.png"
            content.save(path, compress_level=1)  # a preview: quick to write beats small
        attachment.path = str(path)
    loaded.files.clear()
    return loaded.conversation


def _conversation(data: object, limits: Limits, files: list) -> Conversation:
    _expect(isinstance(data, dict) and data.get("format") == FORMAT, "it is not a conversation file of this app")
    _expect(data.get("version") == VERSION, f"it is version {data.get('version')!r}, this app reads version {VERSION}")
    raw_turns = data.get("turns")
    _expect(isinstance(raw_turns, list), "it has no list of turns")
    every = _every_turn(raw_turns, limits)
    _check_size(every, limits)
    _check_pixels(every, limits)
    turns = _turns(raw_turns, limits, files, _Count(), 0)
    _check_regions(turns, [])
    return Conversation(turns=turns)


@dataclass
class _Count:
    """What the turns read so far hold, every version's included: numbers them, and bounds their images."""

    turns: int = 0
    images: int = 0


def _every_turn(raw_turns: list, limits: Limits) -> list:
    """Every turn of the file, the hidden versions' and the turns after them included (at most one more
    than a conversation may hold: `_check_size` refuses that), walked without recursion."""
    found, pending = [], [raw_turns]
    while pending and len(found) <= limits.max_turns:
        items = pending.pop()
        for raw in items if isinstance(items, list) else []:
            found.append(raw)
            for version in raw.get("versions", []) if isinstance(raw, dict) and isinstance(raw.get("versions"), list) else []:
                if isinstance(version, dict):
                    found.append(version.get("turn"))
                    pending.append(version.get("later"))
    return found


def _turns(raw_turns: object, limits: Limits, files: list, count: _Count, pictures: int) -> list[Turn]:
    """The turns of a list (the conversation's, or those after a hidden version); `pictures`: the
    pictures before them, which their input sizes count."""
    _expect(isinstance(raw_turns, list), "a version has no list of the turns after it")
    turns = []
    for raw in raw_turns:
        count.turns += 1
        number = count.turns
        _expect(isinstance(raw, dict), f"turn {number} is not an object")
        raw_images = raw.get("images")
        _expect(isinstance(raw_images, list), f"turn {number} has no list of images")
        count.images += len(raw_images)
        _expect(count.images <= limits.max_images, f"it holds more than the {limits.max_images} images allowed")
        attachments = [_attachment(item, limits, number, files) for item in raw_images]
        pictures += sum(not a.is_video for a in attachments)
        turn = _turn(raw, attachments, limits, number, pictures, files)
        raw_versions = raw.get("versions", [])
        _expect(isinstance(raw_versions, list), f"turn {number} has malformed versions")
        for raw_version in raw_versions:
            _expect(isinstance(raw_version, dict) and isinstance(raw_version.get("turn"), dict), f"turn {number} has a malformed version")
            shown = _turn(raw_version["turn"], attachments, limits, number, pictures, files)
            later = _turns(raw_version.get("later"), limits, files, count, pictures + len(shown.zooms))
            turn.versions.append(Version(shown, later))
        pictures += len(turn.zooms)  # the crops sent back while it was answered are pictures too
        version = raw.get("version", 0)
        _expect(type(version) is int and 0 <= version <= len(turn.versions), f"turn {number} has a malformed version number")
        turn.version = version
        turns.append(turn)
    return turns


def _turn(raw: dict, attachments: list[Attachment], limits: Limits, number: int, pictures: int, files: list) -> Turn:
    """A turn's (or one of its versions') words, answer, status and zooms, checked; `pictures`: those seen
    by then (its own included, its crops not)."""
    text, answer, status, error = (raw.get(k) for k in ("text", "answer", "status", "error"))
    _expect(all(isinstance(v, str) for v in (text, answer, error)), f"turn {number} has a text that is not a string")
    _expect(status in _STATUSES, f"turn {number} has an unknown status")
    _expect(len(text) <= limits.max_prompt_chars, f"turn {number}'s question is over the length limit")
    _expect(len(answer) <= limits.max_answer_chars, f"turn {number}'s answer is too long")
    reasoning, answer, thought_seconds = _reasoning(raw, answer, limits, number)
    zooms = _zooms(raw.get("zooms", []), answer, limits, number, pictures, files)
    input_sizes = _sizes(raw.get("input_sizes", []), pictures + len(zooms), number)
    return Turn(
        text, attachments, answer=answer, reasoning=reasoning, thought_seconds=thought_seconds,
        status=status, error=error, input_sizes=input_sizes, zooms=zooms, region=_region(raw.get("region"), number),
    )


def _region(raw: object, number: int) -> Region | None:
    """A question's region: none, or a picture number, four whole pixels in order and a clean label
    (whether it lies inside a picture is checked once every turn is read: `_check_regions`)."""
    if raw is None:
        return None
    _expect(isinstance(raw, dict) and set(raw) <= {"picture", "box", "label"}, f"turn {number} has a malformed region")
    picture, box, label = raw.get("picture"), raw.get("box"), raw.get("label", "")
    ok = type(picture) is int and 1 <= picture <= 100_000 and isinstance(box, list) and len(box) == 4
    ok = ok and all(type(v) is int and 0 <= v < 100_000 for v in box) and box[0] < box[2] and box[1] < box[3]
    _expect(ok and isinstance(label, str) and label == clean_label(label), f"turn {number} has a malformed region")
    return Region(picture, tuple(box), label)


def _check_regions(turns: list[Turn], seen: list[tuple[int, int]]) -> None:
    """Each question's region lies inside a picture seen by then (`seen`: the pictures' sizes before
    `turns`), its own turn's uploads included; every version's, and the turns after them, too."""
    for turn in turns:
        own = seen + [a.size_wh for a in turn.attachments if not a.is_video]
        for version in [turn, *(v.turn for v in turn.versions)]:
            if version.region is not None:
                try:
                    check_region(version.region, own)
                except ValueError as e:
                    raise UploadError(f"a question's region is not on a picture: {str(e).rstrip('.')}") from None
        for version in turn.versions:
            _check_regions(version.later, own + [z.attachment.size_wh for z in version.turn.zooms])
        seen = own + [z.attachment.size_wh for z in turn.zooms]


def _zooms(raw: object, answer: str, limits: Limits, number: int, pictures: int, files: list) -> list[Zoom]:
    """A turn's zooms: each after the previous one in its answer, cropping a picture seen before it."""
    _expect(isinstance(raw, list) and len(raw) <= MAX_ZOOMS, f"turn {number} has malformed zooms")
    zooms: list[Zoom] = []
    for item in raw:
        _expect(isinstance(item, dict), f"a zoom of turn {number} is not an object")
        at, source, region, reasoning = (item.get(k) for k in ("at", "source", "region_xyxy", "reasoning"))
        after = zooms[-1].at if zooms else 0
        _expect(type(at) is int and after <= at <= len(answer), f"a zoom of turn {number} is not in its answer")
        _expect(type(source) is int and 1 <= source <= pictures + len(zooms), f"a zoom of turn {number} names no picture")
        ok = isinstance(region, list) and len(region) == 4 and all(type(v) is int and 0 <= v < 100_000 for v in region)
        _expect(ok and isinstance(reasoning, str) and len(reasoning) <= limits.max_answer_chars, f"a zoom of turn {number} is malformed")
        attachment = _attachment(item.get("image"), limits, number, files)
        _expect(not attachment.is_video, f"a zoom of turn {number} is not a picture")
        zooms.append(Zoom(at=at, source=source, region_xyxy=tuple(region), attachment=attachment, reasoning=reasoning))
    return zooms


def _check_size(raw_turns: list, limits: Limits) -> None:
    """Refuse a file of more turns, or more text, than a live conversation may hold (before anything
    else); `raw_turns`: every turn, the hidden versions' included."""
    _expect(len(raw_turns) <= limits.max_turns, f"it has {len(raw_turns):,} turns, more than the {limits.max_turns:,} a conversation may have")
    fields = ("text", "answer", "reasoning", "error")
    chars = sum(len(v) for raw in raw_turns if isinstance(raw, dict) for v in map(raw.get, fields) if isinstance(v, str))
    _expect(chars <= limits.loaded_text_chars, f"it holds {chars:,} characters of text, more than the {limits.loaded_text_chars:,} a conversation may hold")


def _check_pixels(raw_turns: list, limits: Limits) -> None:
    """Refuse a file whose pictures and frames, by their headers, are over the pixel budget, or whose
    videos together cost more visual tokens than a request may have (nothing decoded)."""
    total, video_tokens = 0, 0
    for number, raw in enumerate(raw_turns, 1):
        items = raw.get("images") if isinstance(raw, dict) else None
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue  # refused with its own sentence later
            if item.get("kind") == "video":
                frames = item.get("frames_png_base64")
                _expect(isinstance(frames, list) and len(frames) <= 256, f"a video of turn {number} has a wrong frame count")
                sizes = [_probe(f, number) for f in frames]
                pixels = sum(w * h for w, h in sizes)
                _expect(pixels <= VIDEO_SETTINGS.total_pixels, f"a video of turn {number} has more pixels than a video may have")
                factor = item.get("factor") if item.get("factor") in _FACTORS else min(_FACTORS)
                video_tokens += pixels // (2 * factor * factor)  # a frame pair's tokens: its pixels over factor²
                _expect(
                    video_tokens <= limits.max_visual_tokens,
                    f"its videos cost more than the {limits.max_visual_tokens:,} visual tokens a request may have",
                )
            else:
                w, h = _probe(item.get("png_base64"), number)
                pixels = w * h
                _expect(pixels <= largest_picture(limits), f"a picture of turn {number} is {w}×{h}, larger than a picture may be kept")
            total += pixels
            _expect(total <= pixel_budget(limits), "its pictures and videos hold more pixels than a conversation may keep")


def _reasoning(raw: dict, answer: str, limits: Limits, turn: int) -> tuple[str, str, float | None]:
    """(reasoning, answer, thought seconds) of a saved turn; a file from before splits its answer."""
    if "reasoning" not in raw:
        if CLOSE not in answer:
            return "", answer, None
        split = split_reasoning(answer)
        return split.reasoning, split.answer, None
    reasoning, seconds = raw["reasoning"], raw.get("thought_seconds")
    _expect(isinstance(reasoning, str), f"turn {turn} has a reasoning that is not a string")
    _expect(len(reasoning) <= limits.max_answer_chars, f"turn {turn}'s reasoning is too long")
    _expect(seconds is None or _number(seconds), f"turn {turn} has a malformed thinking time")
    return reasoning, answer, None if seconds is None else float(seconds)


def _probe(encoded: object, turn: int) -> tuple[int, int]:
    """A picture's size from its PNG header alone."""
    png = _png_bytes(encoded, turn)
    try:
        return probe_image(png)
    except UploadError:
        raise UploadError(f"an image of turn {turn} cannot be decoded") from None


def _png_bytes(encoded: object, turn: int) -> bytes:
    _expect(isinstance(encoded, str), f"an image of turn {turn} is malformed")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise UploadError(f"an image of turn {turn} is not valid base64") from None


def _attachment(item: object, limits: Limits, turn: int, files: list) -> Attachment:
    _expect(isinstance(item, dict), f"an image of turn {turn} is not an object")
    if item.get("kind") == "video":
        return _video(item, limits, turn, files)
    name, encoded = item.get("name"), item.get("png_base64")
    _expect(isinstance(name, str) and isinstance(encoded, str), f"an image of turn {turn} is malformed")
    _expect(len(encoded) <= limits.max_image_mb * MB * 4 / 3 + 4, f"an image of turn {turn} is over the size limit")
    original = item.get("original_wh")
    _expect(original is None or _is_size(original), f"an image of turn {turn} has a malformed size")
    png = _png_bytes(encoded, turn)
    image = _decode(png, turn, keep_all=False)  # kept at display size: the model's size is decoded from the file when needed
    attachment = Attachment(path="", image=image, name=_name(name), original_wh=tuple(original) if original else None)
    files.append((attachment, png))
    return attachment


def _decode(png: bytes, turn: int, keep_all: bool) -> Image.Image:
    try:
        return load_picture(png, keep_all=keep_all)[0]
    except UploadError:
        raise UploadError(f"an image of turn {turn} cannot be decoded") from None


def _name(name: str) -> str:
    return Path(name.replace("\\", "/")).name[:200]


def _video(item: dict, limits: Limits, turn: int, files: list) -> Attachment:
    """A saved video: its sampled frames (shown as a strip of the first few), and where they came from."""
    frames64, timestamps, name = item.get("frames_png_base64"), item.get("timestamps"), item.get("name")
    numbers = [item.get(k) for k in ("source_fps", "duration", "sample_fps")]
    _expect(isinstance(name, str) and isinstance(frames64, list) and isinstance(timestamps, list), f"a video of turn {turn} is malformed")
    _expect(2 <= len(frames64) <= 256 and len(frames64) % 2 == 0 and len(timestamps) == len(frames64), f"a video of turn {turn} has a wrong frame count")
    _expect(all(_number(v) for v in numbers + timestamps), f"a video of turn {turn} is malformed")
    _expect(numbers[2] > 0, f"a video of turn {turn} has a sampling rate of {numbers[2]} frames per second")
    factor = item.get("factor")
    _expect(factor in _FACTORS and _is_size(item.get("source_wh")), f"a video of turn {turn} is malformed")
    _expect(all(isinstance(f, str) for f in frames64), f"a video of turn {turn} is malformed")
    frames = [_decode(_png_bytes(f, turn), turn, keep_all=True) for f in frames64]
    _expect(len({f.size for f in frames}) == 1, f"a video of turn {turn} has frames of different sizes")
    _expect(frames[0].width % factor == 0 and frames[0].height % factor == 0, f"a video of turn {turn} has frames of a size the model cannot take")
    shown = _strip_frame(frames[0].size)
    strip = Image.new("RGB", (shown[0] * min(8, len(frames)), shown[1]))
    for i, frame in enumerate(frames[:8]):
        strip.paste(frame if frame.size == shown else frame.resize(shown, Image.Resampling.BILINEAR), (i * shown[0], 0))
    video = SampledVideo(
        frames=tuple(frames), timestamps=tuple(float(t) for t in timestamps), frame_wh=frames[0].size,
        source_wh=tuple(item["source_wh"]), source_fps=float(numbers[0]), duration=float(numbers[1]),
        sample_fps=float(numbers[2]), factor=item["factor"],
    )
    _expect(video.visual_tokens <= limits.max_visual_tokens, f"a video of turn {turn} costs more visual tokens than allowed")
    attachment = Attachment(path="", video=video, name=_name(name))
    files.append((attachment, strip))
    return attachment


def _strip_frame(size: tuple[int, int], height: int = 256) -> tuple[int, int]:
    """A frame's size in the strip that shows a loaded video: at most `height` pixels high."""
    w, h = size
    return (w, h) if h <= height else (max(1, round(w * height / h)), height)


def _number(value: object) -> bool:
    """A finite number of seconds, frames per second or the like: 0 <= value < 10**7."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value < 10**7


def _is_size(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(type(v) is int and 0 < v < 100_000 for v in value)


def _sizes(raw: object, pictures_so_far: int, turn: int) -> list[tuple[int, int]]:
    """A turn's input sizes: none, or one positive (width, height) per picture seen so far (videos have none)."""
    _expect(isinstance(raw, list) and len(raw) in (0, pictures_so_far), f"turn {turn} has malformed input sizes")
    sizes = []
    for size in raw:
        ok = isinstance(size, list) and len(size) == 2 and all(type(v) is int and 0 < v < 100_000 for v in size)
        _expect(ok, f"turn {turn} has malformed input sizes")
        sizes.append((size[0], size[1]))
    return sizes


def _expect(condition: bool, reason: str) -> None:
    if not condition:
        raise UploadError(reason)
