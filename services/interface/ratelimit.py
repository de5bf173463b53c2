"""Per-key rate limits (429 ``rate_limited`` with ``Retry-After``).

The ``limits`` library keeps the counters (moving window, in-memory storage): a
well-kept implementation of the window arithmetic, so none is written here. The
counters live in this process; with several interface replicas each enforces
its own share.

The bucket is the key's prefix (never the key): it is read from the header's
format before authentication, so that even floods of bad keys are limited.
Without a well-formed key the bucket is the client address. Only ``/v1/*`` is
limited (``/healthz`` and ``/metrics`` are for probes). The middleware sits inside
the audit trail, so every 429 is audited as a deny.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import RateLimited
from shared.http_problems import problem_response
from shared.security import parse_api_key


def rate_bucket(scope: Scope) -> str:
    """``key:<prefix>`` for a well-formed bearer key, else ``addr:<client host>``."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            prefix = parse_api_key(token.strip()) if scheme.lower() == "bearer" else None
            if prefix:
                return f"key:{prefix}"
            break
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    """Pure ASGI: counts each /v1 request against every configured window."""

    def __init__(self, app: ASGIApp, rate_limit: str) -> None:
        self.app = app
        self.items: list[RateLimitItem] = parse_many(rate_limit)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        bucket = rate_bucket(scope)
        for item in self.items:
            if not self.limiter.hit(item, bucket):
                reset = self.limiter.get_window_stats(item, bucket).reset_time
                retry = max(1, math.ceil(reset - time.time()))
                response = problem_response(
                    RateLimited(f"rate limit exceeded: {item}"),
                    instance=scope.get("path"),
                    headers={"Retry-After": str(retry)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
