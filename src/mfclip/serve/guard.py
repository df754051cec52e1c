"""The request guard: body-size limits before parsing, and the ``Host`` check.

Pure ASGI middleware, so an oversized upload is refused while it streams in (413), before
FastAPI buffers a byte of it, and a request for an unexpected ``Host`` (DNS rebinding) never
reaches a route.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import HTTPException

__all__ = ["MIB", "Guard", "Receive", "Send", "send_json", "too_large"]

MIB = 1024 * 1024

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def _human_bytes(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:g} MiB"
    if n >= 1024:
        return f"{n / 1024:g} KiB"
    return f"{n} bytes"


def too_large(limit: int) -> str:
    return f"upload too large: the limit is {_human_bytes(limit)} per image"


def _host_name(raw: bytes) -> str:
    """``Host`` header -> bare lower-case name: ``[::1]:8000`` -> ``::1``."""
    host = raw.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def send_json(
    send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer from middleware, before any route, in FastAPI's ``{"detail": ...}`` shape."""
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*head, *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
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
                await send_json(send_with_headers, 400, f"host not allowed: {host!r}")
                return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_json(send_with_headers, 400, "invalid Content-Length header")
                return
            if declared > self.max_body:
                await send_json(send_with_headers, 413, too_large(self.file_limit))
                return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    # An HTTPException passes through FastAPI's body parsing as itself.
                    raise HTTPException(413, too_large(self.file_limit))
            return message

        await self.app(scope, limited_receive, send_with_headers)
