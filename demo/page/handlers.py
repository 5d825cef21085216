"""The chat's event handlers: plain methods from (message, conversation, settings) to a `Reply`.

`ChatHandlers` holds the engine slot shared by every session, the Stop switches of the answers
being written and the sessions' folders (`demo.record.sessions`); each session's conversation
arrives as an argument (a `gr.State`) and goes back out in a `Reply`: the conversation record,
the grounding family to read it with, and a notice when something was refused. What the page
shows is derived from a Reply by `ChatPage.render` (`demo/page/ui.py`, through
`demo/views/chat.py`), so no handler knows the page's layout. What an answer sends the model
(uploads decoded and checked, their costs, the messages) is built by `demo/engines/model_input.py`.

A session ends (its files deleted, its pictures and engine cache freed) when its tab closes, on a
successful Load, and when Gradio drops its state after `session_ttl` idle seconds (`expire`);
Clear keeps the cleared conversation for an Undo until the next answer. Streaming handlers are
generators: Gradio closes them when the person presses Stop or closes the tab, and their
`finally:` stops the generation. The only Gradio things used here are `gr.Request` (the session
and the client's address), `gr.Info`, `gr.Warning`, `gr.Error` and `gr.Timer`.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr

from demo.engines.base import Engine, EngineError, GenerationSettings
from demo.engines.model_input import attach, check_request, model_messages, text_chars, upload_size, vision_costs
from demo.engines.slot import EngineSlot
from demo.media.pictures import UploadError, refit
from demo.media.video import is_video_file
from demo.page.settings import Settings
from demo.page.writing import Running, Writing, waiting_note
from demo.page.zooming import zoom_from_call
from demo.record.conversation import MAX_ZOOMS, Conversation, Turn
from demo.record.held import Held
from demo.record.limits import LimitError, Limits
from demo.record.reasoning import AnswerWriter
from demo.record.region import Region, check_region, split_region, with_question
from demo.record.session_file import dump_conversation, load_refusal, read_conversation, write_pictures
from demo.record.sessions import Sessions
from demo.record.uploads import discard_upload
from demo.views.chat import chatbot_messages
from demo.views.export_tools import write_all
from demo.views.ground_truth import References
from demo.views.markup import toast
from demo.web.clients import client_key
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

    def __init__(
        self,
        slot: EngineSlot,
        *,
        limits: Limits | None = None,
        min_update_interval: float = 0.05,
        sessions: Sessions | None = None,
        session_ttl: float = 3600.0,
        held: Held | None = None,
    ) -> None:
        self.slot = slot
        self.limits = limits or Limits()
        self.min_update_interval = min_update_interval  # seconds between two streamed view updates
        self.stop_wait = 10.0  # seconds Stop waits for the answer to wind down before showing it
        self.sessions = sessions or Sessions()
        self.session_ttl = session_ttl  # seconds a conversation is kept once its session is idle
        self.held = held if held is not None else Held()  # what each client's conversations hold in memory, bounded
        self.writing = Writing()  # the answers being written, at most `answer_at_once` at a time
        self._expired: OrderedDict[str, None] = OrderedDict()  # sessions whose conversation expired (newest last)
        self._lock = threading.Lock()

    def answer_at_once(self, n: int) -> None:
        """The engine writes `n` answers at once (the page's concurrency); set before serving."""
        self.writing = Writing(n)

    def __deepcopy__(self, memo: dict) -> ChatHandlers:
        """The handlers themselves: one instance serves every session, and it holds the engine.

        Gradio deep-copies the page's config on every page load (`/config`), and the config holds
        `expire`, the conversation State's delete callback, bound to this object. A real copy would
        reach the model, or an OpenAI client whose half-made copy prints a traceback when collected.
        """
        return self

    # -- events ---------------------------------------------------------------------------------

    def chat(
        self,
        message: dict | str | None,
        conversation: Conversation | None,
        settings: Settings | None = None,
        request: gr.Request | None = None,
    ) -> Iterator[Reply]:
        """Add the person's message (text, images, videos) as a new turn and stream the answer.

        Videos are sampled here, once, at the settings' rate. Uploads are decoded and checked before
        anything is written; accepted ones move into the session's folder.
        """
        session = _session(request)
        if conversation is None and self._was_expired(session):
            gr.Info("The earlier conversation was cleared after being idle too long; this message starts a new one.")
        conversation = conversation if conversation is not None else Conversation()
        settings = settings or Settings()
        if isinstance(message, str):
            message = {"text": message, "files": []}
        region, text = split_region(((message or {}).get("text") or "").strip())  # "About Picture 1 (…)–(…): …"
        text = text.strip()
        files = [f if isinstance(f, str) else f["path"] for f in (message or {}).get("files") or []]
        try:
            if not text and not files:
                raise UploadError("Type a question after the region's colon." if region else "Type a question or attach an image first.")
            generation = settings.generation()
            self.limits.check_system_prompt(generation.system_prompt)
            self.limits.check_turn(text, len(conversation.attachments()), len(files))
            self.limits.check_conversation(len(conversation.turns), text_chars(conversation) + len(text))
            self.limits.check_files([upload_size(f) for f in files], [Path(f).name for f in files], [is_video_file(f) for f in files])
            engine = self.slot.wait(timeout=0)
            factor = engine.resize_factor if engine is not None else generation_of(self.slot.expected_family).resize_factor
            video_settings = settings.video(factor)
            attachments = [attach(path, video_settings, engine, generation) for path in files]
            if region is not None:
                check_region(region, [a.size_wh for a in [*conversation.images(), *attachments] if not a.is_video])
            if engine is not None:  # refuse now what the model cannot take (else when it has loaded)
                check_request(engine, Conversation([*conversation.turns, Turn(text, attachments, region=region)]), generation, self.limits)
            if refusal := self.held.hold(session, _client(request), Conversation([*conversation.turns, Turn(text, attachments, region=region)])):
                raise LimitError(refusal)
        except (UploadError, EngineError, LimitError, ValueError) as e:
            yield self._refusal(conversation, str(e))
            return
        moved = self.sessions.adopt(session, files)
        for attachment in attachments:
            attachment.path = moved[attachment.path]
        conversation.turns.append(Turn(text=text, attachments=attachments, region=region))
        self.sessions.track(session, conversation)
        yield from self._answer(conversation, generation, session)

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
        try:
            self._check_again(conversation, len(conversation.turns) - 1, None, generation)
        except (EngineError, LimitError) as e:
            yield self._refusal(conversation, str(e), "Not regenerated")
            return
        conversation.branch(len(conversation.turns) - 1)
        self.sessions.track(_session(request), conversation)
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
        region, text = split_region((text or "").strip())
        text = text.strip()
        try:
            if index is None or not 0 <= index < len(conversation.turns):
                raise ValueError("Only a question can be edited (not a picture, its label or an answer).")
            if not text:
                raise ValueError("An edited question cannot be empty.")
            if region is not None:
                seen = [*conversation.images_until(index - 1), *conversation.turns[index].attachments]
                check_region(region, [a.size_wh for a in seen if not a.is_video])
            self.limits.check_turn(text, 0, 0)
            generation = (settings or Settings()).generation()
        except (LimitError, ValueError) as e:
            yield self._refusal(conversation, str(e), "Not edited")
            return
        if (text, region) == (conversation.turns[index].text, conversation.turns[index].region):
            yield Reply(conversation, self.family)
            return
        try:
            self._check_again(conversation, index, text, generation, region)
        except (EngineError, LimitError) as e:
            yield self._refusal(conversation, str(e), "Not edited")
            return
        conversation.branch(index, text, region)
        self.sessions.track(_session(request), conversation)
        yield from self._answer(conversation, generation, _session(request), clear_textbox=False)

    def _check_again(
        self, conversation: Conversation, index: int, text: str | None, generation: GenerationSettings, region: Region | None = None
    ) -> None:
        """Refuse (LimitError, EngineError) what answering turn `index` anew would send, before the
        turn is touched: its question (`text` and `region`, or as it is) with the turns before it."""
        self.limits.check_system_prompt(generation.system_prompt)
        engine = self.slot.wait(timeout=0)
        if engine is not None:
            turn = conversation.turns[index]
            asked = (turn.text, turn.region) if text is None else (text, region)
            again = replace(turn, text=asked[0], region=asked[1], answer="", status="waiting", error="")
            check_request(engine, Conversation([*conversation.turns[:index], again]), generation, self.limits)

    def show_version(self, conversation: Conversation | None, index: int, version: int) -> Reply:
        """Show version `version` (0-based) of turn `index`, with the turns that followed it: the
        model sees that one from now on. Nothing changes while an answer is being written."""
        conversation = conversation if conversation is not None else Conversation()
        if conversation.turns and conversation.turns[-1].status not in ("waiting", "streaming"):
            if not 0 <= index < len(conversation.turns):
                return self._refusal(conversation, "That version is not in this conversation.", "Not shown")
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
        restored = {"text": with_question(turn.region, turn.text), "files": [a.path for a in turn.attachments]}
        return Reply(conversation, self.family, message=restored)

    def clear(self, request: gr.Request | None = None, conversation: Conversation | None = None) -> Reply:
        """Start a new, empty conversation (the textbox keeps what is being typed). The engine's cache of
        the old one is freed; the old one (when it has turns) and its files are kept aside for `restore`
        until the next answer starts, the session ends or it is cleared again; without one it ends at once."""
        session = _session(request)
        if conversation is None or not conversation.turns:
            self._close(session)
        else:
            engine = self.slot.wait(timeout=0)
            if engine is not None:
                engine.forget(session)
            self.sessions.set_aside(session, conversation)
        return Reply(Conversation(), self.family)  # the textbox keeps what is being typed

    def restore(self, current: Conversation | None, request: gr.Request | None = None) -> Reply:
        """Undo of Clear: the conversation set aside comes back; `current` stays when there is none."""
        back = self.sessions.bring_back(_session(request))
        if back is None:
            back = current if current is not None else Conversation()
        return Reply(back, self.family)

    def end_session(self, request: gr.Request | None = None) -> None:
        """The tab was closed or reloaded: stop its answer and end its session now (Gradio keeps its state an hour more)."""
        session = _session(request)
        running = self.writing.of(session)
        if running is not None:  # Gradio can close a generator only when it yields: not while a prompt is read
            running.stop.set()
        self._close(session)

    def expire(self, conversation: Conversation | None) -> None:
        """Gradio dropped a conversation kept past the time-to-live (`gr.State(delete_callback=...)`): end its session."""
        session = self.sessions.session_of(conversation) if conversation is not None else None
        if session is None:
            return  # ended already (closed, cleared, replaced)
        self._close(session)
        with self._lock:
            self._expired[session] = None
            while len(self._expired) > 10_000:
                self._expired.popitem(last=False)

    def stop(self, conversation: Conversation | None, request: gr.Request | None = None) -> Reply:
        """Stop this session's answer at the next decode step; reply once it has stopped."""
        running = self.writing.of(_session(request))
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
        request: gr.Request | None = None,
    ) -> list[str]:
        """Files with the conversation's groundings: a zip of every export first, then JSON, COCO
        JSON, Label Studio's tasks and config and the annotated pictures (the YOLO dataset is in the
        zip); with reference boxes, the JSON holds the comparison with them (one export per session:
        a new one replaces the last)."""
        conversation = conversation if conversation is not None else Conversation()
        if not any(turn.answer for turn in conversation.turns):
            raise gr.Error("There is nothing to export yet.", print_exception=False)
        session = _session(request)
        folder = self.sessions.folder(session) / "export"
        shutil.rmtree(folder, ignore_errors=True)
        self.sessions.touch(session)
        written = write_all(conversation, self.family, folder, references, threshold, match_labels)
        return [str(path) for path in written]

    def save(self, conversation: Conversation | None, request: gr.Request | None = None) -> str:
        """The conversation as a JSON file (images embedded) for the person to keep; one file per
        session, rewritten by each save."""
        conversation = conversation if conversation is not None else Conversation()
        if not conversation.turns:
            raise gr.Error("There is nothing to save yet.", print_exception=False)
        session = _session(request)
        folder = self.sessions.folder(session) / "save"
        folder.mkdir(exist_ok=True)
        path = folder / "conversation.json"
        partial = path.with_suffix(".partial")
        partial.write_text(dump_conversation(conversation), "utf-8")
        partial.replace(path)  # atomic: a download in progress never reads half a file
        self.sessions.touch(session)
        return str(path)

    def snapshot(self, conversation: Conversation | None, request: gr.Request | None = None) -> str | None:
        """The conversation's saved file, for the page to keep in the browser (demo/page/history.js);
        None for an empty one."""
        if conversation is None or not conversation.turns:
            return None
        return self.save(conversation, request)

    def load(self, file: str | None, conversation: Conversation | None, request: gr.Request | None = None) -> Reply:
        """Replace the conversation with one saved earlier; a file that cannot be loaded is refused
        with a sentence, and everything stays as it was (the conversation, its files, what Clear set aside).

        The file is read and checked, its pictures written into a new folder and the chat it makes
        drawn, all before the old conversation ends; the uploaded file is let go once read, loaded or not.
        """
        conversation = conversation if conversation is not None else Conversation()
        if not file:
            return Reply(conversation, self.family)
        folder = self.sessions.new_folder()
        try:
            loaded = write_pictures(read_conversation(file, self.limits), folder / "loaded")
            chatbot_messages(loaded, self.family)  # what the page shows next: drawn now, so it cannot fail then
            if refusal := self.held.hold(_session(request), _client(request), loaded):
                raise LimitError(refusal)
        except Exception as e:  # noqa: BLE001 - whatever it is, the person gets a sentence and keeps the conversation
            self.sessions.discard(folder)
            if not isinstance(e, (UploadError, OSError, LimitError)):
                log.exception("loading %s failed", file)
            return self._refusal(conversation, load_refusal(file, e), "Not loaded")
        finally:
            discard_upload(file)
        session = _session(request)
        engine = self.slot.wait(timeout=0)
        if engine is not None:
            engine.forget(session)
        self.sessions.replace(session, folder, loaded)
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
        self.sessions.drop_aside(session)  # a cleared conversation can no longer come back
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
        running = self.writing.begin(session)
        stop = running.stop
        try:
            my_turn = yield from self._wait_for_turn(conversation, running)
        except GeneratorExit:  # the tab closed while waiting
            self.writing.leave(running)
            self.writing.end(session, running)
            raise
        if not my_turn:  # Stop, while waiting
            turn.status = "stopped"
            self.writing.end(session, running)
            yield Reply(conversation, self.family)
            return
        self.sessions.touch(session)
        writer = AnswerWriter(turn)  # the stream into the turn: reasoning apart from the answer
        try:
            messages = self._model_messages(conversation, engine, settings)
            turn.status = "streaming"
            yield Reply(conversation, self.family)
            last_update = time.monotonic()
            zooming = settings.zoom and engine.zooms
            while True:  # one round, then one more after each zoom the model asks for (`demo.page.zooming`)
                start = len(turn.answer)
                with closing(engine.stream(messages, settings, stop, session)) as pieces:
                    for piece in pieces:
                        writer.write(piece)
                        if time.monotonic() - last_update >= self.min_update_interval:
                            last_update = time.monotonic()
                            yield Reply(conversation, self.family)
                if stop.is_set() or not zooming or len(turn.zooms) >= MAX_ZOOMS:
                    break
                writer.finish()
                zoom = zoom_from_call(conversation, turn, start, self.family)
                if zoom is None:
                    break
                turn.answer = turn.answer[: zoom.at]  # the round ends with its call: the crop answers it
                turn.zooms.append(zoom)
                writer.next_round()
                messages = self._model_messages(conversation, engine, settings)
                yield Reply(conversation, self.family)
            turn.status = "stopped" if stop.is_set() else "done"
        except (EngineError, LimitError) as e:
            turn.status, turn.error = "error", str(e)
        except Exception as e:  # noqa: BLE001 - the person gets a sentence, the log the traceback
            log.exception("answering failed")
            turn.status, turn.error = "error", f"Something went wrong while answering ({type(e).__name__}: {e})."
        finally:
            writer.finish()
            stop.set()  # closed by Stop or a closed tab: end the generation now
            if turn.status == "streaming":
                turn.status = "stopped"
            self.writing.give_back()
            self.writing.end(session, running)
        yield Reply(conversation, self.family)

    def _model_messages(self, conversation: Conversation, engine: Engine, settings: GenerationSettings) -> list[dict]:
        """The model's messages for answering the last turn, each picture sized for this answer; checked
        against the prompt's token limit (LimitError)."""
        uploads = conversation.attachments()
        for attachment in uploads:  # a video sized for another generation (a saved conversation)
            if attachment.is_video:
                attachment.video = attachment.video.for_factor(engine.resize_factor)
        costs = vision_costs(engine, uploads, settings, self.limits)
        for attachment, cost in zip(uploads, costs, strict=True):
            attachment.cost = cost
            if attachment.image is not None:  # kept at what this answer needs (decoded again if more)
                attachment.image = refit(attachment.image, attachment.size_wh, attachment.path, cost.input_wh)
        conversation.turns[-1].input_sizes = [a.cost.input_wh for a in conversation.images()]
        messages = model_messages(conversation, settings, costs, engine.family)
        self.limits.check_prompt_tokens(engine.count_tokens(messages, settings))
        return messages

    def _close(self, session: str) -> None:
        """The session's conversation is over: free what the engine kept, its files and its pictures."""
        engine = self.slot.wait(timeout=0)
        if engine is not None:
            engine.forget(session)
        self.sessions.end(session)
        self.held.release(session)

    def _was_expired(self, session: str) -> bool:
        with self._lock:
            if session not in self._expired:
                return False
            del self._expired[session]
            return True

    def _refusal(self, conversation: Conversation, reason: str, what: str = "Not sent") -> Reply:
        """A notice saying why something was refused; the conversation and the textbox stay."""
        gr.Warning(toast(reason))  # a toast shows HTML: the reason may hold a file name
        return Reply(conversation, self.family, notice=f"{what}: {reason}")

    def _wait_for_engine(self, conversation: Conversation) -> Iterator[Reply]:  # returns Engine | None
        """Yield 'still loading' views until the engine is there; return it (None if loading failed)."""
        engine = self.slot.wait(timeout=0)
        while engine is None and self.slot.loading:
            note = f"The model is still loading ({self.slot.seconds_loading():.0f} s); your question will be answered once it is ready."
            yield Reply(conversation, self.family, waiting=note)
            engine = self.slot.wait(timeout=1.0)
        return engine

    def _wait_for_turn(self, conversation: Conversation, running: Running) -> Iterator[Reply]:  # returns bool
        """Yield 'waiting' views, with the answer's place, until the engine may write it (True), or
        until Stop is pressed (False)."""
        while ahead := self.writing.take_turn(running, timeout=0.2):
            if running.stop.is_set():
                self.writing.leave(running)
                return False
            yield Reply(conversation, self.family, waiting=waiting_note(ahead))
        return True


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


def _client(request: gr.Request | None) -> str:
    """Who the request's memory is charged to: its address, as the guard counts clients."""
    return client_key(getattr(getattr(request, "client", None), "host", None) or "local")

