"""Tiny, randomly initialised checkpoints of every local Qwen VL generation, built offline.

`--model tiny-random` (Qwen2-VL), `tiny-random-qwen2.5-vl`, `tiny-random-qwen3-vl`,
`tiny-random-qwen3-vl-thinking`, `tiny-random-qwen3.5` and `tiny-random-qwen4-exp`: each has its
generation's real model and processor classes, its real added tokens in the real order, its
official chat template byte for byte (Qwen4-Exp, which has none to read, Qwen3.5's: see its
recipe), and a config with the real architecture's structure (window attention, DeepStack,
linear-attention layers, QSA, hyper-connections...), only small, so it answers with random text.
Each is written with `save_pretrained` and loaded back by the same `AutoProcessor` /
`AutoModelForImageTextToText` code as a real checkpoint. One module per generation holds its recipe; `common` the tokenizer
training and the templates they share.

Building one takes about 0.1 s once transformers' model classes are imported (the first build in
a process imports them, a few seconds); the result is cached in a directory whose name carries a
digest of the recipe (its source, the shared code, the template, the corpus and the transformers
version), so a changed recipe builds anew.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from demo.engines.tiny import common
from grounding.generations import TINY_CHECKPOINTS, tiny_checkpoint_family

BUILD_VERSION = "2"
DEFAULT = "tiny-random"


#: Qwen2-VL-Instruct's chat template (what `bench` gives its 2B-shaped Qwen2-VL checkpoint).
CHAT_TEMPLATE = common.template("qwen2-vl.jinja")


def default_cache_dir() -> Path:
    """Where built checkpoints live: $QWEN_CHAT_CACHE, else ~/.cache/qwen-vl-chat."""
    root = os.environ.get("QWEN_CHAT_CACHE") or Path.home() / ".cache" / "qwen-vl-chat"
    return Path(root)


def recipe(name: str) -> tuple[ModuleType, str | None]:
    """The module that builds the tiny checkpoint `name` (one per generation, named for its family:
    `qwen2.5-vl` -> `qwen2_5_vl`) and its template variant (a module with several: "thinking" for a
    `-thinking` name, else "instruct"; None). The names are the registry's (`TINY_CHECKPOINTS`)."""
    family = tiny_checkpoint_family(name)
    if family is None:
        raise ValueError(f"unknown tiny checkpoint {name!r}; expected one of {', '.join(TINY_CHECKPOINTS)}")
    module = importlib.import_module(f"demo.engines.tiny.{family.replace('-', '_').replace('.', '_')}")
    if not hasattr(module, "TEMPLATES"):
        return module, None
    return module, "thinking" if name.endswith("-thinking") else "instruct"


def checkpoint_dir(name: str = DEFAULT, cache_dir: Path | None = None) -> Path:
    """The directory the tiny checkpoint `name` is (or will be) saved in; its name changes with the recipe."""
    import transformers

    module, variant = recipe(name)
    template = module.TEMPLATES[variant] if variant else module.TEMPLATE
    parts = [
        BUILD_VERSION,
        transformers.__version__,
        str(variant),
        common.CORPUS_PATH.read_text("utf-8"),
        Path(common.__file__).read_text("utf-8"),
        Path(module.__file__).read_text("utf-8"),
        common.template(template),
    ]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    stem = "tiny-random-qwen2-vl" if name == DEFAULT else name  # every directory names its generation
    return (cache_dir or default_cache_dir()) / f"{stem}-{digest}"


def ensure_tiny_checkpoint(name: str = DEFAULT, cache_dir: Path | None = None) -> Path:
    """Return the directory of the tiny checkpoint `name`, building it first if it is not there yet."""
    target = checkpoint_dir(name, cache_dir)
    if (target / "config.json").exists():
        return target
    module, variant = recipe(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        if variant:
            module.build(staging, variant)
        else:
            module.build(staging)
        try:
            staging.rename(target)  # atomic: a half-built directory is never seen as a checkpoint
        except OSError:
            if not (target / "config.json").exists():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
