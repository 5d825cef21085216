"""Disk per session: what the app writes for a session is in that session's folder, and is deleted
when the session ends (tab closed, Clear, Load, idle past its time-to-live); refused files leave
nothing; one save file per session; Gradio's cache is swept on a schedule.

The app runs in this process, behind its guard as app.py serves it (launched as a person's browser
would reach it, driven by gradio_client), with a scripted engine that answers with a box, so
annotated pictures get drawn.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from demo.engines.slot import EngineSlot
from demo.page.handlers import ChatHandlers
from demo.page.ui import build_ui
from demo.record.sessions import Sessions
from demo.record.uploads import PendingUploads, upload_folder
from tests.fakes import ScriptedEngine
from tests.helpers import wait_until

BOX = ["Here: <|object_ref_start|>the cat<|object_ref_end|><|box_start|>(100,100),(600,700)<|box_end|>"]


@pytest.fixture(scope="module")
def heartbeat_every_second():
    """Gradio notices a closed client at its next heartbeat (15 s by default)."""
    before = os.environ.get("GRADIO_HEARTBEAT_INTERVAL")
    os.environ["GRADIO_HEARTBEAT_INTERVAL"] = "1"
    yield
    if before is None:
        del os.environ["GRADIO_HEARTBEAT_INTERVAL"]
    else:
        os.environ["GRADIO_HEARTBEAT_INTERVAL"] = before


def launch(session_ttl: float):
    from demo.web import serve
    from demo.web.guard import GuardSettings

    slot = EngineSlot("scripted")
    slot.fill(ScriptedEngine([BOX] * 1000))
    handlers = ChatHandlers(slot, session_ttl=session_ttl)
    demo = build_ui(handlers)
    guard = GuardSettings(max_pending=64)  # every client here is 127.0.0.1
    _, url, _ = serve.launch(demo, guard, max_queue=None, prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    return demo, url, handlers


@pytest.fixture(scope="module")
def site(heartbeat_every_second):
    demo, url, handlers = launch(session_ttl=3600)
    yield {"url": url, "handlers": handlers}
    demo.close()


def client(url: str) -> Client:
    return Client(url, download_files=False, verbose=False)


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def only_folder(handlers: ChatHandlers) -> Path:
    folders = [p for p in handlers.sessions.root.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def test_a_sessions_files_live_in_its_folder_and_go_when_its_tab_closes(site, photos):
    handlers = site["handlers"]
    chat = client(site["url"])
    history, _ = chat.predict({"text": "Where is the cat?", "files": [handle_file(str(photos["chelsea"]))]}, api_name="/chat")
    folder = only_folder(handlers)
    names = files_in(folder)
    assert [n.split("/")[0] for n in names] == ["annotated", "uploads"] and names[1].endswith("/chelsea.png")
    shown = [part["file"]["path"] for m in history for part in m["content"] if part.get("file")]
    assert all(Path(p).resolve().is_relative_to(folder) for p in shown)  # the page shows the session's own files
    assert (folder / names[1]).read_bytes() == photos["chelsea"].read_bytes()
    chat.close()  # the tab closes
    assert wait_until(lambda: not folder.exists(), timeout=15)
    assert handlers.sessions.live() == []


def test_clear_deletes_the_files_and_load_refusal_leaves_nothing(site, photos, tmp_path):
    handlers = site["handlers"]
    chat = client(site["url"])
    chat.predict({"text": "Where?", "files": [handle_file(str(photos["coffee"]))]}, api_name="/chat")
    folder = only_folder(handlers)
    chat.predict(api_name="/clear")
    assert folder.exists()  # kept for the page's Undo, until the next answer, Load, another Clear or the end
    chat.predict(api_name="/clear")
    assert not folder.exists()

    # A conversation file claiming a picture far larger than any picture may be kept: a 1-bit PNG of
    # 8000x8000 is 8 kB of file and 192 MB of pixels. Refused from its header; nothing is written.
    bomb = io.BytesIO()
    Image.new("1", (8000, 8000)).save(bomb, format="PNG", optimize=True)
    item = {"name": "tiny.png", "png_base64": base64.b64encode(bomb.getvalue()).decode()}
    saved = {"format": "qwen-vl-chat/conversation", "version": 1,
             "turns": [{"text": "q", "images": [item], "answer": "a", "status": "done", "error": ""}]}
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps(saved))
    history, _ = chat.predict(handle_file(str(evil)), api_name="/load")
    assert history[-1]["content"][0]["text"].startswith("⚠ Not loaded: evil.json was not loaded: a picture of turn 1 is 8000×8000")
    assert wait_until(lambda: not list(upload_folder().glob("*/evil.json")), timeout=20)  # the refused upload goes
    assert not [p for p in handlers.sessions.root.iterdir() if p.is_dir()]  # and nothing was written
    chat.close()


def test_one_save_file_per_session_and_one_export(site, photos, tmp_path):
    handlers = site["handlers"]
    chat = client(site["url"])
    chat.predict({"text": "Where?", "files": [handle_file(str(photos["chelsea"]))]}, api_name="/chat")
    first = chat.predict(api_name="/save")["path"]
    chat.predict({"text": "And again?", "files": []}, api_name="/chat")
    second = chat.predict(api_name="/save")["path"]
    assert Path(first).resolve() == Path(second).resolve()  # rewritten, not copied
    assert len(json.loads(Path(second).read_text())["turns"]) == 2
    exports = [chat.predict(api_name="/export") for _ in range(2)]
    folder = only_folder(handlers)
    listed = [
        "all-exports.zip", "detections.json", "detections-coco.json", "label-studio-tasks.json", "label-studio-config.xml",
        "turn1-picture1.png", "turn2-picture1.png",
    ]
    assert sorted(n for n in files_in(folder) if n.startswith(("save/", "export/"))) == sorted(
        [f"export/{name}" for name in listed] + ["save/conversation.json"]
    )
    assert [Path(f["path"]).name for f in exports[1]] == listed

    # The saved file loads back (into a new folder: the old one ends with the old conversation).
    chat.predict(handle_file(second), api_name="/load")
    assert only_folder(handlers) != folder and not folder.exists()
    assert {n.split("/")[0] for n in files_in(only_folder(handlers))} == {"loaded", "annotated"}  # its boxes, drawn
    chat.close()


@pytest.fixture(scope="module")
def short_lived(heartbeat_every_second):
    """An app whose sessions end after 2 idle seconds; its cache sweep runs every second, on files older than 4 s."""
    demo, url, handlers = launch(session_ttl=2)
    yield {"url": url, "handlers": handlers}
    demo.close()


def test_an_idle_session_ends_after_its_time_to_live(short_lived, photos):
    url, handlers = short_lived["url"], short_lived["handlers"]
    chat = client(url)
    chat.predict({"text": "Where?", "files": [handle_file(str(photos["chelsea"]))]}, api_name="/chat")
    folder = only_folder(handlers)
    assert wait_until(lambda: not folder.exists(), timeout=10)  # the client is still there, idle
    assert handlers.sessions.live() == []
    history, _ = chat.predict({"text": "Hello again", "files": []}, api_name="/chat")
    assert [m["content"][0].get("text") for m in history if m["role"] == "user"] == ["Hello again"]  # a new one
    chat.close()


def test_uploads_never_sent_are_swept_from_gradios_cache(short_lived, tmp_path):
    note = tmp_path / "never-sent.png"
    Image.new("RGB", (8, 8)).save(note)
    with open(note, "rb") as f:
        uploaded = httpx.post(f"{short_lived['url']}gradio_api/upload", files={"files": f}).json()[0]
    assert Path(uploaded).exists()
    assert wait_until(lambda: not Path(uploaded).exists(), timeout=15)


def gradio_upload(folder: Path, name: str, color: str) -> Path:
    """A file where Gradio's upload route puts one: <upload folder>/<64 hex digits>/<name>."""
    path = folder / hashlib.sha256(color.encode()).hexdigest() / name
    path.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def test_adopting_uploads_links_them_and_lets_gradios_copy_go_once_used(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    uploads = PendingUploads(grace=0)
    sessions = Sessions(tmp_path / "gradio" / "sessions", uploads=uploads)
    upload = gradio_upload(tmp_path / "gradio", "photo.png", "red")
    uploads.uploaded(upload)  # as the guard notes Gradio's upload answer
    elsewhere = tmp_path / "mine.png"
    Image.new("RGB", (8, 8), "blue").save(elsewhere)
    example = gradio_upload(tmp_path / "gradio", "example.png", "green")
    uploads.uploaded(example)  # someone uploaded an example's bytes: they stay all the same
    sessions.protect([example])

    inode = upload.stat().st_ino
    moved = sessions.adopt("alice", [str(upload), str(elsewhere), str(example)])
    assert all(Path(p).is_relative_to(sessions.folder("alice")) for p in moved.values())
    assert Path(moved[str(upload)]).stat().st_ino == inode  # one file on disk, two names
    assert wait_until(lambda: not upload.exists())  # its one upload was sent: Gradio's copy goes
    assert elsewhere.exists() and example.exists()  # a file elsewhere (copied) and an example stay

    stolen = sessions.adopt("mallory", [moved[str(upload)]])  # a path of Alice's folder, learnt from a URL
    assert Path(moved[str(upload)]).exists() and Path(stolen[moved[str(upload)]]).is_relative_to(sessions.folder("mallory"))
    sessions.end("alice")
    assert Path(stolen[moved[str(upload)]]).exists()  # Alice's end takes nothing of Mallory's
    sessions.end("mallory")
    assert list(sessions.root.iterdir()) == []


def test_the_app_has_its_own_temporary_directory(tmp_path):
    """app.py calls this before Gradio is imported: GRADIO_TEMP_DIR inside a directory of the app's
    own, deleted at exit (tests/test_limits_uploads.py checks the launched app's uploads land there)."""
    import subprocess
    import sys

    code = "from demo.record.sessions import prepare_temp_dir; import os; own = prepare_temp_dir(); print(own, os.environ['GRADIO_TEMP_DIR'])"
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"} | {"TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=Path(__file__).parent.parent, timeout=60)
    own, gradio_folder = out.stdout.split()
    assert Path(gradio_folder) == Path(own) / "gradio" and Path(own).parent == tmp_path
    assert not Path(own).exists()  # deleted at exit
