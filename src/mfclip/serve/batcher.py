"""Micro-batching: one worker thread owns the model; concurrent requests share its batches.

The model is not safe to share between threads (explanations switch it to training mode and
use gradients), and one batch of 16 images costs far less than 16 single calls, so concurrent
requests are queued and collected into batches (up to ``batch_size`` images, waiting at most
``max_wait_ms`` for company). The event loop never runs the model: it only moves futures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from ..errors import MFCLIPError

__all__ = [
    "BatcherStats",
    "DetectorLike",
    "InferenceError",
    "MicroBatcher",
    "QueueFullError",
    "ShuttingDownError",
]

log = logging.getLogger(__name__)


class DetectorLike(Protocol):
    """What the service needs from :class:`mfclip.Detector` (fakes work in tests)."""

    def __call__(self, inputs: Any) -> Any: ...

    def explain(self, image: Any) -> Any: ...

    def info(self) -> dict[str, Any]: ...


class QueueFullError(MFCLIPError, RuntimeError):
    """More requests are waiting than ``max_queue``: answer 503 instead of growing memory."""


class InferenceError(MFCLIPError, RuntimeError):
    """The model failed on this image (not the client's fault): answer 500."""


class ShuttingDownError(MFCLIPError, RuntimeError):
    """The server stopped before this image's turn (grace period over): answer 503."""


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
    #: Called on the event loop after each model call with (images, seconds): the metrics.
    on_batch: Callable[[int, float], None] | None = None

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
        self._drain_timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def draining(self) -> bool:
        """Shutdown has begun: queued work still runs, but the server is no longer ready."""
        return self._drain_timer is not None or self._closed

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

    def drain(self, within_s: float) -> None:
        """Keep running queued work for ``within_s`` seconds, then answer the rest with 503.

        Called when a graceful shutdown begins: the requests already accepted get their
        results if the model gets to them in time, and a 503 (sent before the server's own
        grace period ends) if not. Requests submitted after that are refused with 503.
        """
        if self._drain_timer is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._drain_timer = loop.call_later(max(0.0, within_s), self._abandon)

    def _abandon(self) -> None:
        """Fail every job not yet answered; a running model call's results are discarded."""
        self._closed = True
        for job in [*self._pending, *self._running]:
            if not job.future.done():
                job.future.set_exception(ShuttingDownError("the server is shutting down"))
        self._pending.clear()

    async def stop(self) -> None:
        """Stop taking work, fail what is still waiting, let the running batch finish."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        self._abandon()
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    async def submit(self, image: Image.Image, explain: bool = False) -> _Outcome:
        """Queue one decoded image; return its outcome once its batch has run."""
        if self._closed:
            raise ShuttingDownError("the server is shutting down")
        if not self.alive or self._wakeup is None:
            raise InferenceError("the model worker is not running")
        waiting = sum(1 for job in self._pending if not job.future.done())  # not abandoned
        if waiting >= self.max_queue:
            raise QueueFullError(f"{waiting} requests are already waiting")
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
            seconds = time.perf_counter() - started
            self.stats.model_s += seconds
            if self.on_batch is not None:
                try:
                    self.on_batch(len(jobs), seconds)
                except Exception:  # a metrics hook must never stop the model worker
                    log.exception("batch hook failed")
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
