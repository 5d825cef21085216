"""Start the Qwen VL chat app: `python app.py --help` lists the flags.

The page opens at once; the model loads meanwhile (a first question waits for it). A model
that cannot be loaded, or a bad flag, ends the program with one line saying why.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time

from demo.limits import Limits

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
TINY_MODEL = "tiny-random"

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chat with Qwen2-VL about pictures, in the browser.")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"hub id, local checkpoint directory, or '{TINY_MODEL}' (a tiny random model built offline; "
        f"answers are noise). Default: {DEFAULT_MODEL}",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: auto (CUDA if a GPU is visible)")
    parser.add_argument(
        "--dtype",
        choices=["auto", "bfloat16", "float16", "float32"],
        default="auto",
        help="default: auto (bfloat16; float16 on GPUs without bf16)",
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
    parser.add_argument("--concurrency", type=positive_int, default=1, help="answers generated at once (default: 1)")
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
    args = parser.parse_args(argv)
    if args.min_pixels and args.max_pixels and args.min_pixels > args.max_pixels:
        parser.error("--min-pixels is larger than --max-pixels")
    if args.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        parser.error("--attn-implementation flash_attention_2 needs the flash-attn package (pip install flash-attn)")
    return args


def load_engine(args: argparse.Namespace):
    """Build the engine the flags ask for (this is where torch and transformers get imported)."""
    from demo.transformers_engine import TransformersEngine

    model = args.model
    if model == TINY_MODEL:
        from demo.tiny_model import ensure_tiny_checkpoint

        model = str(ensure_tiny_checkpoint())
        log.info("tiny random checkpoint: %s", model)
    return TransformersEngine(
        model, device=args.device, dtype=args.dtype, attn_implementation=args.attn_implementation, name=args.model
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from demo.engine_slot import EngineSlot
    from demo.handlers import ChatHandlers
    from demo.ui import CSS, build_ui

    slot = EngineSlot(args.model)
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
        from demo.transformers_engine import ModelLoadError

        reason = str(e) if isinstance(e, ModelLoadError) else f"{type(e).__name__}: {e}"
        slot.fail(reason)
        demo.close()
        print(f"error: {reason}", file=sys.stderr)
        return 1
    slot.fill(engine)
    log.info("%s is ready (%s, %s) after %.1f s", engine.model_name, engine.device, engine.dtype, time.monotonic() - started)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
