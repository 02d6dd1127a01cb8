"""Rate limiting (CONTRACT.md §3.7): the limiter the edge layer calls before the Litestar app.

Each counted request costs one script call, ``accounts_authenticate.lua``, which authenticates the API key
*and* counts the request in a 60 s sliding window: the key's (limit: the account's
``rate_limit_per_minute``, read in the same call, so a changed limit applies at once) or,
for requests without a valid ``cue_sk_`` key, the client IP's (``CUEFAST_IP_RATE_LIMIT``).
The result is handed to the handlers (``accounts.counted_request``), so their
``authenticate()`` makes no second call. A request over the limit gets the 429 envelope
from the edge and never reaches the app; it is not counted.

Fail open: when the call fails (Redis unreachable), the request goes on unlimited and
without rate-limit headers. Handlers that need an account then authenticate themselves and
answer 503 ``service_unavailable`` while Redis is down; routes that need no Redis work.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import msgspec

from cuefast.errors import RateLimited
from cuefast.runtime import Runtime
from cuefast.store import AuthResult, Window
from cuefast.store.accounts import Reservation

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]

WINDOW_US = 60_000_000
EXEMPT = (
    "/health",
    "/status",
    "/metrics",
    "/v1/info",
    "/docs",
    "/openapi.json",
    "/redoc",
    "/auth/device",
    "/v1/auth/verify",
    "/dashboard",  # pages for people (a signed-in session, or the sign-in form)
)
_EXEMPT_SUBTREES = tuple(p + "/" for p in EXEMPT)
WARNING = (b"x-cueapi-usage-warning", b"approaching_limit")


def is_exempt(path: str) -> bool:
    return path in EXEMPT or path.startswith(_EXEMPT_SUBTREES)


def _ceil_s(us: int) -> int:
    return -(-us // 1_000_000)


def reset_at(window: Window) -> int:
    """Unix seconds (rounded up) when the oldest request in the window leaves it."""
    return _ceil_s(window.oldest_us + WINDOW_US)


def retry_after(window: Window, now_us: int) -> int:
    return max(1, _ceil_s(window.oldest_us + WINDOW_US - now_us))


def rate_headers(window: Window) -> list[tuple[bytes, bytes]]:
    remaining = 0 if not window.counted else max(0, window.limit - window.requests)
    return [
        (b"x-ratelimit-limit", str(window.limit).encode()),
        (b"x-ratelimit-remaining", str(remaining).encode()),
        (b"x-ratelimit-reset", str(reset_at(window)).encode()),
    ]


def client_ip(scope: Scope) -> str:
    """The peer address as the server saw it. uvicorn replaces it with X-Forwarded-For only
    for peers in FORWARDED_ALLOW_IPS (default 127.0.0.1); no other header is trusted."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimit:
    """The limiter the edge layer (``edge.Edge``) calls once per counted request; it is not an
    ASGI layer of its own, so a request pays no extra ``await`` level and no second send hook."""

    def __init__(self, rt: Runtime) -> None:
        self.accounts = rt.accounts
        self.clock = rt.clock

    async def count(
        self, scope: Scope, authorization: str | None, reserve: Reservation | None = None
    ) -> tuple[AuthResult | None, int]:
        """(the auth script's result, now µs); (None, now) when the call failed (fail open).
        ``reserve``: a create's name reservation, made in the same call (``fast.Prepared``)."""
        now = self.clock.now_us()
        try:
            return await self.accounts.count_request(authorization, client_ip(scope), now, reserve), now
        except Exception as exc:  # fail open (§3.7)
            log.warning("rate limit skipped on %s: %s", scope["path"], type(exc).__name__)
            return None, now


def limited(
    result: AuthResult, now: int, extra: list[tuple[bytes, bytes]]
) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, list[tuple[bytes, bytes]]] | None]:
    """(the rate-limit headers of a counted request, None) or, over the limit, ([], the 429's
    (body, headers) with ``extra`` after them)."""
    window = result.window
    assert window is not None
    rate = rate_headers(window)
    if result.warn:
        rate.append(WARNING)
    if window.counted:
        return rate, None
    return [], rejection(window, now, [*rate, *extra])


def rejection(
    window: Window, now: int, extra: list[tuple[bytes, bytes]]
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The 429 answer (body, headers) of a request over ``window``'s limit; ``extra`` (the rate
    headers and the edge's own) goes after its own headers."""
    err = RateLimited(retry_after(window, now))
    body = msgspec.json.encode(err.envelope())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(err.retry_after).encode()),
        *extra,
    ]
    return body, headers
