"""The models and inputs `bench.engine` measures: the tiny checkpoint, a random 2B-shaped one, 448×448 photos.

- `tiny`: `demo.engines.tiny.ensure_tiny_checkpoint()` (built in about a second, cached).
- `2b`: Qwen2-VL-2B-Instruct's exact architecture (2,209 M parameters, 665 M of them vision),
  random bfloat16 weights, built offline by plain construction in a child process (so the
  benchmark process never holds the builder's memory) and written with `save_pretrained` into
  `$TMPDIR/qwen-vl-chat-bench/`, next to the tiny checkpoint's tokenizer and chat template and
  the real checkpoint's image-processor bounds (min 3,136 / max 12,845,056 pixels: a 448×448
  image is 256 visual tokens). The config's image/video/vision-start/-end and bos/eos/pad ids
  are taken from that tokenizer. Its 831 tokens are far fewer than the 151,936 rows of the
  (tied) embedding, so the rows no token maps to are zeroed: their logits are exactly 0, the
  largest of the 831 real logits is positive, and greedy decoding never picks an id the
  tokenizer cannot decode (it would stream nothing). Shapes and compute are unchanged.

Build it alone with `python -m bench.models --build-2b` (prints the directory and the build time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file
    sys.path.insert(0, str(REPO))

from demo.engines.base import RANDOM_WEIGHTS_MARKER  # noqa: E402
from demo.engines.tiny import CHAT_TEMPLATE, ensure_tiny_checkpoint  # noqa: E402

BUILD_VERSION_2B = "1"
BUILD_INFO = "BENCH_BUILD.json"  # written into the 2B checkpoint: how long building it took
SEED = 1234
EXAMPLES = REPO / "demo" / "examples"
IMAGE_SIDE = 448  # 16×16 merged patches of 28 px: 256 visual tokens with the real bounds

# Qwen/Qwen2-VL-2B-Instruct's config.json, the sizes (token ids come from the tokenizer used).
TEXT_2B = {
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "sliding_window": 32768,
    "use_sliding_window": False,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}
VISION_2B = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 1536,
    "hidden_act": "quick_gelu",
    "mlp_ratio": 4,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
# Qwen/Qwen2-VL-2B-Instruct's preprocessor_config.json bounds.
REAL_MIN_PIXELS = 56 * 56
REAL_MAX_PIXELS = 28 * 28 * 16384
EXPECTED_2B_PARAMS = (2_208_985_600, 665_271_296)  # total, vision (counted from this config)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory the engine can load, and what it cost to get it."""

    shape: str
    path: Path
    build_seconds: float | None  # how long building took (when it was built, maybe by an earlier run)
    built_now: bool  # False: taken from the cache


def bench_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "qwen-vl-chat-bench"


def config_2b(tokenizer):
    """Qwen2-VL-2B-Instruct's architecture with `tokenizer`'s special-token ids."""
    from transformers import Qwen2VLConfig

    token_id = tokenizer.convert_tokens_to_ids
    text = dict(
        TEXT_2B,
        bos_token_id=token_id("<|endoftext|>"),
        eos_token_id=token_id("<|im_end|>"),
        pad_token_id=token_id("<|endoftext|>"),
    )
    return Qwen2VLConfig(
        text_config=text,
        vision_config=dict(VISION_2B),
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def checkpoint_dir_2b(cache_dir: Path | None = None) -> Path:
    """Where the 2B checkpoint lives; the name changes with the recipe and the tiny tokenizer."""
    recipe = json.dumps([BUILD_VERSION_2B, TEXT_2B, VISION_2B, REAL_MIN_PIXELS, REAL_MAX_PIXELS, SEED])
    digest = hashlib.sha256((recipe + ensure_tiny_checkpoint().name).encode()).hexdigest()[:12]
    return (cache_dir or bench_cache_dir()) / f"random-qwen2-vl-2b-{digest}"


def build_2b_checkpoint(out_dir: Path) -> dict:
    """Build the random 2B checkpoint into `out_dir` (in this process); return timings and counts."""
    import torch
    from transformers import (
        AutoTokenizer,
        GenerationConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_checkpoint())
    config = config_2b(tokenizer)
    vocab = config.text_config.vocab_size
    largest_id = max(tokenizer.get_vocab().values())
    if largest_id >= vocab:
        raise RuntimeError(f"the tokenizer can produce id {largest_id}, not below vocab_size {vocab}")
    torch.manual_seed(SEED)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = Qwen2VLForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    embeddings = model.get_input_embeddings().weight
    if model.get_output_embeddings().weight is not embeddings:
        raise RuntimeError("the 2B model's input and output embeddings are not tied")
    with torch.no_grad():
        embeddings[len(tokenizer) :].zero_()  # ids the tokenizer cannot decode are never the argmax
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    if (total, vision) != EXPECTED_2B_PARAMS:
        raise RuntimeError(f"2B parameter counts {total:,} / {vision:,} differ from {EXPECTED_2B_PARAMS}")
    token_id = tokenizer.convert_tokens_to_ids
    model.generation_config = GenerationConfig(
        bos_token_id=token_id("<|endoftext|>"),
        eos_token_id=[token_id("<|im_end|>"), token_id("<|endoftext|>")],
        pad_token_id=token_id("<|endoftext|>"),
        do_sample=False,
    )
    constructed = time.perf_counter()
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": REAL_MIN_PIXELS, "longest_edge": REAL_MAX_PIXELS}),
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / RANDOM_WEIGHTS_MARKER).write_text(
        "The weights of this checkpoint are random: it answers with random text. Built by bench/models.py.\n"
    )
    info = {
        "construct_seconds": round(constructed - started, 2),
        "save_seconds": round(time.perf_counter() - constructed, 2),
        "build_seconds": round(time.perf_counter() - started, 2),
        "parameters": total,
        "vision_parameters": vision,
        "dtype": "bfloat16",
        "torch_threads": torch.get_num_threads(),
    }
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return info


def ensure_2b_checkpoint(cache_dir: Path | None = None) -> Checkpoint:
    """The 2B checkpoint, built in a child process (75 s on 2 cores) if it is not cached yet."""
    target = checkpoint_dir_2b(cache_dir)
    if (target / BUILD_INFO).exists():
        info = json.loads((target / BUILD_INFO).read_text())
        return Checkpoint("2b", target, info.get("build_seconds"), built_now=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        subprocess.run([sys.executable, "-m", "bench.models", "--build-2b-into", str(staging)], cwd=REPO, check=True)
        info = json.loads((staging / BUILD_INFO).read_text())
        try:
            staging.rename(target)  # atomic: a half-written directory is never taken for a checkpoint
        except OSError:
            if not (target / BUILD_INFO).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Checkpoint("2b", target, info["build_seconds"], built_now=True)


def ensure_checkpoint(shape: str) -> Checkpoint:
    """The checkpoint of `shape` ("tiny" or "2b"), timing the build when it happens here."""
    if shape == "2b":
        return ensure_2b_checkpoint()
    if shape != "tiny":
        raise ValueError(f"unknown shape {shape!r}: tiny or 2b")
    from demo.engines.tiny import checkpoint_dir

    cached = (checkpoint_dir() / "config.json").exists()
    started = time.perf_counter()
    path = ensure_tiny_checkpoint()
    return Checkpoint("tiny", path, None if cached else round(time.perf_counter() - started, 2), built_now=not cached)


def square_photo(name: str, side: int = IMAGE_SIDE) -> Image.Image:
    """demo/examples/`name`, centre-cropped to a square and resized to side×side, RGB."""
    with Image.open(EXAMPLES / name) as image:
        return ImageOps.fit(ImageOps.exif_transpose(image).convert("RGB"), (side, side), Image.Resampling.BICUBIC)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--build-2b", action="store_true", help="build (or find) the cached 2B checkpoint")
    group.add_argument("--build-2b-into", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.build_2b_into:
        print(json.dumps(build_2b_checkpoint(args.build_2b_into)), flush=True)
        return
    checkpoint = ensure_2b_checkpoint()
    state = "built now" if checkpoint.built_now else "cached"
    print(f"{checkpoint.path} ({state}; building took {checkpoint.build_seconds} s)")


if __name__ == "__main__":
    main()
