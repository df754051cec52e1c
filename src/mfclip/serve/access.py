"""The access gate: API keys on every route but the public ones, then the rate limit.

Pure ASGI middleware, like :mod:`.guard`, so a request without a valid key is refused before
its body is read or parsed. The page, the health checks and the API description stay open:
a person needs the page to enter a key, and orchestrators probe health without one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .auth import KeyRing, credentials
from .guard import Receive, Send, send_json
from .ratelimit import RateLimiter

__all__ = ["PUBLIC_PATHS", "RATE_LIMITED_PREFIX", "AccessGate"]

#: Reachable without a key. Everything else, ``/metrics`` included, needs one when keys are on.
PUBLIC_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)
#: The rate limit applies to the API only: health probes and scrapes are never refused.
RATE_LIMITED_PREFIX = "/v1/"


def peer(scope: dict[str, Any]) -> str:
    """The client's address (uvicorn applies ``X-Forwarded-For`` from trusted proxies)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class AccessGate:
    """401 without a valid key (when ``keys``), 429 over the rate (when ``limiter``).

    The matched key's id goes to ``scope["state"]["key_id"]`` for the access log; the rate
    limit's client is that key when keys are on (a key shared by many machines is one
    client), else the peer address.
    """

    def __init__(
        self,
        app: Any,
        keys: KeyRing | None,
        limiter: RateLimiter | None,
        on_limited: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.on_limited = on_limited

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        state = scope.setdefault("state", {})
        kid = None
        if self.keys is not None and path not in PUBLIC_PATHS:
            headers = {name.lower(): value for name, value in scope["headers"]}
            offered = credentials(headers)
            for candidate in offered:
                kid = kid or self.keys.match(candidate)
            if kid is None:
                detail = (
                    "invalid API key"
                    if offered
                    else "missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
                )
                challenge = b'Bearer realm="mfclip"' + (b', error="invalid_token"' * bool(offered))
                await send_json(send, 401, detail, [(b"www-authenticate", challenge)])
                return
            state["key_id"] = kid
        if self.limiter is not None and path.startswith(RATE_LIMITED_PREFIX):
            client = f"key:{kid}" if kid else f"ip:{peer(scope)}"
            retry = self.limiter.check(client)
            if retry is not None:
                self.on_limited()
                per = f"{self.limiter.limit} requests per {self.limiter.window_s:g} s"
                detail = f"rate limit exceeded ({per} per client); retry in {retry} s"
                await send_json(send, 429, detail, [(b"retry-after", str(retry).encode())])
                return
        await self.app(scope, receive, send)
