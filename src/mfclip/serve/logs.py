"""One JSON line per request on the ``mfclip.serve.access`` logger, and the request metrics.

The line holds what an operator needs to trace a request (time, method, path, status,
duration, client address, key id, request id) and nothing a client sent as content: no image
bytes, no query string, no header values, never the key itself (only its id, see
:func:`mfclip.serve.auth.key_id`). The same middleware feeds the request counters and the
latency histogram, so the log and ``/metrics`` always agree.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from .access import peer
from .guard import Receive, Send
from .metrics import ServeMetrics

__all__ = ["ACCESS_LOGGER", "AccessLog"]

ACCESS_LOGGER = "mfclip.serve.access"
access_log = logging.getLogger(ACCESS_LOGGER)

#: An incoming ``X-Request-ID`` is kept when it looks like an id (a proxy's), else replaced.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_MAX_PATH = 200


class AccessLog:
    """Outermost middleware: request id, in-flight gauge, metrics and the access log line."""

    def __init__(self, app: Any, metrics: ServeMetrics, routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500  # what the server error handler answers when the app raises

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = (b"x-request-id", request_id.encode())
                message = {**message, "headers": [*message.get("headers", []), extra]}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            path: str = scope["path"]
            route = path if path in self.routes else "other"
            self.metrics.observe_request(route, scope["method"], status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                line = {
                    "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                    "method": scope["method"],
                    "path": path[:_MAX_PATH],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": peer(scope),
                    "key_id": state.get("key_id"),
                    "request_id": request_id,
                }
                access_log.info("%s", json.dumps(line), extra={"access": line})
