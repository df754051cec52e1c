"""Per-client rate limiting: a token bucket per API key (or per peer address without keys).

Each client may send ``limit`` requests at once and then ``limit`` per ``window_s`` seconds,
refilled continuously, so a client that stays under the rate is never refused and one that
bursts learns from ``Retry-After`` exactly when its next request will pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RateLimiter"]


@dataclass
class RateLimiter:
    """``check(client)`` -> None when allowed, else the whole seconds until it will be.

    ``clock`` is injectable so tests can step time instead of sleeping. Buckets that have
    refilled are forgotten once ``max_clients`` is reached, so memory stays bounded.
    """

    limit: int
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")

    @property
    def rate(self) -> float:
        """Tokens regained per second."""
        return self.limit / self.window_s

    def check(self, client: str) -> int | None:
        """Take one token from ``client``'s bucket, or say how long until one is there."""
        now = self.clock()
        tokens, last = self._buckets.get(client, (float(self.limit), now))
        tokens = min(float(self.limit), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if client not in self._buckets and len(self._buckets) >= self.max_clients:
                self._forget_full(now)
            self._buckets[client] = (tokens - 1.0, now)
            return None
        self._buckets[client] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: a new bucket for them would be the same."""
        full = [
            c
            for c, (t, last) in self._buckets.items()
            if t + (now - last) * self.rate >= self.limit
        ]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= self.max_clients:  # all busy: drop the oldest-touched half
            by_age = sorted(self._buckets, key=lambda c: self._buckets[c][1])
            for client in by_age[: len(by_age) // 2]:
                del self._buckets[client]
