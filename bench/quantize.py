"""The CPU's int8 path (`--quantize int8`) against float32 raw `generate`: speed, memory, fidelity.

    python -m bench.quantize [--shape tiny|2b] [--repeats N] [--max-new-tokens N] [--json out.json]
                             [--variants ...] [--llama-cpp BUILD --gguf DIR]

Each variant runs in its own child process (so its memory figures are its own), one after the
other, on the same checkpoint, photo and prompt (one new 448×448 picture, greedy, exactly
`max_new_tokens` tokens):

- `float32`: raw `generate` (`bench.engine.raw_stream`) on the float32 model: the baseline.
- `engine-float32`: the app's engine on the float32 model: what the engine alone gains (it
  computes in one thread, `demo/engines/local/torch_thread.py`; the raw recipe's second thread costs
  torch's OpenMP about a third of its speed).
- `int8`: the engine with `quantize="int8"` as the app ships it (`INT8_VISION`: the language
  model, its output layer and the vision encoder in int8; `demo.engines.local.int8`).
- `int8-text`: the same with the vision encoder left in float32 (to decide `INT8_VISION`).
- `int4`: the engine with `quantize="int4"`: the language model and its output layer in 4 bits
  (`demo.engines.local.int4`), the vision encoder in int8.
- `dynamic`: torch's `quantize_dynamic` (qint8) on the language model and its output layer,
  vision in float32: the built-in alternative, for comparison.

Per variant: time to first token for the new picture (end of the first forward; `TokenClock`),
decode tok/s, peak RSS while answering (`PeakRss`, after `malloc_trim`), RSS after loading and
the process's high-water mark (VmHWM: loading included, and right after loading); medians over `--repeats`.

The quantized variants (int8, int8-text, int4) start twice, each in a child process of its own, with
their quantized weights kept in a new temporary store (`demo.engines.local.quantized_store`): the
first start quantizes the checkpoint and writes the store (its load time includes the writing),
the later start reads it. For the later start: load seconds, the peak while loading (VmHWM), the
RSS after, and whether its teacher-forced logits are the first start's bit for bit. Also this
process's CPU seconds to the first token and per decoded token: on a machine where other work
competes for the cores the wall-clock figures stretch, and these show by how much.

Fidelity, against the float32 model: logits of 3 fixed prompts with pictures plus a fixed
continuation read in one forward (teacher forcing: every variant scores the very same tokens),
over the tokenizer's real vocabulary: max and mean |Δlogit|, the mean relative to the float32
logits' standard deviation, top-1 agreement and top-5 overlap. Random weights: these logits are
nearly flat and have no trained outliers, so the figures show the arithmetic's error, not how
a trained model's answers change.

With `--llama-cpp` (a llama.cpp build folder) and `--gguf` (the same checkpoint converted by
llama.cpp), llama.cpp's Q8_0 and Q4_K_M rows are measured in the same run (`bench.llama_cpp`:
its server answering the same picture and question), and the issue-24 targets are checked:
int4 decoding >= Q4_K_M's, int4's first token <= int8's, int4's peak memory (answering, and
loading included) <= Q4_K_M's, int8 decoding >= Q8_0's.

Exactness of KV reuse for each variant (float32 included, for scale): a text follow-up answered
with the session's cache against a re-prefill of the same prompt by the same model (max |Δlogit|
of the first step, and whether the 8 greedy tokens are the same).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file
    sys.path.insert(0, str(REPO))

from bench.engine import measure, raw_stream  # noqa: E402
from bench.models import IMAGE_SIDE, ensure_checkpoint, square_photo  # noqa: E402
from bench.probes import TokenClock, rss_bytes  # noqa: E402
from bench.report import GiB, publish, ratio  # noqa: E402
from demo.engines.base import GenerationSettings  # noqa: E402
from demo.record.conversation import Attachment, Conversation, Turn, to_model_messages  # noqa: E402

VARIANTS = ("float32", "engine-float32", "int8", "int8-text", "int4", "dynamic")
QUANTIZED = ("int8", "int8-text", "int4", "dynamic")  # the variants the targets are for
STORED = ("int8", "int8-text", "int4")  # the variants whose quantized weights a later start reads (`quantized_store`)
DEFAULTS = {"tiny": {"repeats": 3, "max_new_tokens": 32}, "2b": {"repeats": 2, "max_new_tokens": 32}}
QUESTION = ("Describe Picture 1 in detail.", ["chelsea.png"])
FIDELITY_PROMPTS = [
    ("Describe Picture 1 in detail.", ["chelsea.png"]),
    ("Detect the bounding box of the coffee cup.", ["coffee.png"]),
    ("Compare Picture 1 and Picture 2.", ["astronaut.png", "rocket.jpg"]),
]
CONTINUATION = "The picture shows a cat with orange fur in front of a grey wall; it looks straight at the camera."
FOLLOW_UP = "What colours stand out in it?"
TARGETS = (  # (figure, limit as a multiple of float32's, at most?)
    ("decode_tok_s", 3.0, False),
    ("first_token_s", 0.5, True),
    ("peak_rss_bytes", 0.5, True),
)


def conversation(question: tuple[str, list[str]], photos: dict) -> Conversation:
    text, names = question
    return Conversation(turns=[Turn(text, [Attachment(f"bench/{n}", photos[n], n) for n in names], status="streaming")])


def load(variant: str, path: str, store: Path | None = None):
    """The engine of `variant` on `path`, on the CPU; the quantized ones keep their weights under `store`
    (as the cache root: `store/quantized/...`), or quantize without keeping them when None."""
    import torch

    import demo.engines.local.engine as local

    if store is not None:  # the engine's cache root while it loads (the checkpoint was found before)
        os.environ["QWEN_CHAT_CACHE"] = str(store)

    if variant in ("float32", "engine-float32", "dynamic"):
        engine = local.TransformersEngine(path, device="cpu", dtype="float32")
        if variant == "dynamic":
            from torch.ao.quantization import quantize_dynamic

            quantize_dynamic(engine.model.model.language_model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
            engine.model.lm_head = quantize_dynamic(torch.nn.Sequential(engine.model.lm_head), {torch.nn.Linear}, dtype=torch.qint8)[0]
        return engine
    import demo.engines.local.precision as precision

    precision.INT8_VISION = variant in ("int8", "int4")
    return local.TransformersEngine(
        path, device="cpu", dtype="float32", quantize="int4" if variant == "int4" else "int8", keep_quantized=store is not None
    )


def teacher_forced_logits(engine, photos: dict):
    """Logits at the last prompt token and at each continuation token, per fidelity prompt: [P, N, V]."""
    import torch

    settings = GenerationSettings()
    continuation = engine.tokenizer(CONTINUATION, add_special_tokens=False, return_tensors="pt")["input_ids"]
    vocab = len(engine.tokenizer)
    out = []
    for question in FIDELITY_PROMPTS:
        inputs = engine.prepare_inputs(to_model_messages(conversation(question, photos), settings.system_prompt), settings)
        length = inputs["input_ids"].shape[1]
        for key, value in list(inputs.items()):  # input_ids, and the per-token masks beside it
            if key != "input_ids" and isinstance(value, torch.Tensor) and value.shape[-1:] == (length,) and value.dim() == 2:
                inputs[key] = torch.cat([value, torch.full_like(continuation, 1 if key == "attention_mask" else 0)], dim=1)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], continuation], dim=1)
        with torch.inference_mode():
            logits = engine.model(**inputs, logits_to_keep=continuation.shape[1] + 1).logits
        out.append(logits[0, :, :vocab].float())
    return torch.stack(out)


def fidelity(logits, reference) -> dict:
    """How far `logits` are from the float32 `reference` ([P, N, V] each)."""
    error = (logits - reference).abs()
    top5 = logits.topk(5, dim=-1).indices
    top5_ref = reference.topk(5, dim=-1).indices
    overlap = (top5.unsqueeze(-1) == top5_ref.unsqueeze(-2)).any(-1).float().sum(-1) / 5
    return {
        "positions": int(error.shape[0] * error.shape[1]),
        "vocabulary": int(error.shape[2]),
        "max_abs_error": error.max().item(),
        "mean_abs_error": error.mean().item(),
        "reference_logit_std": reference.std(dim=-1).mean().item(),
        "mean_error_over_std": error.mean().item() / reference.std(dim=-1).mean().item(),
        "top1_agreement": (logits.argmax(-1) == reference.argmax(-1)).float().mean().item(),
        "top5_overlap": overlap.mean().item(),
    }


def reuse_exactness(engine, photos: dict) -> dict:
    """A text follow-up with the session's cache against a re-prefill of the same prompt, greedy."""
    settings = GenerationSettings(max_new_tokens=8, min_new_tokens=8)
    chat = conversation(QUESTION, photos)

    def answer(session):
        inputs = engine.prepare_inputs(to_model_messages(chat, settings.system_prompt), settings)
        out = engine.generate(inputs, settings, session, output_logits=True, return_dict_in_generate=True)
        return out.sequences[0, inputs["input_ids"].shape[1] :].tolist(), out.logits[0][0]

    first, _ = answer("exactness")
    chat.turns[0].answer, chat.turns[0].status = engine.clean(engine.tokenizer.decode(first)), "done"
    chat.turns.append(Turn(FOLLOW_UP))
    reused, reused_logits = answer("exactness")
    fresh, fresh_logits = answer(None)
    engine.forget("exactness")
    return {"same_tokens": reused == fresh, "max_abs_logit_difference": (reused_logits - fresh_logits).abs().max().item()}


class CpuTokenClock(TokenClock):
    """`TokenClock` that also notes this process's CPU time at the end of each forward."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.cpu: list[float] = []

    def _after(self, module, args, output) -> None:
        super()._after(module, args, output)
        self.cpu.append(time.process_time())

    def reset(self) -> None:
        super().reset()
        self.cpu = []


def timed_with_cpu(clock: CpuTokenClock, start) -> dict:
    """`bench.engine.measure`, plus CPU seconds to the first token and per later token (robust to other load)."""
    cpu_started = time.process_time()
    figures = measure(clock, start)
    if len(clock.cpu) > 1:
        figures["cpu_first_token_s"] = clock.cpu[0] - cpu_started
        figures["cpu_per_token_s"] = (clock.cpu[-1] - clock.cpu[0]) / (len(clock.cpu) - 1)
    return figures


def linear_kind(module) -> str:
    """The module's class name; torch's dynamic-quantized linear (also named `Linear`) as "LinearDynamic"."""
    name = type(module).__name__
    return "LinearDynamic" if name == "Linear" and ".quantized.dynamic." in type(module).__module__ else name


def vm_hwm_bytes() -> int:
    """This process's peak resident set size so far (loading included)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run_variant(variant: str, shape: str, repeats: int, max_new_tokens: int, reference: Path, store: Path | None = None) -> dict:
    """Everything measured for one variant, in this process (a first start: the quantized weights written to `store`)."""
    import torch
    from transformers import AutoProcessor

    checkpoint = ensure_checkpoint(shape)
    started = time.perf_counter()
    engine = load(variant, str(checkpoint.path), store)
    load_seconds = time.perf_counter() - started
    after_load = rss_bytes()
    load_peak = vm_hwm_bytes()
    processor = AutoProcessor.from_pretrained(checkpoint.path) if variant == "float32" else None
    photos = {name: square_photo(name) for _, names in [QUESTION, *FIDELITY_PROMPTS] for name in names}
    settings = GenerationSettings(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens)
    messages = to_model_messages(conversation(QUESTION, photos), settings.system_prompt)
    stop = threading.Event()
    clock = CpuTokenClock(engine.model)

    def answer(tokens: int, session: str):
        if variant == "float32":
            return raw_stream(engine.model, processor, messages, tokens)
        return engine.stream(messages, GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens), stop, session)

    try:
        measure(clock, lambda: answer(2, "warm-up"))  # untimed: first-call costs, weights made resident
        engine.forget("warm-up")
        runs = []
        for i in range(repeats):
            runs.append(timed_with_cpu(clock, lambda s=f"new-picture-{i}": answer(max_new_tokens, s)))  # a new session: nothing cached
            engine.forget(f"new-picture-{i}")
    finally:
        clock.close()
    logits = teacher_forced_logits(engine, photos)
    result = {
        "variant": variant,
        "load_seconds": load_seconds,
        "rss_after_load_bytes": after_load,
        "load_peak_bytes": load_peak,
        "linear_layers": {
            kind: sum(1 for m in engine.model.modules() if linear_kind(m) == kind) for kind in ("Linear", "Int8Linear", "Int4Linear", "LinearDynamic")
        },
        "runs": runs,
        **{
            k: statistics.median(r[k] for r in runs)
            for k in ("first_token_s", "decode_tok_s", "peak_rss_bytes", "rss_before_bytes", "cpu_per_wall", "cpu_first_token_s", "cpu_per_token_s")
        },
        "new_tokens": runs[0]["new_tokens"],
        "prompt_tokens": runs[0]["prompt_tokens"],
        "answer": runs[0]["answer"][:120],
    }
    if variant == "float32":
        torch.save(logits, reference)
    else:
        result["fidelity"] = fidelity(logits, torch.load(reference))
    if store is not None:  # for the later start to compare with
        store.mkdir(exist_ok=True)
        torch.save(logits, store / "teacher-forced-logits.pt")
        result["stored_bytes"] = sum(f.stat().st_size for f in (store / "quantized").rglob("*") if f.is_file())
    result["reuse"] = reuse_exactness(engine, photos)
    result["vm_hwm_bytes"] = vm_hwm_bytes()
    return result


def run_later_start(variant: str, shape: str, store: Path) -> dict:
    """A later start of a quantized variant, in this process: its model read from the weights the first start
    kept in `store`. Load time and peak memory, and whether its teacher-forced logits are the first start's, bit for bit."""
    import torch

    checkpoint = ensure_checkpoint(shape)
    written = {p.name: p.stat().st_mtime_ns for p in store.glob("quantized/*/manifest.json")}
    started = time.perf_counter()
    engine = load(variant, str(checkpoint.path), store)
    load_seconds = time.perf_counter() - started
    figures = {"load_seconds": load_seconds, "rss_after_load_bytes": rss_bytes(), "load_peak_bytes": vm_hwm_bytes()}
    photos = {name: square_photo(name) for _, names in FIDELITY_PROMPTS for name in names}
    same = torch.equal(teacher_forced_logits(engine, photos), torch.load(store / "teacher-forced-logits.pt"))
    read = bool(written) and {p.name: p.stat().st_mtime_ns for p in store.glob("quantized/*/manifest.json")} == written  # not rebuilt
    return {**figures, "read_from_store": read, "same_logits": same}


def llama_fidelity(checkpoint: Path, reference: Path):
    """For `bench.llama_cpp.serve_and_measure`'s `also`: the server's top 5 on the fidelity prompts' tokens
    (the app's own request, `OpenAIEngine.build_request`, made to write the continuation) against the
    float32 model's, from its logits in `reference`."""

    def measure(url: str) -> dict:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer

        from bench.llama_cpp import teacher_forced_top, top_agreement
        from demo.engines.server import OpenAIEngine
        from demo.media.resize import DEFAULT_MAX_VISUAL_TOKENS

        continuation = AutoTokenizer.from_pretrained(checkpoint)(CONTINUATION, add_special_tokens=False)["input_ids"]
        # The pictures at the local engine's sizes: its processor's bounds, the largest capped as the engine caps it.
        size = AutoImageProcessor.from_pretrained(checkpoint).size
        most = min(size["longest_edge"], DEFAULT_MAX_VISUAL_TOKENS * 28 * 28)
        engine = OpenAIEngine(url, "model", family="qwen2-vl", min_pixels=size["shortest_edge"], max_pixels=most)
        settings = GenerationSettings()
        photos = {name: square_photo(name) for _, names in FIDELITY_PROMPTS for name in names}
        tops = [
            teacher_forced_top(url, engine.build_request(to_model_messages(conversation(q, photos), settings.system_prompt), settings), continuation)
            for q in FIDELITY_PROMPTS
        ]
        return {"fidelity": top_agreement(tops, torch.load(reference))}

    return measure


def run(
    shape: str = "tiny", repeats: int | None = None, max_new_tokens: int | None = None, variants=VARIANTS, log=print,
    llama_cpp: Path | None = None, gguf: Path | None = None,
) -> dict:
    """Each variant in a child process (float32 first: the others compare with its logits); then llama.cpp's."""
    import torch
    import transformers

    repeats = repeats or DEFAULTS[shape]["repeats"]
    max_new_tokens = max_new_tokens or DEFAULTS[shape]["max_new_tokens"]
    checkpoint = ensure_checkpoint(shape)  # built here once, not in every child
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "float32-logits.pt"
        for variant in ("float32", *[v for v in variants if v != "float32"]):
            log(f"[{shape}] {variant}")
            out = Path(folder) / f"{variant}.json"
            command = [sys.executable, "-m", "bench.quantize", "--child", variant, "--shape", shape,
                       "--repeats", str(repeats), "--max-new-tokens", str(max_new_tokens), "--reference", str(reference), "--json", str(out)]
            store = Path(folder) / f"{variant}-store"  # a new store: the first start writes it, a later one reads it
            if variant in STORED:
                command += ["--store", str(store)]
            subprocess.run(command, cwd=REPO, check=True)
            results[variant] = json.loads(out.read_text())
            if variant in STORED:
                log(f"[{shape}] {variant}, a later start")
                later = Path(folder) / f"{variant}-later.json"
                subprocess.run([sys.executable, "-m", "bench.quantize", "--later-start", variant, "--shape", shape, "--store", str(store),
                                "--json", str(later)], cwd=REPO, check=True)  # fmt: skip
                results[variant]["later_start"] = json.loads(later.read_text())
                shutil.rmtree(store)
        if llama_cpp is not None:
            from bench.llama_cpp import run_llama_cpp

            prompt_tokens = results["float32"]["prompt_tokens"]
            picture = square_photo(QUESTION[1][0])
            also = llama_fidelity(checkpoint.path, reference)
            results.update(run_llama_cpp(llama_cpp, gguf, picture, QUESTION[0], prompt_tokens, max_new_tokens, repeats, log=log, also=also))
    base = results["float32"]
    for figures in results.values():
        figures["ratio"] = {key: ratio(figures.get(key), base[key]) for key, _, _ in TARGETS}
    return {
        "machine": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "loadavg_before": list(load_before),
            "loadavg_after": list(os.getloadavg()),
        },
        "config": {
            "shape": shape,
            "checkpoint": str(checkpoint.path),
            "repeats": repeats,
            "max_new_tokens": max_new_tokens,
            "image_side": IMAGE_SIDE,
            "question": QUESTION,
            "fidelity_prompts": FIDELITY_PROMPTS,
            "continuation": CONTINUATION,
        },
        "variants": results,
        "targets": [
            {
                "variant": variant,
                "figure": key,
                "ratio": results[variant]["ratio"][key],
                "limit": limit,
                "at_most": at_most,
                "pass": results[variant]["ratio"][key] is not None
                and (results[variant]["ratio"][key] <= limit if at_most else results[variant]["ratio"][key] >= limit),
            }
            for variant in results
            if variant in QUANTIZED
            for key, limit, at_most in TARGETS
        ],
        "llama_cpp_targets": llama_cpp_targets(results),
    }


# Issue 24's targets against llama.cpp: (variant, its figure, other variant, its figure, at most?). A
# figure is a key, or "later_start.key": the start that reads the kept quantized weights, as every
# start after the first does (llama.cpp's peak includes its loading).
LLAMA_TARGETS = (
    ("int4", "decode_tok_s", "llama.cpp Q4_K_M", "decode_tok_s", False),
    ("int4", "first_token_s", "int8", "first_token_s", True),
    ("int4", "peak_rss_bytes", "llama.cpp Q4_K_M", "peak_rss_bytes", True),  # answering
    ("int4", "later_start.load_peak_bytes", "llama.cpp Q4_K_M", "vm_hwm_bytes", True),  # loading
    ("int8", "decode_tok_s", "llama.cpp Q8_0", "decode_tok_s", False),
)


def _figure(figures: dict, key: str):
    for part in key.split("."):
        figures = figures.get(part) if isinstance(figures, dict) else None
    return figures


def llama_cpp_targets(results: dict) -> list[dict]:
    """Each issue-24 target whose two variants were measured: both figures and the verdict."""
    out = []
    for variant, key, other, their_key, at_most in LLAMA_TARGETS:
        if variant in results and other in results:
            mine, theirs = _figure(results[variant], key), _figure(results[other], their_key)
            ok = mine is not None and theirs is not None and (mine <= theirs if at_most else mine >= theirs)
            out.append({"variant": variant, "figure": key, "value": mine, "against": other, "their_value": theirs, "at_most": at_most, "pass": ok})
    return out


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (figures differ from one CPU to the next)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report(results: dict) -> str:
    c, m, v = results["config"], results["machine"], results["variants"]
    names = list(v)
    out = [
        f"shape {c['shape']}, one new {c['image_side']}² picture, {c['max_new_tokens']} new tokens, median of {c['repeats']}; "
        f"{m.get('cpu', 'CPU not recorded')}, {m['cpu_count']} CPUs, torch {m['torch']}, transformers {m['transformers']}; load average before "
        f"{m['loadavg_before'][0]:.2f}, after {m['loadavg_after'][0]:.2f}",
        "float32 = raw generate on the float32 model; the others = the app's engine (dynamic: torch's quantize_dynamic)",
        "",
        f"{'':<34}" + "".join(f"{n:>15}" for n in names),
    ]

    def row(label: str, fmt, get) -> None:
        def cell(figures):
            try:
                return fmt(get(figures))
            except (KeyError, TypeError):  # a figure this variant has not (llama.cpp's CPU time, fidelity)
                return "—"

        out.append(f"  {label:<32}" + "".join(f"{cell(v[n]):>15}" for n in names))

    num = lambda d: (lambda x: "—" if x is None else f"{x:.{d}f}")  # noqa: E731
    gib = lambda x: "—" if x is None else f"{x / GiB:.2f}"  # noqa: E731
    row("time to first token (s)", num(2), lambda f: f["first_token_s"])
    row("  x float32", num(3), lambda f: f["ratio"]["first_token_s"])
    row("decode (tok/s)", num(2), lambda f: f["decode_tok_s"])
    row("  x float32", num(3), lambda f: f["ratio"]["decode_tok_s"])
    row("peak RSS answering (GiB)", gib, lambda f: f["peak_rss_bytes"])
    row("  x float32", num(3), lambda f: f["ratio"]["peak_rss_bytes"])
    row("RSS after load (GiB)", gib, lambda f: f["rss_after_load_bytes"])
    row("process peak, load incl. (GiB)", gib, lambda f: f["vm_hwm_bytes"])
    row("load (s)", num(1), lambda f: f["load_seconds"])
    row("peak while loading (GiB)", gib, lambda f: f["load_peak_bytes"])
    row("later start: load (s)", num(1), lambda f: f["later_start"]["load_seconds"])
    row("later start: peak loading (GiB)", gib, lambda f: f["later_start"]["load_peak_bytes"])
    row("later start: RSS after (GiB)", gib, lambda f: f["later_start"]["rss_after_load_bytes"])
    row("later start: same logits", str, lambda f: f["later_start"]["same_logits"] and f["later_start"]["read_from_store"])
    row("kept on disk (GiB)", gib, lambda f: f["stored_bytes"])
    row("CPU / wall", num(2), lambda f: f["cpu_per_wall"])
    row("CPU s to first token", num(2), lambda f: f["cpu_first_token_s"])
    row("CPU ms per decoded token", num(0), lambda f: f["cpu_per_token_s"] * 1000)
    fid = lambda key, d: (lambda f: "—" if "fidelity" not in f else f"{f['fidelity'][key]:.{d}f}")  # noqa: E731
    out += ["", "Fidelity against float32 (teacher-forced, 3 prompts with pictures; RANDOM weights)"]
    row("max |Δlogit|", lambda s: s, fid("max_abs_error", 4))
    row("mean |Δlogit|", lambda s: s, fid("mean_abs_error", 4))
    row("mean |Δlogit| / logit std", lambda s: s, fid("mean_error_over_std", 4))
    row("top-1 agreement", lambda s: s, fid("top1_agreement", 3))
    row("top-5 overlap", lambda s: s, fid("top5_overlap", 3))
    first = next((f["fidelity"] for f in v.values() if "fidelity" in f), None)
    if first:
        out.append(f"  ({first['positions']} positions × {first['vocabulary']} tokens; float32 logit std {first['reference_logit_std']:.4f})")
    out += ["", "KV reuse against a re-prefill by the same model (a text follow-up, greedy, 8 tokens)"]
    row("same tokens", lambda s: s, lambda f: "—" if "reuse" not in f else str(f["reuse"]["same_tokens"]))
    row("max |Δlogit| first step", lambda s: s, lambda f: "—" if "reuse" not in f else f"{f['reuse']['max_abs_logit_difference']:.2e}")
    out += ["", "Targets (against float32 raw generate)"]
    for t in results["targets"]:
        relation = "<=" if t["at_most"] else ">="
        out.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['variant']:<10} {t['figure']:<16} {t['ratio']:.3f} {relation} {t['limit']}")
    if results.get("llama_cpp_targets"):
        out += ["", "Targets against llama.cpp (issue 24)"]
        for t in results["llama_cpp_targets"]:
            show = (lambda x: "—" if x is None else f"{x / GiB:.2f} GiB") if t["figure"].endswith("bytes") else (lambda x: "—" if x is None else f"{x:.2f}")
            relation = "<=" if t["at_most"] else ">="
            out.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['variant']:<6} {t['figure']:<14} {show(t['value'])} {relation} "
                       f"{t['against']}'s {show(t['their_value'])}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description="Measure the int8 CPU path against float32 raw generate.")
    parser.add_argument("--shape", choices=sorted(DEFAULTS), default="tiny")
    parser.add_argument("--repeats", type=int, help="runs per figure, medians reported (default: 3 tiny, 2 2b)")
    parser.add_argument("--max-new-tokens", type=int, help="tokens every answer decodes (default: 32)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--llama-cpp", type=Path, help="a llama.cpp build folder (bin/llama-server, llama-bench, llama-quantize): adds its rows")
    parser.add_argument("--gguf", type=Path, help="with --llama-cpp: a folder with model-f16.gguf and mmproj-f16.gguf of the same checkpoint")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)  # one variant, in this process
    parser.add_argument("--later-start", choices=STORED, help=argparse.SUPPRESS)  # its later start, in this process
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)  # the child's cache root for the quantized weights
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1 or args.max_new_tokens is not None and args.max_new_tokens < 2:
        parser.error("--repeats must be >= 1 and --max-new-tokens >= 2")
    if args.child:
        result = run_variant(args.child, args.shape, args.repeats, args.max_new_tokens, args.reference, args.store)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        return None
    if args.later_start:
        args.json.write_text(json.dumps(run_later_start(args.later_start, args.shape, args.store), indent=2) + "\n")
        return None
    if (args.llama_cpp is None) != (args.gguf is None):
        parser.error("--llama-cpp and --gguf go together")
    results = run(args.shape, args.repeats, args.max_new_tokens, args.variants, log=lambda s: print(s, file=sys.stderr, flush=True),
                  llama_cpp=args.llama_cpp, gguf=args.gguf)
    publish(report(results), results, args.json)
    return results


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import warnings

    warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*|.*quantize_per_tensor.*")
    main()
