"""Uploads kept without being sent are capped per client and in all, and expire (issue 26).

Before, a 1.4 GB upload was accepted with no session, kept at least 65 minutes (Gradio's own sweep)
and counted by no cap. The guard now checks an upload's Content-Length against its client's bytes
not yet sent before Gradio reads the body (`demo/web/upload_bytes.py`), and an upload nobody sends
within the expiry is deleted. Unit tests of `UnsentUploads`, then the app behind its guard
(127.0.0.1 a trusted proxy, so X-Forwarded-For stands for clients).
"""

from __future__ import annotations

import hashlib
import io
import socket
import uuid
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from demo.record.uploads import PendingUploads, upload_folder
from demo.web.upload_bytes import OVER_TOTAL, UnsentUploads
from tests.guarded import launch
from tests.helpers import wait_until

CAP = 300_000  # bytes one client may keep unsent
EXPIRY = 3.0  # seconds


def picture(size: int = 200) -> bytes:
    """About 120 KB of PNG (noise does not compress), different each call."""
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 60).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


# -- demo/web/upload_bytes.py ----------------------------------------------------------------------


def gradio_file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / hashlib.sha256(data).hexdigest() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def gradio_folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    return tmp_path / "gradio"


def test_the_caps_count_reservations_and_files_until_sent(gradio_folder):
    uploads = PendingUploads(grace=0)
    unsent = UnsentUploads(per_client=100, total=150, expiry=60, uploads=uploads)
    ticket, _ = unsent.admit("a", 80)
    assert ticket is not None and unsent.admit("a", 30)[0] is None  # over a's cap while the upload runs
    path = gradio_file(gradio_folder, "x.bin", b"x" * 60)
    uploads.uploaded(path)
    unsent.settle(ticket, [str(path)])
    assert unsent.held("a") == 60  # the file's size, not the request's
    assert unsent.admit("b", 100)[1] == OVER_TOTAL  # b is within its cap, everyone is not
    unsent.sent("a", [str(path)])
    assert unsent.held("a") == 0 and unsent.admit("b", 90)[0] is not None


def test_an_expired_upload_goes_unless_it_is_the_apps_own(gradio_folder):
    uploads = PendingUploads(grace=0)
    example = gradio_file(gradio_folder, "example.png", b"example")
    unsent = UnsentUploads(per_client=100, total=100, expiry=0.01, uploads=uploads, keep=lambda p: p == example.resolve())
    stray = gradio_file(gradio_folder, "stray.png", b"stray")
    for path in (example, stray):
        uploads.uploaded(path)
        ticket, _ = unsent.admit("a", 10)
        unsent.settle(ticket, [str(path)])
    assert wait_until(lambda: not stray.exists(), timeout=5)
    assert example.exists() and unsent.held("a") == 0


# -- the app ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app():
    guard = {"unsent_per_client": CAP, "unsent_total": 3 * CAP, "unsent_expiry": EXPIRY, "trusted_proxies": ("127.0.0.1",), "max_pending": 16}
    served = launch(guard=guard)
    yield served
    served["demo"].close()


def post_upload(app: dict, client: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(app["url"] + "gradio_api/upload", files={"files": (name, data, "image/png")}, headers={"X-Forwarded-For": client}, timeout=30)


def stored(name: str) -> list[Path]:
    return list(upload_folder().glob(f"*/{name}"))


def test_a_client_over_its_cap_is_refused_before_its_body_is_read(app):
    client = "198.51.100.1"
    assert post_upload(app, client, f"{uuid.uuid4().hex}.png", picture()).status_code == 200
    assert post_upload(app, client, f"{uuid.uuid4().hex}.png", picture()).status_code == 200
    over = f"{uuid.uuid4().hex}.png"
    refused = post_upload(app, client, over, picture())
    assert refused.status_code == 413 and "not yet sent" in refused.json()["detail"]
    assert stored(over) == []
    # Announcing 2 GB and sending none of it: the answer comes at once, nothing of it is read.
    url = urlparse(app["url"])
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        raw.sendall(
            f"POST /gradio_api/upload HTTP/1.1\r\nHost: {url.hostname}\r\nX-Forwarded-For: 198.51.100.2\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {2 * 2**30}\r\n\r\n".encode()
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 413")
    assert app["guard"].unsent.held("198.51.100.2") == 0


def test_other_clients_are_unaffected_by_one_at_its_cap(app):
    for _ in range(2):
        post_upload(app, "198.51.100.3", f"{uuid.uuid4().hex}.png", picture())
    assert post_upload(app, "198.51.100.3", "more.png", picture()).status_code == 413
    assert post_upload(app, "198.51.100.4", f"{uuid.uuid4().hex}.png", picture()).status_code == 200


def test_an_upload_without_a_length_is_refused(app):
    chunks = iter([b"--b\r\n", b"--b--\r\n"])
    answer = httpx.post(app["url"] + "gradio_api/upload", content=chunks, headers={"Content-Type": "multipart/form-data; boundary=b"}, timeout=10)
    assert answer.status_code == 411


def test_an_unsent_upload_expires_and_frees_its_clients_bytes(app):
    name = f"{uuid.uuid4().hex}.png"
    answer = post_upload(app, "198.51.100.5", name, picture())
    assert answer.status_code == 200 and stored(name)
    assert app["guard"].unsent.held("198.51.100.5") > 0
    assert wait_until(lambda: not stored(name), timeout=EXPIRY + 10)
    assert app["guard"].unsent.held("198.51.100.5") == 0


def ask(url: str, client: str, path: Path) -> str:
    person = Client(url, download_files=False, verbose=False, headers={"X-Forwarded-For": client})
    try:
        history, _ = person.predict({"text": "What is this?", "files": [handle_file(str(path))]}, api_name="/chat")
    finally:
        person.close()
    content = history[-1]["content"]
    return content[0].get("text", "") if isinstance(content, list) else str(content)


def test_a_sent_upload_works_and_is_no_longer_counted(app, tmp_path):
    path = tmp_path / f"{uuid.uuid4().hex}.png"
    path.write_bytes(picture())
    words = ask(app["url"], "198.51.100.6", path)
    assert "Not sent" not in words and words
    assert app["guard"].unsent.held("198.51.100.6") == 0
    assert wait_until(lambda: not stored(path.name), timeout=15)  # demo/record/uploads.py's rule: sent, so deleted


def test_the_same_bytes_from_two_clients_both_work(app, tmp_path):
    path = tmp_path / f"{uuid.uuid4().hex}.png"
    path.write_bytes(picture())
    assert post_upload(app, "198.51.100.8", path.name, path.read_bytes()).status_code == 200  # the same path, not sent
    for client in ("198.51.100.7", "198.51.100.9"):
        words = ask(app["url"], client, path)
        assert "Not sent" not in words and words
        assert app["guard"].unsent.held(client) == 0
    # The one that never sent it: its upload expires, and with every upload used or expired the file goes.
    assert wait_until(lambda: app["guard"].unsent.held("198.51.100.8") == 0 and not stored(path.name), timeout=EXPIRY + 15)
