"""Prometheus metrics for ``GET /metrics``, in a registry of the app's own.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (not the process-global
one), so several apps in one process, as in the tests, never share or clash over counters.
Routes are labelled by their template, and unknown paths by ``other``, so a scanner probing
random URLs cannot grow the number of series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "ServeMetrics"]

#: Request latency buckets (seconds): a cached health check to a slow CPU explanation.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MODEL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServeMetrics:
    """The service's counters, histograms and gauges; :meth:`render` is the scrape body."""

    def __init__(self, queue_depth: Callable[[], float], model: str | None, version: str):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mfclip_http_requests",
            "HTTP requests answered, by route template, method and status code",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "mfclip_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "mfclip_http_requests_in_flight", "Requests being answered now", registry=r
        )
        self.batch_size = Histogram(
            "mfclip_batch_size", "Images per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.model_seconds = Histogram(
            "mfclip_model_seconds",
            "Wall time of each model call (a batch, with its explanations)",
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "mfclip_queue_depth", "Decoded images waiting for the model", registry=r
        )
        self.queue_depth.set_function(queue_depth)
        self.rate_limited = Counter(
            "mfclip_rate_limited", "Requests refused with 429 by the rate limit", registry=r
        )
        self.timeouts = Counter(
            "mfclip_request_timeouts", "Requests abandoned with 504 (--request-timeout)", registry=r
        )
        self.verdicts = Counter(
            "mfclip_verdicts", "Verdicts returned, by label (a drift signal)", ["label"], registry=r
        )
        Info("mfclip", "The served model and the mfclip version", registry=r).info(
            {"model": str(model), "version": version}
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.model_seconds.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
