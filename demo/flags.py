"""The command line: every flag, its type, its default and its environment variable.

`parse_args` reads the flags (a Space has no command line: each flag's default can come from
`QWEN_CHAT_` and its name), checks them and ends the program with one line saying what is wrong.
Each backend's own flags and checks are the backend's (`demo/engines/backends.py`); a flag of
another backend than the one chosen is refused. `limits_from` turns the flags into `Limits`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os

from demo.engines import zerogpu
from demo.engines.backends import BACKENDS
from demo.media.resize import DEFAULT_MAX_VISUAL_TOKENS
from demo.record.limits import Limits
from grounding.generations import TINY_CHECKPOINTS

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
ENV_PREFIX = "QWEN_CHAT_"


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Chat with Qwen VL models about pictures and videos, in the browser.",
        epilog=f"Every flag can also come from an environment variable (a Space has no command line): "
        f"{ENV_PREFIX}MODEL, {ENV_PREFIX}MAX_NEW_TOKENS, ... (--host and --port also from GRADIO_SERVER_NAME and "
        "GRADIO_SERVER_PORT). A flag on the command line wins.",
    )
    parser.add_argument(
        "--backend", choices=list(BACKENDS), default="local",
        help="; ".join(f"{b.name}: {b.summary}" for b in BACKENDS.values()) + ". Default: local",
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"hub id, local checkpoint directory, or a tiny random model built offline (answers are noise): "
        f"{', '.join(TINY_CHECKPOINTS)}; with a server, the name it serves. Default: {DEFAULT_MODEL}",
    )
    owned: dict[str, str] = {}  # a backend's flag -> its backend
    for backend in BACKENDS.values():
        group = parser.add_argument_group(f"--backend {backend.name}")
        backend.add_flags(group)
        owned.update({action.dest: backend.name for action in group._group_actions})
    _page_flags(parser)
    _limit_flags(parser.add_argument_group("limits per person (each refusal says which limit)"))
    _sharing_flags(parser.add_argument_group("sharing (who may use the app, and how much each may take)"))
    _defaults_from_environment(parser)
    args = parser.parse_args(argv)
    backend = BACKENDS[args.backend]
    for action in parser._actions:  # another backend's flag, set: it would be ignored
        owner = owned.get(action.dest)
        value = getattr(args, action.dest, None)
        if owner is not None and owner != backend.name and value != action.default:
            shown = f" {value}" if action.choices else ""
            parser.error(f"{action.option_strings[0]}{shown} is for --backend {owner}")
    if complaint := backend.check(args):
        parser.error(complaint)
    if args.concurrency is None:
        args.concurrency = backend.concurrency
    if args.max_new_tokens > args.max_answer_tokens:
        parser.error(f"--max-new-tokens {args.max_new_tokens} is above --max-answer-tokens {args.max_answer_tokens}")
    if args.min_pixels and args.max_pixels and args.min_pixels > args.max_pixels:
        parser.error("--min-pixels is larger than --max-pixels")
    return args


def _page_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=positive_int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=512,
        help="default of the setting (default: 512); the setting's slider reaches at least this far (8192 otherwise)",
    )
    parser.add_argument("--min-pixels", type=positive_int, default=None, help="default min pixels per image (default: the model's)")
    parser.add_argument(
        "--max-pixels", type=positive_int, default=None,
        help=f"default max pixels per image (default: the model's, capped at {DEFAULT_MAX_VISUAL_TOKENS} visual tokens)",
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=None,
        help="answers generated at once (default: "
        + ", ".join(f"{b.concurrency} for --backend {b.name}" for b in BACKENDS.values())
        + "; the local engine on a CPU computes one at a time)",
    )
    parser.add_argument(
        "--zerogpu-max-seconds", type=positive_int, default=zerogpu.DEFAULT_MAX_SECONDS,
        help="on a ZeroGPU Space: the most GPU time one answer asks for; an answer asks for about "
        f"{zerogpu.START_SECONDS} s + max new tokens / {zerogpu.TOKENS_PER_SECOND} per second, and ends itself "
        "before its time runs out (default: %(default)s)",
    )


def _limit_flags(limits: argparse._ArgumentGroup) -> None:
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
        help="a conversation idle this long is dropped with its files (closing the tab drops it at once; a "
        "session with no heartbeat, such as a REST call's, after 10 minutes; default: %(default)s)",
    )


def _sharing_flags(sharing: argparse._ArgumentGroup) -> None:
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


def _defaults_from_environment(parser: argparse.ArgumentParser) -> None:
    """Take each flag's default from {ENV_PREFIX}FLAG_NAME when that is set (for Spaces)."""
    environ = {f"{ENV_PREFIX}HOST": os.environ.get("GRADIO_SERVER_NAME"), f"{ENV_PREFIX}PORT": os.environ.get("GRADIO_SERVER_PORT")}
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
