"""The backends the app can answer with, registered in one place.

A `Backend` holds what is particular to one: its own flags (shown under its name in `--help`, and
refused with another backend), its checks of them, how many answers it writes at once by
default, whether a Hub model is downloaded before it loads, and the builder of its engine.
`demo/flags.py` and `app.py` know backends only through `BACKENDS`, so adding one (llama.cpp's
server, say) is one more entry here. Builders import their engine (and torch, or openai) only
when called: `--help` and flag errors stay fast.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grounding.generations import FAMILIES, TINY_CHECKPOINTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    name: str
    summary: str  # one line for --backend's help
    add_flags: Callable[[Any], None]  # adds its flags to an argparse group
    build: Callable[[argparse.Namespace, str | None], Any]  # (flags, a downloaded checkpoint's folder) -> Engine
    check: Callable[[argparse.Namespace], str | None] = lambda args: None  # a sentence when its flags do not fit
    concurrency: int = 1  # answers written at once unless --concurrency says
    downloads: bool = False  # a Hub model is fetched (the page shows its progress) before `build`


# -- local: a checkpoint run here with transformers --------------------------------------------------


def _local_flags(group: Any) -> None:
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: auto (CUDA if a GPU is visible)")
    group.add_argument(
        "--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto",
        help="default: auto (bfloat16 on a GPU, float16 where it lacks bf16; float32 on the CPU, "
        "where bfloat16 is emulated and several times slower)",
    )
    group.add_argument(
        "--quantize", choices=["none", "int8", "int4", "auto"], default="none",
        help="int8: the local model's linear layers in int8 on the CPU; int4: the language model's in 4 bits (vision in "
        "int8). Measured with the 2B model on a 2-core Intel Xeon @ 2.80GHz against float32 (2026-12-08): int8 answers a "
        "new picture in 0.37x the time, decodes 2.3x faster, in 0.39x the memory; int4 0.62x, 3.8x, 0.32x. Other CPUs "
        "differ, see docs/performance.md; auto: int8 on the CPU, none on a GPU. Default: none",
    )
    group.add_argument(
        "--no-quantized-cache", action="store_true",
        help="with --quantize int8 or int4: quantize the checkpoint at every start. Otherwise the first start keeps the "
        "quantized weights in the cache ($QWEN_CHAT_CACHE or ~/.cache/qwen-vl-chat, under quantized/; one entry per "
        "checkpoint revision, mode, torch and transformers version; older ones are not deleted) and later starts read "
        "them, loading in about the memory they end with (2B model: 3.6 GiB at most in int8 instead of 9.5, 2.6 in int4 "
        "instead of 7.9; 2.5 and 1.8 GiB on disk)",
    )
    group.add_argument(
        "--attn-implementation", choices=["sdpa", "eager", "flash_attention_2"], default="sdpa",
        help="attention kernel; flash_attention_2 needs the flash-attn package and a GPU. Default: sdpa",
    )
    group.add_argument(
        "--cache-mb", type=int, default=2048,
        help="memory for all sessions' reusable KV caches and vision encodings, in MB; 0 re-encodes every turn (default: 2048)",
    )


def _local_check(args: argparse.Namespace) -> str | None:
    if args.cache_mb < 0:
        return "--cache-mb must be 0 or more"
    if args.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        return "--attn-implementation flash_attention_2 needs the flash-attn package (pip install flash-attn)"
    return None


def _local_build(args: argparse.Namespace, checkpoint: str | None) -> Any:
    from demo.engines import zerogpu
    from demo.engines.local.engine import TransformersEngine

    model = str(checkpoint or args.model)
    if model in TINY_CHECKPOINTS:
        from demo.engines.tiny import ensure_tiny_checkpoint

        model = str(ensure_tiny_checkpoint(model))
        log.info("tiny random checkpoint: %s", model)
    engine = TransformersEngine(
        model, device=args.device, dtype=args.dtype, attn_implementation=args.attn_implementation,
        name=args.model, cache_bytes=args.cache_mb * 2**20, quantize=args.quantize, keep_quantized=not args.no_quantized_cache,
    )
    return zerogpu.on_zero_gpu(engine)


# -- openai: an OpenAI-compatible server (vLLM, SGLang, transformers serve) ---------------------------


def json_object(text: str) -> dict:
    """--extra-body's type: a JSON object (what it may set is `_openai_check`'s)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"skip_special_tokens\": false}}', got {text!r}")
    return value


def _openai_flags(group: Any) -> None:
    group.add_argument("--base-url", help="the server's URL, e.g. http://HOST:8000/v1")
    group.add_argument("--api-key", help="the server's key (default: $OPENAI_API_KEY)")
    group.add_argument(
        "--extra-body", type=json_object, default=None, metavar="JSON",
        help="a JSON object of server-specific request fields added to every request, e.g. "
        "'{\"skip_special_tokens\": false}' so that vLLM keeps Qwen2-VL's grounding tokens",
    )
    group.add_argument("--family", choices=FAMILIES, help="the model's grounding format (default: read from the model name)")


def _openai_check(args: argparse.Namespace) -> str | None:
    if not args.base_url:
        return "--backend openai needs --base-url (for example http://127.0.0.1:8000/v1)"
    if args.extra_body is not None:  # no flag may lift a person's limit (max_tokens, n, ...)
        from demo.engines.server import check_extra_body

        try:
            check_extra_body(args.extra_body)
        except ValueError as e:
            return str(e)
    return None


def _openai_build(args: argparse.Namespace, checkpoint: str | None) -> Any:
    from demo.engines.server import OpenAIEngine

    return OpenAIEngine(
        args.base_url, args.model, api_key=args.api_key, family=args.family,
        min_pixels=args.min_pixels, max_pixels=args.max_pixels, extra_body=args.extra_body,
    )


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("local", "run the model here with transformers", _local_flags, _local_build, _local_check, downloads=True),
        Backend(
            "openai", "stream from an OpenAI-compatible server (vLLM, SGLang, transformers serve) at --base-url",
            _openai_flags, _openai_build, _openai_check, concurrency=16,
        ),
    )
}
