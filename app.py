"""Start the Qwen VL chat app: `python app.py --help` lists the flags.

The page opens at once; the model loads meanwhile (a first question waits for it). A Hub model
that is not cached starts downloading before the page is up, and the page shows its progress.
A model that cannot be downloaded or loaded, or a bad flag, ends the program with one line
saying why (after the page has had a moment to show it too).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from demo.engines import zerogpu  # first: on ZeroGPU it imports `spaces` (before torch) and decorates the GPU function
from demo.engines.backends import BACKENDS
from demo.flags import limits_from, parse_args
from grounding.generations import (
    DEFAULT_FAMILY,
    TINY_CHECKPOINTS,
    family_from_model_type,
    family_from_name,
    generation,
    tiny_checkpoint_family,
)

__all__ = ["expected_family", "limits_from", "load_engine", "main", "parse_args"]  # what tests and benches call

FAILURE_SHOWN_FOR = 1.5  # seconds the page stays up after a failed start: its status refreshes every second

log = logging.getLogger("app")


def expected_family(args: argparse.Namespace) -> str:
    """The family the flags will load, known before loading: from --family, a tiny checkpoint's name,
    a local directory's config.json `model_type`, or else the model's name (Qwen2-VL's if none says)."""
    if getattr(args, "family", None):  # a server's model, named by --family
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
    if not BACKENDS[args.backend].downloads or args.model in TINY_CHECKPOINTS:
        return None
    from demo.engines.hub.download import fetch_in_background, is_hub_id, plan_download

    if not is_hub_id(args.model):
        return None
    return fetch_in_background(plan_download(args.model), on_progress=slot.report_download)


def load_engine(args: argparse.Namespace, checkpoint: str | None = None):
    """Build the engine the flags ask for (`demo/engines/backends.py`); `checkpoint`: the local
    directory a Hub model was downloaded to."""
    return BACKENDS[args.backend].build(args, checkpoint)


def _end(code: int, download) -> int:
    """Exit code `code`; at once if a download is still running (Python would wait for its threads)."""
    if download is not None and not download.done():
        from demo.engines.hub.download import discard_unfinished

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
    from demo.record.sessions import prepare_temp_dir

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
    stopped = f"stopped before {args.model} was ready; files already downloaded stay in the cache"
    if download is not None:
        # Ctrl+C during the download ends the program here and now, whatever the main thread is doing
        # meanwhile: a KeyboardInterrupt raised inside an import that catches everything (the page's
        # modules load while the model downloads) would be lost, and the app would go on waiting.
        def interrupted(signum, frame) -> None:
            if not download.done():
                print(stopped, file=sys.stderr)
                _end(130, download)  # ends the program: the download is still running
            signal.default_int_handler(signum, frame)  # downloaded: the usual KeyboardInterrupt

        signal.signal(signal.SIGINT, interrupted)
    try:
        return serve(args, slot, download)
    except KeyboardInterrupt:  # Ctrl+C before the model is ready (its download done, or none)
        print(stopped, file=sys.stderr)
        return _end(130, download)


def serve(args: argparse.Namespace, slot, download) -> int:
    """Open the page, wait for the download (if any), load the model, serve until Ctrl+C."""
    from demo.engines.base import ModelLoadError
    from demo.page.handlers import ChatHandlers
    from demo.page.ui import CSS, build_ui
    from demo.web import serve
    from demo.web.guard import GuardSettings
    from demo.web.policy import SHARE_CDN

    zerogpu.configure(max_seconds=args.zerogpu_max_seconds)
    limits = limits_from(args)
    from demo.record.held import Held

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
        if BACKENDS[args.backend].downloads:
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
