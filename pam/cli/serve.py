"""Verbs ``serve`` (the OpenAI-compatible region server) and ``demo`` (the Gradio UI)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from . import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="OpenAI-compatible region server (POST /v1/chat/completions)")
    _model_args(serve)
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: env PAM_API_KEY, else none)"
    )
    serve.add_argument("--max-batch-size", type=int, default=8, help="most regions in one model call")
    serve.add_argument("--max-wait-ms", type=float, default=10.0, help="how long a batch waits for more requests")
    serve.add_argument("--max-queue", type=int, default=256, help="waiting requests before answering 503")
    serve.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body accepted (413 above)")
    serve.set_defaults(func=_serve)
    demo = sub.add_parser("demo", help="Gradio demo: image regions and streaming video captions")
    _model_args(demo)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument(
        "--share", action="store_true", help="also ask Gradio for a public *.gradio.live link (default: local only)"
    )
    demo.set_defaults(func=_demo)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", default=None, help="PAM checkpoint folder (default: the debug-size model with RANDOM weights)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-new-tokens", type=int, default=128)


def _check_common(args: argparse.Namespace) -> None:
    if args.checkpoint is not None and not os.path.isdir(args.checkpoint):
        raise FileNotFoundError(f"--checkpoint: no folder {args.checkpoint}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in [0, 65535], got {args.port}")
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _serve(args: argparse.Namespace) -> int:
    _check_common(args)
    if args.max_batch_size < 1:
        raise UsageError(f"--max-batch-size must be >= 1, got {args.max_batch_size}")
    if args.max_wait_ms < 0:
        raise UsageError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    api_key = args.api_key or os.environ.get("PAM_API_KEY") or None
    if not _is_loopback(args.host) and not api_key:
        print(f"pam serve: warning: listening on {args.host} without an API key", file=sys.stderr)
    from ..serve.app import create_app
    from ..serve.engine import Engine
    from ..serve.server import serve_forever

    engine = Engine.load(args.checkpoint, device=args.device, max_new_tokens=args.max_new_tokens)
    if engine.random_weights:
        print(
            "pam serve: no --checkpoint: serving the debug-size model with RANDOM weights (its text is meaningless)",
            file=sys.stderr,
        )
    app = create_app(
        engine,
        api_key=api_key,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_mb=args.max_body_mb,
    )
    serve_forever(app, host=args.host, port=args.port)
    return 0


def _demo(args: argparse.Namespace) -> int:
    _check_common(args)
    from ..serve.demo import launch_demo
    from ..serve.engine import Engine

    engine = Engine.load(args.checkpoint, device=args.device, max_new_tokens=args.max_new_tokens)
    if engine.random_weights:
        print(
            "pam demo: no --checkpoint: the debug-size model with RANDOM weights (its text is meaningless)",
            file=sys.stderr,
        )
    launch_demo(engine, host=args.host, port=args.port, block=True, share=args.share)
    return 0
