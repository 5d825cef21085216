"""Start the Qwen VL chat app: `python app.py --help` lists the flags.

The page opens at once; the model loads meanwhile (a first question waits for it). A Hub model
that is not cached starts downloading before the page is up, and the page shows its progress.
A model that cannot be downloaded or loaded, or a bad flag, ends the program with one line
saying why (after the page has had a moment to show it too).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from demo.engines import zerogpu  # first: on ZeroGPU it imports `spaces` (before torch) and decorates the GPU function
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
FAILURE_SHOWN_FOR = 1.5  # seconds the page stays up after a failed start: its status refreshes every second

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


def proxy_list(text: str) -> str:
    """Comma-separated addresses or networks of trusted proxies, checked; '*' is refused."""
    import ipaddress

    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or "*" in items:
        raise argparse.ArgumentTypeError("name the proxies' addresses or networks ('*' would believe any client's X-Forwarded-For)")
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not an IP address or network") from None
    return ",".join(items)


def credentials(text: str) -> tuple[str, str]:
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"skip_special_tokens\": false}}', got {text!r}")
    return value


def limits_from(args: argparse.Namespace) -> Limits:
    defaults = Limits()
    return Limits(
        max_image_mb=args.max_image_mb or args.max_file_mb or defaults.max_image_mb,
        max_video_mb=args.max_video_mb or args.max_file_mb or defaults.max_video_mb,
        max_images_per_turn=args.max_images_per_turn,
        max_images=args.max_images,
        max_prompt_chars=args.max_prompt_chars,
        max_system_prompt_chars=args.max_system_prompt_chars,
        max_visual_tokens=args.max_visual_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
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
        elif action.type is not None:
            try:
                action.default = action.type(value)
            except (argparse.ArgumentTypeError, ValueError) as e:
                parser.error(f"{ENV_PREFIX}{action.dest.upper()}={value!r}: {e}")
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
        "--extra-body",
        type=json_object,
        default=None,
        metavar="JSON",
        help="with --backend openai: a JSON object of server-specific request fields added to every request, e.g. "
        "'{\"skip_special_tokens\": false}' so that vLLM keeps Qwen2-VL's grounding tokens",
    )
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
        "--quantize",
        choices=["none", "int8", "auto"],
        default="none",
        help="int8: the local model's linear layers in int8 on the CPU (measured with the 2B model on a 2-core Intel "
        "Xeon: 2.4x float32's decoding speed, 0.44x its time to the first token and 0.44x its peak memory; other CPUs "
        "differ, see docs/performance.md); auto: int8 on the CPU, none on a GPU. Default: none",
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
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=512,
        help="default of the setting (default: 512); the setting's slider reaches at least this far (8192 otherwise)",
    )
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
        help="answers generated at once (default: 1 for the local engine, 16 for a server; the local engine on a CPU computes one at a time)",
    )
    parser.add_argument(
        "--cache-mb",
        type=int,
        default=2048,
        help="local engine: memory for all sessions' reusable KV caches and vision encodings, in MB; "
        "0 re-encodes every turn (default: 2048)",
    )
    parser.add_argument(
        "--zerogpu-max-seconds",
        type=positive_int,
        default=zerogpu.DEFAULT_MAX_SECONDS,
        help="on a ZeroGPU Space: the most GPU time one answer asks for; an answer asks for about "
        f"{zerogpu.START_SECONDS} s + max new tokens / {zerogpu.TOKENS_PER_SECOND} per second, and ends itself "
        "before its time runs out (default: %(default)s)",
    )
    limits = parser.add_argument_group("limits per person (each refusal says which limit)")
    defaults = Limits()
    limits.add_argument("--max-image-mb", type=positive_float, default=None, help=f"largest picture file, in MB (default: {defaults.max_image_mb:g})")
    limits.add_argument(
        "--max-video-mb", type=positive_float, default=None,
        help=f"largest video file, in MB (default: {defaults.max_video_mb:g}: 30 minutes of 720p from a phone)",
    )
    limits.add_argument("--max-file-mb", type=positive_float, default=None, help="both of the above at once (an older flag)")
    limits.add_argument("--max-images-per-turn", type=positive_int, default=defaults.max_images_per_turn, help="default: %(default)s")
    limits.add_argument("--max-images", type=positive_int, default=defaults.max_images, help="images per conversation (default: %(default)s)")
    limits.add_argument("--max-prompt-chars", type=positive_int, default=defaults.max_prompt_chars, help="characters per message (default: %(default)s)")
    limits.add_argument(
        "--max-system-prompt-chars", type=positive_int, default=defaults.max_system_prompt_chars,
        help="characters of the system prompt (default: %(default)s)",
    )
    limits.add_argument(
        "--max-visual-tokens", type=positive_int, default=defaults.max_visual_tokens,
        help="visual tokens of all images in one request (default: %(default)s)",
    )
    limits.add_argument(
        "--max-prompt-tokens", type=positive_int, default=defaults.max_prompt_tokens,
        help="tokens of one request's whole prompt, text, pictures and videos (default: %(default)s)",
    )
    limits.add_argument(
        "--session-idle-minutes", type=positive_float, default=60.0,
        help="a conversation idle this long is dropped with its files (closing the tab drops it at once; default: %(default)s)",
    )
    sharing = parser.add_argument_group("sharing (who may use the app, and how much each may take)")
    sharing.add_argument(
        "--max-answer-tokens", type=positive_int, default=8192,
        help="ceiling of one answer's new tokens: the setting's slider stops there and API calls above it are "
        "refused (a shared CPU: 1024 or less; default: %(default)s)",
    )
    sharing.add_argument(
        "--max-pending-per-client", type=positive_int, default=4,
        help="answers and file events one client address may have waiting or running at once; one more is "
        "refused with a sentence (default: %(default)s)",
    )
    sharing.add_argument(
        "--max-held-mb-per-client", type=positive_float, default=1024.0,
        help="memory the open conversations of one client address may hold together (pictures, video frames, "
        "text); a message or Load past it is refused with a sentence (default: %(default)s)",
    )
    sharing.add_argument(
        "--max-held-mb", type=positive_float, default=8192.0,
        help="memory all open conversations may hold together (default: %(default)s)",
    )
    sharing.add_argument(
        "--max-sessions-per-client", type=positive_int, default=64,
        help="conversations (tabs, API sessions) one client address may have open at once (default: %(default)s)",
    )
    sharing.add_argument(
        "--new-sessions-per-minute", type=positive_int, default=30,
        help="conversations one client address may open a minute, reloads included (default: %(default)s)",
    )
    sharing.add_argument(
        "--max-sessions", type=positive_int, default=5000,
        help="conversations open in all; Gradio keeps 1000 more, so an open one is never pushed out (default: %(default)s)",
    )
    sharing.add_argument(
        "--max-unsent-upload-mb", type=positive_float, default=None,
        help="MB of uploads one client may keep without sending them (8 times that for all clients; unsent "
        "uploads are deleted after 30 minutes; default: the largest file and a message's worth of pictures)",
    )
    sharing.add_argument(
        "--trusted-proxies", type=proxy_list, default=None, metavar="ADDRESSES",
        help="comma-separated addresses or networks of your proxies, whose X-Forwarded-For names the client "
        "(default: none; on a Hugging Face Space, the private networks its proxy connects from)",
    )
    sharing.add_argument(
        "--auth", type=credentials, default=None, metavar="USER:PASSWORD",
        help="ask for this user name and password (Gradio's login page; gradio_client: auth=(user, password)); "
        "prefer the environment variable, which `ps` does not show",
    )
    _defaults_from_environment(parser)
    args = parser.parse_args(argv)
    if args.max_new_tokens > args.max_answer_tokens:
        parser.error(f"--max-new-tokens {args.max_new_tokens} is above --max-answer-tokens {args.max_answer_tokens}")
    if args.concurrency is None:
        args.concurrency = 1 if args.backend == "local" else 16
    if args.backend == "openai" and not args.base_url:
        parser.error("--backend openai needs --base-url (for example http://127.0.0.1:8000/v1)")
    if args.extra_body is not None and args.backend != "openai":
        parser.error("--extra-body is for --backend openai (it is added to the server's requests)")
    if args.extra_body is not None:  # no flag may lift a person's limit (max_tokens, n, ...)
        from demo.engines.server import check_extra_body

        try:
            check_extra_body(args.extra_body)
        except ValueError as e:
            parser.error(str(e))
    if args.quantize == "int8" and args.backend != "local":
        parser.error("--quantize int8 is for --backend local (a server quantizes its own model)")
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


def start_download(args: argparse.Namespace, slot):
    """For the local engine and a Hub id: ask the Hub about the model, then download it beside the page's start-up.

    Asking takes a few seconds at most, and a Hub that cannot be reached (with no cached copy), a
    missing or gated model raise `ModelLoadError` before the page opens. Returns a future of the
    local snapshot directory, or None when there is nothing to download.
    """
    if args.backend != "local" or args.model in TINY_CHECKPOINTS:
        return None
    from demo.engines.download import fetch_in_background, is_hub_id, plan_download

    if not is_hub_id(args.model):
        return None
    return fetch_in_background(plan_download(args.model), on_progress=slot.report_download)


def load_engine(args: argparse.Namespace, checkpoint: str | None = None):
    """Build the engine the flags ask for (the local one is where torch and transformers get imported).

    `checkpoint`: the local directory a Hub model was downloaded to.
    """
    if args.backend == "openai":
        from demo.engines.server import OpenAIEngine

        return OpenAIEngine(
            args.base_url,
            args.model,
            api_key=args.api_key,
            family=args.family,
            min_pixels=args.min_pixels,
            max_pixels=args.max_pixels,
            extra_body=args.extra_body,
        )
    from demo.engines.local import TransformersEngine

    model = str(checkpoint or args.model)
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
        quantize=args.quantize,
    )
    return zerogpu.on_zero_gpu(engine)


def _end(code: int, download) -> int:
    """Exit code `code`; at once if a download is still running (Python would wait for its threads)."""
    if download is not None and not download.done():
        from demo.engines.download import discard_unfinished

        discard_unfinished()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _unsent_caps(per_client_mb: float) -> dict[str, int]:
    per_client = int(per_client_mb * 1024 * 1024)
    return {"unsent_per_client": per_client, "unsent_total": 8 * per_client}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # huggingface_hub's client: one line per request
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from demo.sessions import prepare_temp_dir

    temp_dir = prepare_temp_dir()  # before Gradio is imported: it reads GRADIO_TEMP_DIR once
    log.info("temporary files in %s (deleted at exit)", temp_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stopped Space or container exits cleanly, deleting them

    from demo.engines.base import ModelLoadError
    from demo.engines.slot import EngineSlot

    slot = EngineSlot(args.model, expected_family(args))
    try:
        download = start_download(args, slot)  # under way while Gradio is imported and the page starts
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        return serve(args, slot, download)
    except KeyboardInterrupt:  # Ctrl+C before the model is ready, maybe during its download
        print(f"stopped before {args.model} was ready; files already downloaded stay in the cache", file=sys.stderr)
        return _end(130, download)


def serve(args: argparse.Namespace, slot, download) -> int:
    """Open the page, wait for the download (if any), load the model, serve until Ctrl+C."""
    from demo.engines.base import ModelLoadError
    from demo.handlers import ChatHandlers
    from demo.ui import CSS, build_ui
    from demo.web import serve
    from demo.web.guard import GuardSettings
    from demo.web.policy import SHARE_CDN

    zerogpu.configure(max_seconds=args.zerogpu_max_seconds)
    limits = limits_from(args)
    from demo.held import Held

    held = Held(per_client_mb=args.max_held_mb_per_client, total_mb=args.max_held_mb)
    handlers = ChatHandlers(slot, limits=limits, session_ttl=args.session_idle_minutes * 60, held=held)
    demo = build_ui(
        handlers,
        max_new_tokens=args.max_new_tokens,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        concurrency=args.concurrency,
        max_answer_tokens=args.max_answer_tokens,
    )
    import gradio

    from demo.web import upload_bytes
    from demo.web.clients import SessionLimits

    sessions = SessionLimits(
        per_client=args.max_sessions_per_client, per_minute=args.new_sessions_per_minute, total=args.max_sessions,
        idle=args.session_idle_minutes * 60,
    )
    guard = GuardSettings(
        max_pending=args.max_pending_per_client,
        share_cdn=f"{SHARE_CDN}/{gradio.__version__}/" if args.share else None,
        sessions=sessions,
        **_unsent_caps(args.max_unsent_upload_mb or upload_bytes.default_per_client_mb(limits.max_upload_mb, limits.max_image_mb, limits.max_images_per_turn)),
        **({"trusted_proxies": tuple(args.trusted_proxies.split(","))} if args.trusted_proxies else {}),
    )
    try:
        serve.launch(
            demo,
            guard,
            max_queue=64,
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            prevent_thread_lock=True,
            css=CSS,
            max_file_size=int(limits.max_upload_mb * 1024 * 1024),  # each kind's own limit: in the handler
            auth=args.auth,
        )
    except OSError as e:  # the port is taken, the address is not ours, ...
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return _end(1, download)

    started = time.monotonic()
    try:
        checkpoint = download.result() if download is not None else None
        if args.backend == "local":
            log.info("loading the weights of %s into memory…", args.model)
            slot.report_loading()
        engine = load_engine(args, checkpoint)
    except Exception as e:  # noqa: BLE001 - one line for the person, not a traceback wall
        reason = str(e) if isinstance(e, (ModelLoadError, ValueError)) else f"{type(e).__name__}: {e}"
        slot.fail(reason)
        print(f"error: {reason}", file=sys.stderr)
        if slot.watched(within=min(5.0, time.monotonic() - started)):  # an open tab's status timer (1 s) fetches it first
            time.sleep(FAILURE_SHOWN_FOR)
        demo.close()
        return 1
    except KeyboardInterrupt:
        demo.close()
        raise
    slot.fill(engine)
    log.info("%s (%s) is ready after %.1f s", engine.model_name, generation(engine.family).title, time.monotonic() - started)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
