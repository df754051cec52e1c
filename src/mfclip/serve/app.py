"""The HTTP service: routes, upload limits, decoding from the uploaded bytes, the web page.

The model runs on one worker thread behind a micro-batcher (:mod:`.batcher`). Before any
route, pure ASGI middleware, outermost first: the access log and request metrics
(:mod:`.logs`), the body and ``Host`` guard (:mod:`.guard`), CORS when origins are given,
and the API keys and rate limit (:mod:`.access`). The event loop never runs the model or
decodes an image: it only moves bytes and futures around.

Nothing a request sends is ever used as a filesystem path: the upload's file name is
reported back (its base name, for display) and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Security, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from ..operating import OperatingPoint
from ..preprocess.decode import ImageDecodeError, decode_image
from ..version import __version__
from .access import AccessGate
from .auth import KeyRing
from .batcher import (
    BatcherStats,
    DetectorLike,
    InferenceError,
    MicroBatcher,
    QueueFullError,
    ShuttingDownError,
)
from .guard import MIB, Guard, too_large
from .logs import AccessLog
from .metrics import CONTENT_TYPE_LATEST, ServeMetrics
from .ratelimit import RateLimiter
from .schemas import DetectResult, ErrorBody, ModelInfo

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "BatcherStats",
    "MicroBatcher",
    "QueueFullError",
    "create_app",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 10 * MIB
#: Decoded-size cap for uploads: a 10 MiB PNG can expand to gigabytes of pixels.
DEFAULT_MAX_PIXELS = 40_000_000
#: Room for multipart boundaries, part headers and the small ``explain`` field.
MULTIPART_SLACK = 64 * 1024


# ---------------------------------------------------------------------------- helpers
def _display_name(filename: str | None) -> str:
    """The upload's base name, for display only; it never becomes a path."""
    if not filename:
        return "upload"
    name = PureWindowsPath(PurePosixPath(filename).name).name
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or "upload"


def _json_safe(value: Any) -> Any:
    """NaN and infinities -> None: JSON has no such numbers (e.g. an undefined AUC)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _decode_bytes(data: bytes, max_pixels: int | None) -> Image.Image:
    """The package's one decoder, straight from the uploaded bytes (no temporary file)."""
    return decode_image(data, max_pixels=max_pixels, name="upload")


def _load_page() -> tuple[str, str]:
    """The bundled page and a Content-Security-Policy allowing exactly its inline code."""
    page = resources.files("mfclip.serve").joinpath("static/index.html").read_text("utf-8")

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks)
        return " ".join(f"'sha256-{d}'" for d in digests)

    csp = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return page, csp


def _model_info(detector: DetectorLike) -> dict[str, Any]:
    """``detector.info()`` made JSON-safe, with the operating point's one-line summary."""
    info = _json_safe(jsonable_encoder(detector.info()))
    point = getattr(detector, "operating_point", None)
    if isinstance(point, OperatingPoint):
        info["operating_point"] = {**_json_safe(point.to_dict()), "summary": point.summary()}
    return info


# ---------------------------------------------------------------------------- the app
def create_app(
    detector: DetectorLike,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    batch_size: int = 16,
    max_wait_ms: float = 10.0,
    max_queue: int = 256,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    allowed_hosts: Sequence[str] | None = None,
    api_keys: KeyRing | None = None,
    rate_limit: int | None = None,
    rate_window_s: float = 60.0,
    request_timeout_s: float | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The service for ``detector``.

    ``allowed_hosts=None`` accepts any ``Host`` header; ``api_keys=None`` needs no key;
    ``rate_limit`` is requests per ``rate_window_s`` per client (None: no limit);
    ``request_timeout_s`` bounds the wait for the model (None: no bound); ``cors_origins``
    lists the only other origins whose pages may call the API (none by default).
    """
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be >= 1, got {max_upload_bytes}")
    if request_timeout_s is not None and request_timeout_s <= 0:
        raise ValueError(f"request_timeout_s must be > 0, got {request_timeout_s}")
    limiter = RateLimiter(rate_limit, rate_window_s) if rate_limit else None
    batcher = MicroBatcher(detector, batch_size, max_wait_ms, max_queue)
    info = _model_info(detector)
    metrics = ServeMetrics(lambda: batcher.queued, info.get("name"), __version__)
    batcher.on_batch = metrics.observe_batch
    serving = {
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": max_pixels,
        "batch_size": batch_size,
        "max_wait_ms": max_wait_ms,
        "max_queue": max_queue,
        "rate_limit": None if limiter is None else limiter.limit,
        "rate_window_s": None if limiter is None else limiter.window_s,
        "request_timeout_s": request_timeout_s,
        "api_key_required": api_keys is not None,
    }
    page, csp = _load_page()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="mfclip",
        version=__version__,
        description=(
            "Face-forgery detection with MFCLIP. Upload an image to `/v1/detect`; the web page "
            "at `/` does the same for a person."
        ),
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.batcher = batcher
    app.state.metrics = metrics
    # Swagger's "Authorize" button; the check itself is AccessGate's, before any route.
    keyed = (
        [
            Security(HTTPBearer(auto_error=False)),
            Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
        ]
        if api_keys is not None
        else []
    )

    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "missing or wrong API key (keys are on)"},
        413: {"model": ErrorBody, "description": "upload or decoded image too large"},
        415: {"model": ErrorBody, "description": "not a readable image"},
        422: {"model": ErrorBody, "description": "malformed request, or the image has no face"},
        429: {"model": ErrorBody, "description": "rate limit exceeded; see Retry-After"},
        503: {"model": ErrorBody, "description": "too many requests waiting, or shutting down"},
        504: {"model": ErrorBody, "description": "the model took longer than the timeout"},
    }

    @app.post(
        "/v1/detect",
        response_model=DetectResult,
        responses=errors,
        tags=["detection"],
        dependencies=keyed,
    )
    async def detect(
        file: Annotated[UploadFile, File(description="the image (PNG, JPEG, WebP, BMP, ...)")],
        explain: Annotated[
            bool, Query(description="also return the explanation panel (base64 PNG)")
        ] = False,
        explain_field: Annotated[
            bool | None, Form(alias="explain", description="same as the query parameter")
        ] = None,
    ) -> JSONResponse:
        """Score one uploaded image: the verdict, its probability and, if asked, why."""
        if file.size is not None and file.size > max_upload_bytes:
            raise HTTPException(413, too_large(max_upload_bytes))
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, too_large(max_upload_bytes))
        try:
            image = await run_in_threadpool(_decode_bytes, data, max_pixels)
        except ImageDecodeError as exc:
            if exc.reason.startswith("decompression bomb"):
                raise HTTPException(413, f"image too large to decode: {exc.reason}") from None
            raise HTTPException(415, f"not a readable image: {exc.reason}") from None
        want_explain = explain or bool(explain_field)
        try:
            # On timeout the job is cancelled: the worker skips it, or drops its result.
            outcome = await asyncio.wait_for(batcher.submit(image, want_explain), request_timeout_s)
        except asyncio.TimeoutError:
            metrics.timeouts.inc()
            detail = f"the model did not answer within {request_timeout_s:g} s; request abandoned"
            raise HTTPException(504, detail) from None
        except (QueueFullError, ShuttingDownError) as exc:
            raise HTTPException(503, f"server busy: {exc}", {"Retry-After": "1"}) from None
        except InferenceError as exc:
            raise HTTPException(500, str(exc)) from None
        row = dict(outcome.row or {})
        row["source"] = _display_name(file.filename)
        if want_explain:
            row["explanation_png"] = base64.b64encode(outcome.png).decode() if outcome.png else None
            row["explanation_error"] = outcome.explain_error
        row = _json_safe(jsonable_encoder(row))
        if row.get("error"):
            return JSONResponse({"detail": row["error"], "result": row}, status_code=422)
        metrics.verdicts.labels(str(row.get("label"))).inc()
        return JSONResponse(row)

    @app.get("/v1/model", response_model=ModelInfo, tags=["service"], dependencies=keyed)
    async def model_info() -> dict[str, Any]:
        """The model (name, version, preprocessing), how it decides verdicts, and the limits."""
        return {**info, "serving": serving}

    @app.get("/healthz", tags=["service"])
    async def healthz() -> JSONResponse:
        """Liveness: ``ok`` while the model worker runs (no key needed); counters show batching."""
        alive = batcher.alive
        body = {
            "status": "ok" if alive else "error",
            "model": info.get("name"),
            "queued": batcher.queued,
            "running": batcher.running,
            **batcher.stats.as_dict(),
        }
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/readyz", tags=["service"])
    async def readyz() -> JSONResponse:
        """Readiness: the model is loaded and its worker runs, and no shutdown has begun."""
        if batcher.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not batcher.alive:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse({"status": "ready", "model": info.get("name")})

    @app.get("/metrics", tags=["service"], dependencies=keyed)
    async def prometheus_metrics() -> Response:
        """Prometheus text format; needs a key when keys are on."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        headers = {
            "content-security-policy": csp,
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
            "cache-control": "no-cache",
        }
        return HTMLResponse(page, headers=headers)

    # add_middleware puts each one outside those added before it.
    app.add_middleware(
        AccessGate, keys=api_keys, limiter=limiter, on_limited=metrics.rate_limited.inc
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "X-Request-ID"],
            expose_headers=["Retry-After", "X-Request-ID"],
            max_age=600,
        )
    hosts = None if allowed_hosts is None else {h.strip("[]").lower() for h in allowed_hosts}
    app.add_middleware(
        Guard,
        max_body=max_upload_bytes + MULTIPART_SLACK,
        file_limit=max_upload_bytes,
        allowed_hosts=hosts,
    )
    routes = frozenset(getattr(route, "path", "") for route in app.routes)
    app.add_middleware(AccessLog, metrics=metrics, routes=routes)
    return app
