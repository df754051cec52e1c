"""The HTTP service: routes, upload limits, decoding from the uploaded bytes, the web page.

The model runs on one worker thread behind a micro-batcher (:mod:`.batcher`); the request
guard (:mod:`.guard`) limits bodies and checks ``Host`` before any route. The event loop
never runs the model or decodes an image: it only moves bytes and futures around.

Nothing a request sends is ever used as a filesystem path: the upload's file name is
reported back (its base name, for display) and otherwise ignored.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..operating import OperatingPoint
from ..preprocess.decode import ImageDecodeError, decode_image
from ..version import __version__
from .batcher import BatcherStats, DetectorLike, InferenceError, MicroBatcher, QueueFullError
from .guard import MIB, Guard, too_large

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


class DetectResult(BaseModel):
    """One result row, as ``mfclip detect`` writes it, plus the optional explanation."""

    model_config = ConfigDict(extra="allow")

    source: str = Field(description="the upload's base file name (display only)")
    kind: str = Field("image", description="always 'image' here")
    frame: int | None = None
    frames: int | None = None
    fake_prob: float | None = Field(
        description="probability that the image is forged, 0..1, calibrated when the model is "
        "(GET /v1/model: operating_point.calibration); the verdict is decided on this number"
    )
    raw_prob: float | None = Field(
        None, description="the model's uncalibrated p(fake), for reference only"
    )
    label: Literal["real", "fake", "uncertain"] | None = Field(
        description="'fake' when fake_prob reaches the threshold, else 'real'; 'uncertain' "
        "inside the model's uncertain band (a person should look); null with an error"
    )
    threshold: float = Field(description="the model's stored decision threshold")
    reason: str | None = Field(
        None,
        description="the verdict in plain words: the rule behind it, what that rule measured "
        "when it was fitted and, when a probability seems to contradict the label, why",
    )
    face_box: list[int] | None = Field(None, description="x0, y0, x1, y1 (face mode only)")
    patch_box: list[int] | None = Field(None, description="richest noise patch x0, y0, x1, y1")
    error: str | None = None
    explanation_png: str | None = Field(
        None, description="base64 PNG panel, only with explain=true"
    )
    explanation_error: str | None = Field(None, description="why the panel is missing")


class OperatingPointInfo(BaseModel):
    """How the served model turns a probability into a verdict (``mfclip.OperatingPoint``)."""

    model_config = ConfigDict(extra="allow")

    threshold: float = Field(description="p(fake) at or above which an image is 'fake'")
    rule: str = Field(description="the rule that chose the threshold, e.g. 'fpr=0.01'")
    fpr: float | None = Field(None, description="false positive rate of the rule when fitted")
    tpr: float | None = Field(None, description="true positive rate of the rule when fitted")
    fitted_on: str | None = Field(None, description="the data the rule was fitted on")
    band: list[float] | None = Field(
        None, description="[lo, hi]: probabilities strictly inside are 'uncertain'"
    )
    calibration: str = Field("none", description="calibration method of fake_prob")
    summary: str | None = Field(None, description="how verdicts are decided, in one sentence")


class ModelInfo(BaseModel):
    """What ``GET /v1/model`` reports; other fields of ``Detector.info()`` pass through."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    mfclip_version: str | None = None
    threshold: float | None = None
    threshold_rule: str | None = None
    operating_point: OperatingPointInfo | None = None
    serving: dict[str, Any] = Field(description="this server's upload and batching limits")


def _model_info(detector: DetectorLike) -> dict[str, Any]:
    """``detector.info()`` made JSON-safe, with the operating point's one-line summary."""
    info = _json_safe(jsonable_encoder(detector.info()))
    point = getattr(detector, "operating_point", None)
    if isinstance(point, OperatingPoint):
        info["operating_point"] = {**_json_safe(point.to_dict()), "summary": point.summary()}
    return info


class ErrorBody(BaseModel):
    detail: Any


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
) -> FastAPI:
    """The service for ``detector``; ``allowed_hosts=None`` accepts any ``Host`` header."""
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be >= 1, got {max_upload_bytes}")
    batcher = MicroBatcher(detector, batch_size, max_wait_ms, max_queue)
    info = _model_info(detector)
    serving = {
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": max_pixels,
        "batch_size": batch_size,
        "max_wait_ms": max_wait_ms,
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
    hosts = None if allowed_hosts is None else {h.strip("[]").lower() for h in allowed_hosts}
    app.add_middleware(
        Guard,
        max_body=max_upload_bytes + MULTIPART_SLACK,
        file_limit=max_upload_bytes,
        allowed_hosts=hosts,
    )

    errors: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorBody, "description": "upload or decoded image too large"},
        415: {"model": ErrorBody, "description": "not a readable image"},
        422: {"model": ErrorBody, "description": "malformed request, or the image has no face"},
        503: {"model": ErrorBody, "description": "too many requests waiting"},
    }

    @app.post("/v1/detect", response_model=DetectResult, responses=errors, tags=["detection"])
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
            outcome = await batcher.submit(image, want_explain)
        except QueueFullError as exc:
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
        return JSONResponse(row)

    @app.get("/v1/model", response_model=ModelInfo, tags=["service"])
    async def model_info() -> dict[str, Any]:
        """The model (name, version, preprocessing), how it decides verdicts, and the limits."""
        return {**info, "serving": serving}

    @app.get("/healthz", tags=["service"])
    async def healthz() -> JSONResponse:
        """``ok`` while the model worker runs; counters show the batching."""
        alive = batcher.alive
        body = {
            "status": "ok" if alive else "error",
            "model": info.get("name"),
            "queued": batcher.queued,
            "running": batcher.running,
            **batcher.stats.as_dict(),
        }
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        headers = {
            "content-security-policy": csp,
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
            "cache-control": "no-cache",
        }
        return HTMLResponse(page, headers=headers)

    return app
