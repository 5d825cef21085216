"""The models and inputs `bench.engine` measures: tiny checkpoints, random real-sized ones, 448×448 photos.

- `tiny`: the family's offline tiny checkpoint (`demo.engines.tiny`, built in a second or two, cached).
- `2b`: the family's small official architecture (`bench.shapes`: Qwen2-VL-2B, Qwen2.5-VL-3B,
  Qwen3-VL-2B, Qwen3.5-0.8B) with random bfloat16 weights, built offline by plain construction
  in a child process (so the benchmark process never holds the builder's memory) and written
  with `save_pretrained` into `$TMPDIR/qwen-vl-chat-bench/`, with the family's tiny tokenizer,
  chat template and processor classes, and the real processors' pixel bounds (a 448×448 image is
  256 visual tokens at patch 14, 196 at patch 16). The config's image/video/vision-start/-end and
  bos/eos/pad ids are the tokenizer's. Its few hundred tokens are far fewer than the rows of the
  (tied) embedding, so the rows no token maps to are zeroed: their logits are exactly 0, the
  largest of the real logits is positive, and greedy decoding never picks an id the tokenizer
  cannot decode (it would stream nothing). Shapes and compute are unchanged.

Build one alone with `python -m bench.models --build-2b [--family F]` (prints the directory and the build time).
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

from bench.shapes import SHAPES, text_config  # noqa: E402
from demo.engines.base import RANDOM_WEIGHTS_MARKER  # noqa: E402
from demo.engines.tiny import ensure_tiny_checkpoint  # noqa: E402
from grounding.generations import DEFAULT_FAMILY, generation  # noqa: E402

BUILD_VERSION_2B = "2"
BUILD_INFO = "BENCH_BUILD.json"  # written into a built checkpoint: how long building it took
SEED = 1234
EXAMPLES = REPO / "demo" / "examples"
IMAGE_SIDE = 448  # 16×16 merged patches of 28 px (256 visual tokens), 14×14 of 32 px (196)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory the engine can load, and what it cost to get it."""

    shape: str
    family: str
    path: Path
    build_seconds: float | None  # how long building took (when it was built, maybe by an earlier run)
    built_now: bool  # False: taken from the cache


def bench_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "qwen-vl-chat-bench"


def _tiny_name(family: str) -> str:
    name = generation(family).tiny_checkpoint
    if name is None:
        raise ValueError(f"{family} has no tiny checkpoint to take a tokenizer from")
    return name


def checkpoint_dir_2b(family: str = DEFAULT_FAMILY, cache_dir: Path | None = None) -> Path:
    """Where the family's real-sized checkpoint lives; the name changes with the recipe and the tiny tokenizer."""
    shape = SHAPES[family]
    recipe = json.dumps([BUILD_VERSION_2B, shape.model_type, shape.text, shape.vision, shape.image_pixels, SEED])
    digest = hashlib.sha256((recipe + ensure_tiny_checkpoint(_tiny_name(family)).name).encode()).hexdigest()[:12]
    return (cache_dir or bench_cache_dir()) / f"random-{family}-{shape.source.split('/')[-1].lower()}-{digest}"


def build_2b_checkpoint(out_dir: Path, family: str = DEFAULT_FAMILY) -> dict:
    """Build the family's random real-sized checkpoint into `out_dir` (in this process); return timings and counts."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, GenerationConfig

    from demo.engines.tiny.common import text_ids, token_ids

    shape = SHAPES[family]
    started = time.perf_counter()
    processor = AutoProcessor.from_pretrained(ensure_tiny_checkpoint(_tiny_name(family)))
    processor.image_processor.size = dict(zip(("shortest_edge", "longest_edge"), shape.image_pixels, strict=True))
    processor.video_processor.size = dict(zip(("shortest_edge", "longest_edge"), shape.video_pixels, strict=True))
    tokenizer = processor.tokenizer
    text = {**text_config(shape), **text_ids(tokenizer), "tie_word_embeddings": True}
    config = AutoConfig.for_model(
        shape.model_type, text_config=text, vision_config=dict(shape.vision), tie_word_embeddings=True,
        **token_ids(tokenizer), **shape.extra,
    )  # fmt: skip
    vocab = config.text_config.vocab_size
    largest_id = max(tokenizer.get_vocab().values())
    if largest_id >= vocab:
        raise RuntimeError(f"the tokenizer can produce id {largest_id}, not below vocab_size {vocab}")
    torch.manual_seed(SEED)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = AutoModelForImageTextToText.from_config(config).eval()
    finally:
        torch.set_default_dtype(previous)
    embeddings = model.get_input_embeddings().weight
    if model.get_output_embeddings().weight is not embeddings:
        raise RuntimeError(f"the {family} model's input and output embeddings are not tied")
    with torch.no_grad():
        embeddings[len(tokenizer) :].zero_()  # ids the tokenizer cannot decode are never the argmax
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    if shape.expected_parameters is not None and (total, vision) != shape.expected_parameters:
        raise RuntimeError(f"{family} parameter counts {total:,} / {vision:,} differ from {shape.expected_parameters}")
    token_id = tokenizer.convert_tokens_to_ids
    model.generation_config = GenerationConfig(
        bos_token_id=token_id("<|endoftext|>"),
        eos_token_id=[token_id("<|im_end|>"), token_id("<|endoftext|>")],
        pad_token_id=token_id("<|endoftext|>"),
        do_sample=False,
    )
    constructed = time.perf_counter()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / RANDOM_WEIGHTS_MARKER).write_text(
        f"The weights of this checkpoint are random: it answers with random text. {shape.source}'s architecture, "
        "built by bench/models.py.\n"
    )
    info = {
        "family": family,
        "source": shape.source,
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


def ensure_2b_checkpoint(family: str = DEFAULT_FAMILY, cache_dir: Path | None = None) -> Checkpoint:
    """The family's real-sized checkpoint, built in a child process (about a minute on 2 cores) if not cached yet."""
    target = checkpoint_dir_2b(family, cache_dir)
    if (target / BUILD_INFO).exists():
        info = json.loads((target / BUILD_INFO).read_text())
        return Checkpoint("2b", family, target, info.get("build_seconds"), built_now=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        command = [sys.executable, "-m", "bench.models", "--family", family, "--build-2b-into", str(staging)]
        subprocess.run(command, cwd=REPO, check=True)
        info = json.loads((staging / BUILD_INFO).read_text())
        try:
            staging.rename(target)  # atomic: a half-written directory is never taken for a checkpoint
        except OSError:
            if not (target / BUILD_INFO).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Checkpoint("2b", family, target, info["build_seconds"], built_now=True)


def ensure_checkpoint(shape: str, family: str = DEFAULT_FAMILY) -> Checkpoint:
    """The family's checkpoint of `shape` ("tiny" or "2b"), timing the build when it happens here."""
    if family not in SHAPES:
        raise ValueError(f"unknown family {family!r}: one of {', '.join(SHAPES)}")
    if shape == "2b":
        return ensure_2b_checkpoint(family)
    if shape != "tiny":
        raise ValueError(f"unknown shape {shape!r}: tiny or 2b")
    from demo.engines.tiny import checkpoint_dir

    name = _tiny_name(family)
    cached = (checkpoint_dir(name) / "config.json").exists()
    started = time.perf_counter()
    path = ensure_tiny_checkpoint(name)
    built = None if cached else round(time.perf_counter() - started, 2)
    return Checkpoint("tiny", family, path, built, built_now=not cached)


def square_photo(name: str, side: int = IMAGE_SIDE) -> Image.Image:
    """demo/examples/`name`, centre-cropped to a square and resized to side×side, RGB."""
    with Image.open(EXAMPLES / name) as image:
        return ImageOps.fit(ImageOps.exif_transpose(image).convert("RGB"), (side, side), Image.Resampling.BICUBIC)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=list(SHAPES), default=DEFAULT_FAMILY)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--build-2b", action="store_true", help="build (or find) the family's cached real-sized checkpoint")
    group.add_argument("--build-2b-into", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.build_2b_into:
        print(json.dumps(build_2b_checkpoint(args.build_2b_into, args.family)), flush=True)
        return
    checkpoint = ensure_2b_checkpoint(args.family)
    state = "built now" if checkpoint.built_now else "cached"
    print(f"{checkpoint.path} ({state}; building took {checkpoint.build_seconds} s)")


if __name__ == "__main__":
    main()
