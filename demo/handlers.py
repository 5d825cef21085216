"""The chat's event handlers: plain methods from (message, conversation, settings) to a `Reply`.

`ChatHandlers` holds the engine slot shared by every session and the Stop switches of the
answers being generated; each session's conversation arrives as an argument (a `gr.State`)
and goes back out in a `Reply`: the conversation record, the grounding family to read it
with, and a notice when something was refused. What the page shows is derived from a Reply
by `ChatPage.render` in `demo/ui.py` (through `demo/views.py`), so no handler knows the page's layout.
Streaming handlers are generators: Gradio closes them when the person presses Stop or closes
the tab, and their `finally:` stops the generation. The only Gradio things used here are
`gr.Request` (to know the session), `gr.Error` and `gr.Warning`.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr

from demo.conversation import Attachment, Conversation, Turn, VisionCost, to_model_messages
from demo.engines.base import Engine, EngineError, GenerationSettings
from demo.engines.slot import EngineSlot
from demo.export import write_exports
from demo.ground_truth import References
from demo.limits import LimitError, Limits
from demo.media.pictures import UploadError, is_image_file, load_image
from demo.media.video import VideoSettings, is_video_file
from demo.media.video_decode import sample_video
from demo.session_file import dump_conversation, load_conversation
from demo.settings import Settings
from grounding.generations import generation as generation_of
from grounding.generations import grounding_prompt

log = logging.getLogger(__name__)

EMPTY_MESSAGE: dict = {"text": "", "files": []}  # the textbox, cleared


@dataclass
class Reply:
    """What a handler gives the page: the conversation and how to show it.

    `notice` is one sentence saying why something was refused (shown after the chat; the
    conversation is unchanged); `waiting` replaces the pending answer while the model loads;
    `message` is the textbox's new content, None to leave what the person is typing alone.
    """

    conversation: Conversation
    family: str
    notice: str = ""
    waiting: str = ""
    message: dict | None = None


class ChatHandlers:
    """Handlers for one app; one instance serves every session."""

    def __init__(self, slot: EngineSlot, *, limits: Limits | None = None, min_update_interval: float = 0.05) -> None:
        self.slot = slot
        self.limits = limits or Limits()
        self.min_update_interval = min_update_interval  # seconds between two streamed view updates
        self.stop_wait = 10.0  # seconds Stop waits for the answer to wind down before showing it
        self._running: dict[str, _Running] = {}  # session -> its answer being generated
        self._lock = threading.Lock()

    # -- events ---------------------------------------------------------------------------------

    def chat(
        self,
        message: dict | str | None,
        conversation: Conversation | None,
        settings: Settings | None = None,
        request: gr.Request | None = None,
    ) -> Iterator[Reply]:
        """Add the person's message (text, images, videos) as a new turn and stream the answer.

        Videos are sampled here, once, at the settings' rate.
        """
        conversation = conversation if conversation is not None else Conversation()
        settings = settings or Settings()
        if isinstance(message, str):
            message = {"text": message, "files": []}
        text = ((message or {}).get("text") or "").strip()
        files = [f if isinstance(f, str) else f["path"] for f in (message or {}).get("files") or []]
        try:
            if not text and not files:
                raise UploadError("Type a question or attach an image first.")
            generation = settings.generation()
            self.limits.check_turn(text, len(conversation.attachments()), len(files))
            self.limits.check_files([_size(f) for f in files], [Path(f).name for f in files])
            engine = self.slot.wait(timeout=0)
            factor = engine.resize_factor if engine is not None else generation_of(self.slot.expected_family).resize_factor
            video_settings = settings.video(factor)
            attachments = [_attach(path, video_settings) for path in files]
            if engine is not None:  # refuse now what the model cannot take (else when it has loaded)
                self._vision_costs(engine, conversation.attachments() + attachments, generation)
        except (UploadError, EngineError, LimitError, ValueError) as e:
            yield self._refusal(conversation, str(e))
            return
        conversation.turns.append(Turn(text=text, attachments=attachments))
        yield from self._answer(conversation, generation, _session(request))

    def regenerate(
        self, conversation: Conversation | None, settings: Settings | None = None, request: gr.Request | None = None
    ) -> Iterator[Reply]:
        """Answer the last turn again; the answer shown until now stays among its versions.
        Refused with a sentence when there is nothing to answer again."""
        conversation = conversation if conversation is not None else Conversation()
        if not conversation.turns:
            yield self._refusal(conversation, "There is no answer to regenerate yet.", "Not regenerated")
            return
        try:
            generation = (settings or Settings()).generation()
        except ValueError as e:
            yield self._refusal(conversation, str(e), "Not regenerated")
            return
        conversation.branch(len(conversation.turns) - 1)
        yield from self._answer(conversation, generation, _session(request))

    def edit(
        self,
        conversation: Conversation | None,
        index: int | None,
        text: str,
        settings: Settings | None = None,
        request: gr.Request | None = None,
    ) -> Iterator[Reply]:
        """Turn `index`'s question becomes `text` and is answered anew, from there: its earlier
        version (with its answer and the turns after it) stays among the turn's versions. The
        pictures stay; an unchanged question changes nothing; None (not a question) is refused."""
        conversation = conversation if conversation is not None else Conversation()
        text = (text or "").strip()
        try:
            if index is None or not 0 <= index < len(conversation.turns):
                raise ValueError("Only a question can be edited (not a picture, its label or an answer).")
            if not text:
                raise ValueError("An edited question cannot be empty.")
            self.limits.check_turn(text, 0, 0)
            generation = (settings or Settings()).generation()
        except (LimitError, ValueError) as e:
            yield self._refusal(conversation, str(e), "Not edited")
            return
        if text == conversation.turns[index].text:
            yield Reply(conversation, self.family)
            return
        conversation.branch(index, text)
        yield from self._answer(conversation, generation, _session(request), clear_textbox=False)

    def show_version(self, conversation: Conversation | None, index: int, version: int) -> Reply:
        """Show version `version` (0-based) of turn `index`, with the turns that followed it: the
        model sees that one from now on. Nothing changes while an answer is being written."""
        conversation = conversation if conversation is not None else Conversation()
        if conversation.turns and conversation.turns[-1].status not in ("waiting", "streaming"):
            try:
                conversation.show_version(index, version)
            except (IndexError, ValueError) as e:
                return self._refusal(conversation, str(e), "Not shown")
        return Reply(conversation, self.family)

    def undo(self, conversation: Conversation | None) -> Reply:
        """Remove the last turn and put its question back in the textbox."""
        conversation = conversation if conversation is not None else Conversation()
        if not conversation.turns:
            return Reply(conversation, self.family, message=EMPTY_MESSAGE)
        turn = conversation.turns.pop()
        restored = {"text": turn.text, "files": [a.path for a in turn.attachments]}
        return Reply(conversation, self.family, message=restored)

    def clear(self, request: gr.Request | None = None) -> Reply:
        """Start a new, empty conversation (and drop what the engine kept for the old one)."""
        self._forget(_session(request))
        return Reply(Conversation(), self.family, message=EMPTY_MESSAGE)

    def end_session(self, request: gr.Request | None = None) -> None:
        """The tab was closed or reloaded: free what the engine kept for its session."""
        self._forget(_session(request))

    def stop(self, conversation: Conversation | None, request: gr.Request | None = None) -> Reply:
        """Stop this session's answer at the next decode step; reply once it has stopped."""
        with self._lock:
            running = self._running.get(_session(request))
        if running is not None:
            running.stop.set()
            running.finished.wait(timeout=self.stop_wait)
        return Reply(conversation if conversation is not None else Conversation(), self.family)

    def preset(self, name: str, message: dict | None) -> dict:
        """Put the grounding prompt `name`, in the loaded model's shape, in the textbox (files stay)."""
        files = (message or {}).get("files") or []
        return {"text": grounding_prompt(name, self.family), "files": files}

    def export(
        self,
        conversation: Conversation | None,
        references: References | None = None,
        threshold: float = 0.5,
        match_labels: bool = True,
    ) -> list[str]:
        """Files with the conversation's groundings: JSON, COCO JSON and the annotated pictures;
        with reference boxes, the JSON holds the comparison with them."""
        conversation = conversation if conversation is not None else Conversation()
        if not any(turn.answer for turn in conversation.turns):
            raise gr.Error("There is nothing to export yet.", print_exception=False)
        folder = Path(tempfile.mkdtemp(prefix="export-", dir=_exports_dir()))
        written = write_exports(conversation, self.family, folder, references, threshold, match_labels)
        return [str(path) for path in written]

    def save(self, conversation: Conversation | None) -> str:
        """The conversation as a JSON file (images embedded) for the person to keep."""
        conversation = conversation if conversation is not None else Conversation()
        if not conversation.turns:
            raise gr.Error("There is nothing to save yet.", print_exception=False)
        folder = Path(tempfile.mkdtemp(prefix="save-", dir=_exports_dir()))
        path = folder / "conversation.json"
        path.write_text(dump_conversation(conversation), "utf-8")
        return str(path)

    def load(self, file: str | None, conversation: Conversation | None, request: gr.Request | None = None) -> Reply:
        """Replace the conversation with one saved earlier; a bad file is refused with a sentence."""
        conversation = conversation if conversation is not None else Conversation()
        if not file:
            return Reply(conversation, self.family)
        try:
            images = Path(tempfile.mkdtemp(prefix="loaded-", dir=_exports_dir()))
            loaded = load_conversation(file, self.limits, images)
        except (UploadError, OSError) as e:
            return self._refusal(conversation, str(e), "Not loaded")
        self._forget(_session(request))
        return Reply(loaded, self.family)

    @property
    def family(self) -> str:
        """The loaded model's grounding family (until it is there, the family being loaded)."""
        return self.slot.expected_family

    def status(self) -> tuple[str, gr.Timer]:
        """The model status line, and the refresh timer (switched off once loading is over)."""
        return self.slot.status_markdown(), gr.Timer(active=self.slot.loading)

    # -- the answer -----------------------------------------------------------------------------

    def _answer(
        self, conversation: Conversation, settings: GenerationSettings, session: str, clear_textbox: bool = True
    ) -> Iterator[Reply]:
        """Stream the last turn's answer. The first reply clears the textbox (unless told not to:
        an edit in the chat leaves it alone); later ones leave alone what the person types meanwhile."""
        with closing(self._stream_answer(conversation, settings, session)) as replies:
            for number, reply in enumerate(replies):
                yield replace(reply, message=EMPTY_MESSAGE) if number == 0 and clear_textbox else reply

    def _stream_answer(self, conversation: Conversation, settings: GenerationSettings, session: str) -> Iterator[Reply]:
        turn = conversation.turns[-1]
        engine = yield from self._wait_for_engine(conversation)
        if engine is None:
            turn.status, turn.error = "error", f"The model could not be loaded: {self.slot.error}"
            yield Reply(conversation, self.family)
            return
        running = self._begin(session)
        stop = running.stop
        try:
            uploads = conversation.attachments()
            for attachment in uploads:  # a video sized for another generation (a saved conversation)
                if attachment.is_video:
                    attachment.video = attachment.video.for_factor(engine.resize_factor)
            for attachment, cost in zip(uploads, self._vision_costs(engine, uploads, settings), strict=True):
                attachment.cost = cost
            turn.input_sizes = [a.cost.input_wh for a in conversation.images()]
            messages = to_model_messages(conversation, settings.system_prompt)
            turn.status = "streaming"
            yield Reply(conversation, self.family)
            last_update = time.monotonic()
            with closing(engine.stream(messages, settings, stop, session)) as pieces:
                for piece in pieces:
                    turn.answer += piece
                    if time.monotonic() - last_update >= self.min_update_interval:
                        last_update = time.monotonic()
                        yield Reply(conversation, self.family)
            turn.status = "stopped" if stop.is_set() else "done"
        except (EngineError, LimitError) as e:
            turn.status, turn.error = "error", str(e)
        except Exception as e:  # noqa: BLE001 - the person gets a sentence, the log the traceback
            log.exception("answering failed")
            turn.status, turn.error = "error", f"Something went wrong while answering ({type(e).__name__}: {e})."
        finally:
            stop.set()  # closed by Stop or a closed tab: end the generation now
            if turn.status == "streaming":
                turn.status = "stopped"
            self._end(session, running)
        yield Reply(conversation, self.family)

    def _forget(self, session: str) -> None:
        engine = self.slot.wait(timeout=0)
        if engine is not None:
            engine.forget(session)

    def _refusal(self, conversation: Conversation, reason: str, what: str = "Not sent") -> Reply:
        """A notice saying why something was refused; the conversation and the textbox stay."""
        gr.Warning(reason)
        return Reply(conversation, self.family, notice=f"{what}: {reason}")

    def _vision_costs(self, engine: Engine, images: list[Attachment], settings: GenerationSettings) -> list[VisionCost]:
        """What each upload costs the model; raises EngineError or LimitError when it cannot take them."""
        costs = [
            VisionCost(a.video.frame_wh, a.video.visual_tokens) if a.is_video else engine.vision_cost(a.size_wh, settings)
            for a in images
        ]
        self.limits.check_visual_tokens(sum(cost.tokens for cost in costs))
        return costs

    def _wait_for_engine(self, conversation: Conversation) -> Iterator[Reply]:  # returns Engine | None
        """Yield 'still loading' views until the engine is there; return it (None if loading failed)."""
        engine = self.slot.wait(timeout=0)
        while engine is None and self.slot.loading:
            note = f"The model is still loading ({self.slot.seconds_loading():.0f} s); your question will be answered once it is ready."
            yield Reply(conversation, self.family, waiting=note)
            engine = self.slot.wait(timeout=1.0)
        return engine

    def _begin(self, session: str) -> _Running:
        running = _Running()
        with self._lock:
            self._running[session] = running
        return running

    def _end(self, session: str, running: _Running) -> None:
        running.finished.set()
        with self._lock:
            if self._running.get(session) is running:
                del self._running[session]


@dataclass
class _Running:
    """An answer being generated: its Stop switch, and a flag raised once it has ended."""

    stop: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


def _exports_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / "qwen-vl-chat" / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        raise UploadError(f"{Path(path).name} could not be read (the upload is gone; send it again).") from None


def _attach(path: str, video_settings: VideoSettings) -> Attachment:
    name = Path(path).name
    if is_video_file(path):
        return Attachment(path=path, video=sample_video(path, video_settings), name=name)
    if not is_image_file(path):
        raise UploadError(
            f"{name} is not an image or a video; this app takes PNG, JPEG, WebP, GIF, BMP, TIFF, "
            "MP4, WebM, MOV, MKV and AVI files."
        )
    return Attachment(path=path, image=load_image(path), name=name)
