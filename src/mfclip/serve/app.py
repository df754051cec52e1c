"""The HTTP service: upload limits, safe decoding, micro-batching and the web page.

One worker thread owns the model. The model is not safe to share between threads
(explanations switch it to training mode and use gradients), and one batch of 16 images costs
far less than 16 single calls, so concurrent requests are queued and collected into batches
(up to ``batch_size`` images, waiting at most ``max_wait_ms`` for company). The event loop
never runs the model or decodes an image: it only moves bytes and futures around.

Nothing a request sends is ever used as a filesystem path: the upload's file name is
reported back (its base name, for display) and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from importlib import resources
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..preprocess.decode import ImageDecodeError, decode_image
from ..version import __version__

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "BatcherStats",
    "MicroBatcher",
    "QueueFullError",
    "create_app",
]

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 10 * MIB
#: Decoded-size cap for uploads: a 10 MiB PNG can expand to gigabytes of pixels.
DEFAULT_MAX_PIXELS = 40_000_000
#: Room for multipart boundaries, part headers and the small ``explain`` field.
MULTIPART_SLACK = 64 * 1024

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class DetectorLike(Protocol):
    """What the service needs from :class:`mfclip.Detector` (fakes work in tests)."""

    def __call__(self, inputs: Any) -> Any: ...

    def explain(self, image: Any) -> Any: ...

    def info(self) -> dict[str, Any]: ...


class QueueFullError(RuntimeError):
    """More requests are waiting than ``max_queue``: answer 503 instead of growing memory."""


class InferenceError(RuntimeError):
    """The model failed on this image (not the client's fault): answer 500."""


# ---------------------------------------------------------------------------- micro-batching
@dataclass
class _Job:
    image: Image.Image
    explain: bool
    future: asyncio.Future
    enqueued: float


@dataclass
class _Outcome:
    row: dict[str, Any] | None = None
    png: bytes | None = None
    explain_error: str | None = None
    error: str | None = None


@dataclass
class BatcherStats:
    """Counters for ``/healthz``: they show that batching happens."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    model_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "batches": self.batches,
            "largest_batch": self.largest_batch,
            "model_seconds": round(self.model_s, 3),
        }


@dataclass
class MicroBatcher:
    """Queue requests and run them in batches on ONE model thread.

    ``submit`` is called from the event loop; the loop only waits on a future while the worker
    thread runs the detector, so health checks and uploads keep flowing during inference.
    """

    detector: DetectorLike
    batch_size: int = 16
    max_wait_ms: float = 10.0
    max_queue: int = 256
    stats: BatcherStats = field(default_factory=BatcherStats)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        self._pending: deque[_Job] = deque()
        self._running: list[_Job] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return len(self._running)

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfclip-model")
        self._task = asyncio.create_task(self._run(), name="mfclip-batcher")

    async def stop(self) -> None:
        """Stop taking work, fail what is still waiting, let the running batch finish."""
        waiting = [*self._pending, *self._running]
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(InferenceError("the server is shutting down"))
        self._pending.clear()
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    async def submit(self, image: Image.Image, explain: bool = False) -> _Outcome:
        """Queue one decoded image; return its outcome once its batch has run."""
        if not self.alive or self._wakeup is None:
            raise InferenceError("the model worker is not running")
        if len(self._pending) >= self.max_queue:
            raise QueueFullError(f"{len(self._pending)} requests are already waiting")
        loop = asyncio.get_running_loop()
        job = _Job(image, explain, loop.create_future(), loop.time())
        self._pending.append(job)
        self._wakeup.set()
        outcome: _Outcome = await job.future  # cancelled with the request: the worker skips it
        if outcome.error is not None:
            raise InferenceError(outcome.error)
        return outcome

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Wait for company until the oldest job has waited max_wait_ms, or the batch is full.
            deadline = self._pending[0].enqueued + self.max_wait_ms / 1000.0
            while len(self._pending) < self.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            count = min(self.batch_size, len(self._pending))
            jobs = [self._pending.popleft() for _ in range(count)]
            jobs = [job for job in jobs if not job.future.done()]
            if not jobs:
                continue
            self._running = jobs
            started = time.perf_counter()
            try:
                outcomes = await loop.run_in_executor(self._executor, self._infer, jobs)
            except Exception as exc:  # _infer catches per image; this guards against its bugs
                log.exception("model worker failed")
                outcomes = [_Outcome(error=f"{type(exc).__name__}: {exc}") for _ in jobs]
            finally:
                self._running = []
            self.stats.model_s += time.perf_counter() - started
            self.stats.batches += 1
            self.stats.requests += len(jobs)
            self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
            for job, outcome in zip(jobs, outcomes, strict=True):
                if not job.future.done():
                    job.future.set_result(outcome)

    def _infer(self, jobs: list[_Job]) -> list[_Outcome]:
        """Runs on the model thread: one batched call, then explanations where asked."""
        images = [job.image for job in jobs]
        rows: list[dict[str, Any] | None]
        errors: list[str | None]
        try:
            rows = [det.to_dict() for det in self.detector(images)]
            errors = [None] * len(jobs)
        except Exception:
            # One bad image must not fail its batch-mates: retry them one at a time.
            log.warning("batch of %d failed; retrying one by one", len(jobs), exc_info=True)
            rows, errors = [], []
            for image in images:
                try:
                    rows.append(self.detector([image])[0].to_dict())
                    errors.append(None)
                except Exception as exc:
                    log.exception("inference failed")
                    rows.append(None)
                    errors.append(f"inference failed: {type(exc).__name__}: {exc}")
        outcomes = []
        for job, row, error in zip(jobs, rows, errors, strict=True):
            if row is None:
                outcomes.append(_Outcome(error=error))
                continue
            outcome = _Outcome(row=row)
            if job.explain and row.get("error") is None:
                try:
                    outcome.png = self.detector.explain(job.image).to_png_bytes()
                except Exception as exc:
                    log.exception("explanation failed")
                    outcome.explain_error = f"{type(exc).__name__}: {exc}"
            outcomes.append(outcome)
        return outcomes


# ---------------------------------------------------------------------------- request guard
def _human_bytes(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:g} MiB"
    if n >= 1024:
        return f"{n / 1024:g} KiB"
    return f"{n} bytes"


def _too_large(limit: int) -> str:
    return f"upload too large: the limit is {_human_bytes(limit)} per image"


def _host_name(raw: bytes) -> str:
    """``Host`` header -> bare lower-case name: ``[::1]:8000`` -> ``::1``."""
    host = raw.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Guard:
    """Pure ASGI middleware: body cap before and while reading, Host allow-list, nosniff.

    The cap must act before FastAPI parses the multipart body (which spools it to disk), so
    it checks ``Content-Length`` first and then counts bytes as they arrive (chunked uploads
    send no length). The ``Host`` check stops DNS-rebinding pages from using a loopback server.
    """

    def __init__(self, app: Any, max_body: int, file_limit: int, allowed_hosts: set[str] | None):
        self.app = app
        self.max_body = max_body
        self.file_limit = file_limit
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
                message = {**message, "headers": headers}
            await send(message)

        headers = {name.lower(): value for name, value in scope["headers"]}
        if self.allowed_hosts is not None:
            host = _host_name(headers.get(b"host", b""))
            if host not in self.allowed_hosts:
                await _send_json(send_with_headers, 400, f"host not allowed: {host!r}")
                return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_json(send_with_headers, 400, "invalid Content-Length header")
                return
            if declared > self.max_body:
                await _send_json(send_with_headers, 413, _too_large(self.file_limit))
                return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    # An HTTPException passes through FastAPI's body parsing as itself.
                    raise HTTPException(413, _too_large(self.file_limit))
            return message

        await self.app(scope, limited_receive, send_with_headers)


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
    fake_prob: float | None = Field(description="probability that the image is forged, 0..1")
    label: str | None = Field(description="'fake' when fake_prob >= threshold, else 'real'")
    threshold: float = Field(description="the model's stored decision threshold")
    face_box: list[int] | None = Field(None, description="x0, y0, x1, y1 (face mode only)")
    patch_box: list[int] | None = Field(None, description="richest noise patch x0, y0, x1, y1")
    error: str | None = None
    explanation_png: str | None = Field(
        None, description="base64 PNG panel, only with explain=true"
    )
    explanation_error: str | None = Field(None, description="why the panel is missing")


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
    info = _json_safe(jsonable_encoder(detector.info()))
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
        _Guard,
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
            raise HTTPException(413, _too_large(max_upload_bytes))
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, _too_large(max_upload_bytes))
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

    @app.get("/v1/model", tags=["service"])
    async def model_info() -> dict[str, Any]:
        """The model (name, version, threshold, preprocessing) and this server's limits."""
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
