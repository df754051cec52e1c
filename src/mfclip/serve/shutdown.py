"""Run the app under uvicorn with a graceful shutdown that also drains the model queue.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections and waits up to
``timeout_graceful_shutdown`` for the requests in flight. Those may be waiting in the
micro-batcher's queue, so the batcher is told to keep working until shortly before that
deadline and then to answer whatever is still queued with 503: every request the server
accepted gets a complete HTTP response, and the process exits within the grace period.
After a SIGTERM uvicorn re-raises the signal once drained, so the exit status says so (143).
"""

from __future__ import annotations

import logging
import socket
from contextlib import suppress
from typing import Any

import uvicorn

from .batcher import MicroBatcher

__all__ = ["DrainingServer", "drain_margin", "run"]

log = logging.getLogger(__name__)


def drain_margin(grace_s: float) -> float:
    """Time kept back at the end of the grace period to send the last 503s."""
    return min(0.5, grace_s / 2)


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` whose shutdown first starts draining the app's batcher."""

    def __init__(self, config: uvicorn.Config, batcher: MicroBatcher | None) -> None:
        super().__init__(config)
        self.batcher = batcher

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        grace = self.config.timeout_graceful_shutdown
        if self.batcher is not None and grace is not None:
            log.info("shutting down: finishing requests in flight for up to %g s", grace)
            self.batcher.drain(grace - drain_margin(grace))
        await super().shutdown(sockets)


def run(app: Any, *, host: str, port: int, grace_period_s: float, log_level: str) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then drain for at most ``grace_period_s``.

    uvicorn's own access log is off: it would log query strings, and the app's JSON access
    log (:mod:`.logs`) replaces it.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=grace_period_s,
    )
    server = DrainingServer(config, getattr(app.state, "batcher", None))
    with suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it drained for: done
        server.run()
