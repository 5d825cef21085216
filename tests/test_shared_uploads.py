"""The same file sent by several people at once: everyone is answered, and nobody's cleanup takes it
from another (issue 26).

Gradio stores an upload by its content (`<upload folder>/<sha256>/<name>`, gradio/route_utils.py
`upload_fn`), so people sending one picture byte for byte (an example, a meme) all name one file.
Before, the first message to be handled moved that file into its session's folder and the others got
"the upload is gone" (7-9 of 12 questions from four people, 32 of 127 turns from ten).

Unit tests of `demo.record.uploads` and `Sessions.adopt`, then the app served behind its guard, as app.py
serves it (a scripted engine), with gradio_client clients sending the same bytes at the same moment.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from demo.engines.slot import EngineSlot
from demo.page.handlers import ChatHandlers
from demo.record.sessions import Sessions
from demo.record.uploads import PendingUploads, discard_upload, is_gradios_upload, upload_folder
from tests.fakes import ScriptedEngine
from tests.helpers import wait_until
from tests.test_video import write_video

# -- demo/record/uploads.py and Sessions.adopt ------------------------------------------------------------


@pytest.fixture
def gradio_folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    return tmp_path / "gradio"


def upload(folder: Path, name: str = "same.png", color: str = "red") -> Path:
    """Where Gradio's upload route puts `name` with these bytes (written again: a new inode, as Gradio's rename)."""
    path = folder / hashlib.sha256(f"{name}{color}".encode()).hexdigest() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    Image.new("RGB", (8, 8), color).save(partial, format="PNG")
    partial.replace(path)
    return path


def test_a_file_sent_by_two_sessions_stays_until_both_have_sent_it(gradio_folder):
    uploads = PendingUploads(grace=0)
    sessions = Sessions(gradio_folder / "sessions", uploads=uploads)
    same = upload(gradio_folder)
    uploads.uploaded(same), uploads.uploaded(same)  # two people uploaded the same picture
    alice = Path(sessions.adopt("alice", [str(same)])[str(same)])
    assert same.exists() and uploads.pending(same) == 1  # Bob can still send it
    sessions.end("alice")
    assert same.exists() and not alice.exists()  # Alice's end takes nothing of Bob's
    bob = Path(sessions.adopt("bob", [str(same)])[str(same)])
    assert wait_until(lambda: not same.exists())  # every upload used: Gradio's copy goes
    assert bob.exists() and uploads.pending(same) is None
    sessions.end("bob")


def test_gradios_copy_outlives_its_last_use_by_the_grace(gradio_folder):
    uploads = PendingUploads(grace=0.5)
    sessions = Sessions(gradio_folder / "sessions", uploads=uploads)
    same = upload(gradio_folder)
    uploads.uploaded(same)
    sessions.adopt("alice", [str(same)])
    uploads.uploaded(same)  # the same bytes uploaded again meanwhile (by someone else)
    assert not wait_until(lambda: not same.exists(), timeout=1.5)  # kept: Bob has not sent it
    sessions.adopt("bob", [str(same)])
    assert same.exists() and wait_until(lambda: not same.exists(), timeout=5)
    sessions.end("alice"), sessions.end("bob")


def test_an_upload_landing_after_the_last_use_is_kept(gradio_folder):
    """Gradio renames an upload into place before the guard notes it: a newer file (a new inode) stays."""
    uploads = PendingUploads(grace=0.3)
    sessions = Sessions(gradio_folder / "sessions", uploads=uploads)
    same = upload(gradio_folder)
    uploads.uploaded(same)
    sessions.adopt("alice", [str(same)])
    upload(gradio_folder)  # Bob's upload of the same bytes lands, not yet noted
    assert not wait_until(lambda: not same.exists(), timeout=1.5)
    assert same.exists() and Image.open(same).size == (8, 8)
    sessions.end("alice")


def test_files_nobody_noted_or_not_yet_sent_are_left_to_gradios_sweep(gradio_folder):
    uploads = PendingUploads(grace=0)
    sessions = Sessions(gradio_folder / "sessions", uploads=uploads)
    unnoted, unsent = upload(gradio_folder, "a.png"), upload(gradio_folder, "b.png")
    uploads.uploaded(unsent)
    sessions.adopt("alice", [str(unnoted)])  # an app without the guard: nobody counted its uploads
    assert not wait_until(lambda: not unnoted.exists(), timeout=0.5) and unsent.exists()
    sessions.end("alice")


def test_a_session_file_or_a_file_elsewhere_is_never_deleted(gradio_folder, tmp_path):
    uploads = PendingUploads(grace=0)
    sessions = Sessions(gradio_folder / "sessions", uploads=uploads)
    sent = str(upload(gradio_folder))
    mine = Path(sessions.adopt("alice", [sent])[sent])
    outside = tmp_path / "outside.png"
    Image.new("RGB", (2, 2)).save(outside)
    for path in (mine, outside):
        assert not is_gradios_upload(path)
        uploads.uploaded(path), uploads.used(path)
    assert not wait_until(lambda: not (mine.exists() and outside.exists()), timeout=0.5)
    sessions.end("alice")


def test_a_conversation_file_loaded_by_two_people_at_once_waits_for_both(gradio_folder, monkeypatch):
    uploads = PendingUploads(grace=0)
    monkeypatch.setattr("demo.record.uploads.UPLOADS", uploads)
    saved = upload(gradio_folder, "conversation.json")
    uploads.uploaded(saved), uploads.uploaded(saved)
    discard_upload(saved)
    assert not wait_until(lambda: not saved.exists(), timeout=0.5)
    discard_upload(saved)
    assert wait_until(lambda: not saved.exists())


# -- the app: people sending the same bytes at the same moment -------------------------------------


@pytest.fixture(scope="module")
def served():
    from demo.page.ui import build_ui
    from demo.web import serve
    from demo.web.guard import GuardSettings

    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([], delay=0.01))
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    demo = build_ui(handlers, concurrency=4)  # four answers at once: the sessions' files are handled together
    guard = GuardSettings(max_pending=64)  # every client here is 127.0.0.1
    _, url, _ = serve.launch(demo, guard, max_queue=None, prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    yield {"url": url, "handlers": handlers}
    demo.close()


def at_once(url: str, people: int, act) -> list:
    """`act(client, person)` for `people` gradio_client clients, started together; their results."""
    clients = [Client(url, download_files=False, verbose=False) for _ in range(people)]
    start = threading.Barrier(people)
    results: list = [None] * people

    def person(index: int) -> None:
        start.wait()
        try:
            results[index] = act(clients[index], index)
        except Exception as e:  # noqa: BLE001 - reported by the test
            results[index] = e

    threads = [threading.Thread(target=person, args=(i,)) for i in range(people)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for client in clients:
        client.close()
    return results


def last_words(history: list[dict]) -> str:
    content = history[-1]["content"]
    return content[0].get("text", "") if isinstance(content, list) else str(content)


@pytest.mark.parametrize("kind", ["picture", "video"])
def test_four_people_sending_the_same_file_at_once_are_all_answered(served, tmp_path, kind):
    if kind == "picture":
        same = tmp_path / "same.png"
        Image.effect_noise((300, 200), 40).convert("RGB").save(same)
    else:
        same = write_video(tmp_path / "same.mp4", frames=8)

    def ask_three_times(client: Client, person: int) -> list[str]:
        said = []
        for question in range(3):
            history, _ = client.predict({"text": f"What is this? ({person}, {question})", "files": [handle_file(str(same))]}, api_name="/chat")
            said.append(last_words(history))
        return said

    results = at_once(served["url"], 4, ask_three_times)
    assert not [r for r in results if isinstance(r, Exception)], results
    refused = [words for said in results for words in said if "Not sent" in words]
    assert refused == [], f"{len(refused)} of 12 questions were refused: {refused[0]}"
    assert all(said == ["ok"] * 3 for said in results)
    # Every upload was sent: Gradio's copies go, and with the sessions ended so do theirs (the disk is bounded).
    assert wait_until(lambda: not list(upload_folder().glob(f"*/{same.name}")), timeout=30)
    assert wait_until(lambda: served["handlers"].sessions.live() == [], timeout=30)


def test_four_people_loading_the_same_conversation_file_at_once_all_get_it(served, tmp_path):
    saved = tmp_path / "shared-conversation.json"
    turn = {"text": "Saved question", "images": [], "answer": "Saved answer", "status": "done", "error": ""}
    saved.write_text(json.dumps({"format": "qwen-vl-chat/conversation", "version": 1, "turns": [turn]}))

    def load(client: Client, person: int) -> str:
        history, _ = client.predict(handle_file(str(saved)), api_name="/load")
        return last_words(history)

    results = at_once(served["url"], 4, load)
    assert results == ["Saved answer"] * 4, results
    assert wait_until(lambda: not list(upload_folder().glob(f"*/{saved.name}")), timeout=30)
