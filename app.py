"""Start the Qwen VL chat app: `python app.py --help` lists the flags.

The page opens at once; the model loads meanwhile (a first question waits for it). A model
that cannot be loaded, or a bad flag, ends the program with one line saying why.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path

from demo.limits import Limits
from grounding.generations import (
    DEFAULT_FAMILY,
    FAMILIES,
    TINY_CHECKPOINTS,
    family_from_model_type,
    family_from_name,
    generation,
    tiny_checkpoint_family,
)

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
ENV_PREFIX = "QWEN_CHAT_"

log = logging.getLogger("app")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(
        max_file_mb=args.max_file_mb,
        max_images_per_turn=args.max_images_per_turn,
        max_images=args.max_images,
        max_prompt_chars=args.max_prompt_chars,
        max_visual_tokens=args.max_visual_tokens,
    )


def _defaults_from_environment(parser: argparse.ArgumentParser) -> None:
    """Take each flag's default from {ENV_PREFIX}FLAG_NAME when that is set (for Spaces)."""
    environ = {**{f"{ENV_PREFIX}HOST": os.environ.get("GRADIO_SERVER_NAME"), f"{ENV_PREFIX}PORT": os.environ.get("GRADIO_SERVER_PORT")}}
    environ.update({k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)})
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = environ.get(ENV_PREFIX + action.dest.upper())
        if value is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            action.default = value.strip().lower() in ("1", "true", "yes", "on")
        elif action.choices is not None and value not in action.choices:
            parser.error(f"{ENV_PREFIX}{action.dest.upper()}={value!r}: expected one of {', '.join(action.choices)}")
        else:
            action.default = value  # a string default goes through the flag's own type check


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Chat with Qwen2-VL about pictures and videos, in the browser.",
        epilog=f"Every flag can also come from an environment variable (a Space has no command line): "
        f"{ENV_PREFIX}MODEL, {ENV_PREFIX}MAX_NEW_TOKENS, ... (--host and --port also from GRADIO_SERVER_NAME and "
        "GRADIO_SERVER_PORT). A flag on the command line wins.",
    )
    parser.add_argument(
        "--backend",
        choices=["local", "openai"],
        default="local",
        help="local: run the model here with transformers; openai: stream from an OpenAI-compatible server "
        "(vLLM, SGLang, transformers serve) at --base-url. Default: local",
    )
    parser.add_argument("--base-url", help="with --backend openai: the server's URL, e.g. http://HOST:8000/v1")
    parser.add_argument("--api-key", help="with --backend openai: the server's key (default: $OPENAI_API_KEY)")
    parser.add_argument(
        "--family",
        choices=FAMILIES,
        help="with --backend openai: the model's grounding format (default: read from the model name)",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"hub id, local checkpoint directory, or a tiny random model built offline (answers are noise): "
        f"{', '.join(TINY_CHECKPOINTS)}. Default: {DEFAULT_MODEL}",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: auto (CUDA if a GPU is visible)")
    parser.add_argument(
        "--dtype",
        choices=["auto", "bfloat16", "float16", "float32"],
        default="auto",
        help="default: auto (bfloat16 on a GPU, float16 where it lacks bf16; float32 on the CPU, "
        "where bfloat16 is emulated and several times slower)",
    )
    parser.add_argument(
        "--attn-implementation",
        choices=["sdpa", "eager", "flash_attention_2"],
        default="sdpa",
        help="attention kernel; flash_attention_2 needs the flash-attn package and a GPU. Default: sdpa",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=positive_int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--max-new-tokens", type=positive_int, default=512, help="default of the setting (default: 512)")
    parser.add_argument("--min-pixels", type=positive_int, default=None, help="default min pixels per image (default: the model's)")
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        help="default max pixels per image (default: the model's, capped at 1280 visual tokens)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        help="answers generated at once (default: 1 for the local engine, 16 for a server)",
    )
    parser.add_argument(
        "--cache-mb",
        type=int,
        default=2048,
        help="local engine: memory for all sessions' reusable KV caches and vision encodings, in MB; "
        "0 re-encodes every turn (default: 2048)",
    )
    limits = parser.add_argument_group("limits per person (each refusal says which limit)")
    defaults = Limits()
    limits.add_argument("--max-file-mb", type=positive_float, default=defaults.max_file_mb, help="largest upload, in MB (default: %(default)s)")
    limits.add_argument("--max-images-per-turn", type=positive_int, default=defaults.max_images_per_turn, help="default: %(default)s")
    limits.add_argument("--max-images", type=positive_int, default=defaults.max_images, help="images per conversation (default: %(default)s)")
    limits.add_argument("--max-prompt-chars", type=positive_int, default=defaults.max_prompt_chars, help="characters per message (default: %(default)s)")
    limits.add_argument(
        "--max-visual-tokens", type=positive_int, default=defaults.max_visual_tokens,
        help="visual tokens of all images in one request (default: %(default)s)",
    )
    _defaults_from_environment(parser)
    args = parser.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = 1 if args.backend == "local" else 16
    if args.backend == "openai" and not args.base_url:
        parser.error("--backend openai needs --base-url (for example http://127.0.0.1:8000/v1)")
    if args.cache_mb < 0:
        parser.error("--cache-mb must be 0 or more")
    if args.min_pixels and args.max_pixels and args.min_pixels > args.max_pixels:
        parser.error("--min-pixels is larger than --max-pixels")
    if args.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        parser.error("--attn-implementation flash_attention_2 needs the flash-attn package (pip install flash-attn)")
    return args


def expected_family(args: argparse.Namespace) -> str:
    """The family the flags will load, known before loading: from --family, a tiny checkpoint's name,
    a local directory's config.json `model_type`, or else the model's name (Qwen2-VL's if none says)."""
    if args.backend == "openai" and args.family:
        return args.family
    if args.model in TINY_CHECKPOINTS:
        return tiny_checkpoint_family(args.model) or DEFAULT_FAMILY
    config = Path(args.model, "config.json")
    if config.is_file():
        try:
            return family_from_model_type(json.loads(config.read_text("utf-8")).get("model_type", ""))
        except (OSError, ValueError, AttributeError):  # unreadable, or not a Qwen VL: loading will say why
            pass
    return family_from_name(args.model) or DEFAULT_FAMILY


def load_engine(args: argparse.Namespace):
    """Build the engine the flags ask for (the local one is where torch and transformers get imported)."""
    if args.backend == "openai":
        from demo.engines.server import OpenAIEngine

        return OpenAIEngine(
            args.base_url,
            args.model,
            api_key=args.api_key,
            family=args.family,
            min_pixels=args.min_pixels,
            max_pixels=args.max_pixels,
        )
    from demo.engines.zerogpu import import_spaces_first, on_zero_gpu

    import_spaces_first()
    from demo.engines.local import TransformersEngine

    model = args.model
    if model in TINY_CHECKPOINTS:
        from demo.engines.tiny import ensure_tiny_checkpoint

        model = str(ensure_tiny_checkpoint(model))
        log.info("tiny random checkpoint: %s", model)
    engine = TransformersEngine(
        model,
        device=args.device,
        dtype=args.dtype,
        attn_implementation=args.attn_implementation,
        name=args.model,
        cache_bytes=args.cache_mb * 2**20,
    )
    return on_zero_gpu(engine)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from demo.engines.slot import EngineSlot
    from demo.handlers import ChatHandlers
    from demo.ui import CSS, build_ui

    slot = EngineSlot(args.model, expected_family(args))
    handlers = ChatHandlers(slot, limits=limits_from(args))
    demo = build_ui(
        handlers,
        max_new_tokens=args.max_new_tokens,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        concurrency=args.concurrency,
    )
    demo.queue(max_size=64)
    try:
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            prevent_thread_lock=True,
            css=CSS,
            max_file_size=int(args.max_file_mb * 1024 * 1024),
        )
    except OSError as e:  # the port is taken, the address is not ours, ...
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1

    log.info("loading %s (downloads it first if it is not cached)…", args.model)
    started = time.monotonic()
    try:
        engine = load_engine(args)
    except Exception as e:  # noqa: BLE001 - one line for the person, not a traceback wall
        from demo.engines.base import ModelLoadError

        reason = str(e) if isinstance(e, (ModelLoadError, ValueError)) else f"{type(e).__name__}: {e}"
        slot.fail(reason)
        demo.close()
        print(f"error: {reason}", file=sys.stderr)
        return 1
    slot.fill(engine)
    log.info("%s (%s) is ready after %.1f s", engine.model_name, generation(engine.family).title, time.monotonic() - started)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
