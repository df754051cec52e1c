"""``mfclip serve --model DIR``: run the detection service and its web page.

FastAPI and uvicorn are imported only when the command runs, so the rest of the CLI works
without the ``serve`` extra.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..serve.auth import is_loopback
from .common import add_face_options, at_least, face_detector_kwargs

__all__ = ["LOOPBACK_NAMES", "is_loopback", "register", "serve"]

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _access_logging() -> None:
    """JSON access lines alone on stdout (one object a line, for log shippers)."""
    from ..serve.logs import ACCESS_LOGGER

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger(ACCESS_LOGGER)
    access.handlers = [handler]
    access.setLevel(logging.INFO)
    access.propagate = False


def serve(args: argparse.Namespace) -> int:
    """Check the exposure, load the keys and the model, and serve until SIGTERM/Ctrl-C."""
    try:
        from ..serve.app import create_app
        from ..serve.auth import KeyRing, check_exposure
        from ..serve.shutdown import run
    except ImportError as exc:
        raise RuntimeError(
            f"mfclip serve needs the 'serve' extra ({exc.name} is missing): "
            "pip install 'mfclip[serve]'"
        ) from None
    from ..inference.detector import Detector

    if args.max_wait_ms < 0:
        raise ValueError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    keys = KeyRing.from_file(args.api_key_file) if args.api_key_file else None
    check_exposure(args.host, keys, args.insecure)  # before the slow model load
    loopback = is_loopback(args.host)
    if keys is not None:
        print(
            f"mfclip serve: {len(keys)} API key(s) loaded (ids {', '.join(keys.ids)})",
            file=sys.stderr,
        )
    elif not loopback:
        log.warning("serving on %s without API keys (--insecure)", args.host)
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
        api_keys=keys,
        rate_limit=args.rate_limit or None,
        request_timeout_s=args.request_timeout or None,
        cors_origins=args.cors_origin or (),
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"mfclip serve: model {detector.info().get('name')} on {detector.device}; "
        f"page http://{shown}:{args.port}/ , API docs http://{shown}:{args.port}/docs",
        file=sys.stderr,
        flush=True,
    )
    _access_logging()
    run(
        app,
        host=args.host,
        port=args.port,
        grace_period_s=args.grace_period,
        log_level=args.log_level,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the detection HTTP service and web page",
        description="Serve a model over HTTP: POST /v1/detect, GET /v1/model, GET /healthz, "
        "GET /readyz, GET /metrics, a web page at / and OpenAPI docs at /docs. Needs the "
        "'serve' extra. Off loopback it needs --api-key-file (or --insecure).",
    )
    p.add_argument("--model", required=True, help="model dir, run folder, or hub repo id")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (default 127.0.0.1); any other needs --api-key-file or --insecure",
    )
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
        "--api-key-file",
        metavar="FILE",
        help="require an API key (Authorization: Bearer KEY or X-API-Key: KEY) on the API "
        "and /metrics; FILE holds one key a line, blank lines and # comments ignored",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve on a non-loopback address without API keys (only behind a proxy that "
        "authenticates clients)",
    )
    p.add_argument(
        "--rate-limit",
        type=at_least(int, 0),
        default=0,
        metavar="N",
        help="requests per minute per client (API key, or address without keys) on /v1/*; "
        "more get HTTP 429 with Retry-After (default 0: no limit)",
    )
    p.add_argument(
        "--request-timeout",
        type=at_least(float, 0),
        default=60.0,
        metavar="S",
        help="longest wait for the model (queue and inference); longer gets HTTP 504 "
        "(default 60; 0: no limit)",
    )
    p.add_argument(
        "--grace-period",
        type=at_least(float, 0),
        default=8.0,
        metavar="S",
        help="on SIGTERM/Ctrl-C, finish requests in flight for at most S seconds; those still "
        "queued then get HTTP 503 (default 8, inside docker stop's 10)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="let pages from ORIGIN (e.g. https://review.example.org) call the API "
        "(repeatable; default: no cross-origin access)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    p.set_defaults(func=serve)
