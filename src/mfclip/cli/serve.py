"""``mfclip serve --model DIR``: run the detection service and its web page.

FastAPI and uvicorn are imported only when the command runs, so the rest of the CLI works
without the ``serve`` extra.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from .common import add_face_options, at_least, face_detector_kwargs

__all__ = ["LOOPBACK_NAMES", "is_loopback", "register", "serve"]

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the service on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def _exposure_warning(host: str, port: int) -> str:
    bar = "!" * 78
    return (
        f"{bar}\n"
        f"WARNING: mfclip serve is binding to {host}:{port}, not a loopback address.\n"
        "Anyone who can reach this address can upload images and use this machine's CPU/GPU.\n"
        "The service has NO authentication, NO TLS and NO rate limiting. Put it behind a\n"
        "reverse proxy that adds them, or bind to 127.0.0.1 (the default).\n"
        f"{bar}"
    )


def serve(args: argparse.Namespace) -> int:
    """Load the model, build the app and run uvicorn until interrupted."""
    try:
        import uvicorn

        from ..serve.app import create_app
    except ImportError as exc:
        raise RuntimeError(
            f"mfclip serve needs the 'serve' extra ({exc.name} is missing): "
            "pip install 'mfclip[serve]'"
        ) from None
    from ..inference.detector import Detector

    if args.max_wait_ms < 0:
        raise ValueError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    loopback = is_loopback(args.host)
    if not loopback:
        message = _exposure_warning(args.host, args.port)
        print(message, file=sys.stderr, flush=True)
        log.warning("serving on non-loopback address %s:%d", args.host, args.port)
    if args.allowed_host:
        allowed = [*args.allowed_host, *(LOOPBACK_NAMES if loopback else ())]
    else:
        allowed = list(LOOPBACK_NAMES) if loopback else None
    detector = Detector.from_pretrained(
        args.model, device=args.device, **face_detector_kwargs(args)
    )
    app = create_app(
        detector,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        batch_size=args.batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_pixels=args.max_pixels,
        allowed_hosts=allowed,
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"mfclip serve: model {detector.info().get('name')} on {detector.device}; "
        f"page http://{shown}:{args.port}/ , API docs http://{shown}:{args.port}/docs",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the detection HTTP service and web page",
        description="Serve a model over HTTP: POST /v1/detect, GET /v1/model, GET /healthz, "
        "a web page at / and OpenAPI docs at /docs. Needs the 'serve' extra.",
    )
    p.add_argument("--model", required=True, help="model dir, run folder, or hub repo id")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--max-upload-mb",
        type=at_least(float, 0, strict=True),
        default=10.0,
        help="largest accepted upload in MiB; larger ones get HTTP 413 (default 10)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--batch-size",
        type=at_least(int, 0, strict=True),
        default=16,
        help="most images per model call",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        help="how long a request may wait for others to share its batch (default 10)",
    )
    p.add_argument(
        "--max-queue",
        type=at_least(int, 0, strict=True),
        default=256,
        help="requests allowed to wait; more get HTTP 503 (default 256)",
    )
    p.add_argument(
        "--max-pixels",
        type=at_least(int, 0, strict=True),
        default=40_000_000,
        help="largest decoded image in pixels; larger ones get HTTP 413 (default 40e6)",
    )
    p.add_argument("--faces", action="store_true", help="detect and crop the largest face first")
    add_face_options(p)
    p.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="accept requests for this Host name (repeatable); on loopback, localhost names "
        "are always accepted and others refused (DNS-rebinding guard)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    p.set_defaults(func=serve)
