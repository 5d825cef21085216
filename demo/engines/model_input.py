"""What an answer sends the model: uploads decoded and checked, what each costs, the messages.

Plain functions of an engine, the limits and a conversation, used by `demo.page.handlers` before a
turn is added (to refuse what the model cannot take with one sentence) and when the answer
starts. Each picture goes to the engine at exactly the size its `VisionCost` says, so the
engine's own resize leaves it as it is and the boxes' sizes are the ones the model saw.

What it does not know: sessions, Gradio, the page.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from demo.engines.base import Engine, GenerationSettings
from demo.media.pictures import UploadError, is_image_file, load_picture
from demo.media.video import VideoSettings, is_video_file
from demo.media.video_decode import sample_video
from demo.record.conversation import Attachment, Conversation, VisionCost, to_model_messages
from demo.record.limits import Limits


def upload_size(path: str) -> int:
    """The upload's size in bytes; UploadError (one sentence) when it is gone."""
    try:
        return Path(path).stat().st_size
    except OSError:
        raise UploadError(f"{Path(path).name} could not be read (the upload is gone; send it again).") from None


def attach(path: str, video_settings: VideoSettings, engine: Engine | None, settings: GenerationSettings) -> Attachment:
    """Decode and check an upload; a picture is kept at the size the model sees it at (or a display
    size while no engine is loaded), a video as its frames sampled with `video_settings`."""
    name = Path(path).name
    if is_video_file(path):
        return Attachment(path=path, video=sample_video(path, video_settings), name=name)
    if not is_image_file(path):
        raise UploadError(
            f"{name} is not an image or a video; this app takes PNG, JPEG, WebP, GIF, BMP, TIFF, "
            "MP4, WebM, MOV, MKV and AVI files."
        )
    need = (lambda size: engine.vision_cost(size, settings).input_wh) if engine is not None else None
    image, original = load_picture(path, need=need)
    return Attachment(path=path, image=image, name=name, original_wh=original)


def text_chars(conversation: Conversation) -> int:
    """The characters of text the conversation holds: questions, answers, reasoning and error texts."""
    return sum(len(t.text) + len(t.answer) + len(t.reasoning) + len(t.error) for t in conversation.turns)


def vision_costs(engine: Engine, uploads: list[Attachment], settings: GenerationSettings, limits: Limits) -> list[VisionCost]:
    """What each upload costs the model; EngineError or LimitError when it cannot take them."""
    costs = [
        VisionCost(a.video.frame_wh, a.video.visual_tokens) if a.is_video else engine.vision_cost(a.size_wh, settings)
        for a in uploads
    ]
    limits.check_visual_tokens(sum(cost.tokens for cost in costs))
    return costs


def model_messages(conversation: Conversation, settings: GenerationSettings, costs: list[VisionCost], family: str = "") -> list[dict]:
    """The model's messages, each picture at exactly the size its cost says (`costs`: one per upload),
    a question about a region holding it in `family`'s format, at those sizes."""
    seen = [cost.input_wh for a, cost in zip(conversation.attachments(), costs, strict=True) if not a.is_video]
    messages = to_model_messages(conversation, settings.system_prompt, family, seen)
    sizes = iter(seen)
    for part in (p for m in messages for p in m["content"] if p.get("type") == "image"):
        size = next(sizes)
        if part["image"].size != size:
            part["image"] = part["image"].resize(size, Image.Resampling.BICUBIC)
    return messages


def check_request(engine: Engine, conversation: Conversation, settings: GenerationSettings, limits: Limits) -> None:
    """LimitError (or EngineError) if answering `conversation`'s last turn is over a limit."""
    costs = vision_costs(engine, conversation.attachments(), settings, limits)
    limits.check_prompt_tokens(engine.count_tokens(model_messages(conversation, settings, costs, engine.family), settings))
