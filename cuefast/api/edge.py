"""The one ASGI layer: request ids, CORS, body-size guard, trailing slashes, rate limit, last-resort 500.

It wraps the Litestar app, so every response — including Litestar's own 404/405, a
413, and a 500 from an exception nothing else caught — carries ``X-Request-Id`` and the
CORS headers (CONTRACT.md §3.1, §3.11), and no traceback ever reaches a client. The request
id is the client's ``X-Request-Id`` when that is 1-128 safe characters (``request_id``),
else a new UUID; ``logs.REQUEST_ID`` holds it while the request is served, so every log line
of the request carries it. An error
response that is not JSON (Litestar's OpenAPI routes answer their own 404 in HTML) is
replaced by the contract's envelope for its status (§3.5: every error is the envelope).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from cuefast import metrics as m
from cuefast.api.fast import FastRoutes, Hot, Prepared, headers
from cuefast.api.ratelimit import RateLimit, is_exempt, limited
from cuefast.errors import (
    CuefastError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RequestTooLarge,
    api_error,
)
from cuefast.logs import REQUEST_ID
from cuefast.services.accounts import counted_request, served
from cuefast.store import AuthResult

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1_048_576
PAGE = "cuefast.page"
"""scope key a handler sets on an HTML page for people (api/login_pages.py): its error statuses
keep their HTML body instead of being replaced by the API's envelope"""
EXPOSE = (
    b"X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, "
    b"X-CueAPI-Usage-Warning"
)
ALLOW_METHODS = b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
_METHODS = frozenset(ALLOW_METHODS.decode().split(", "))


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def _is_json(headers: Any) -> bool:
    for key, value in headers:
        if bytes(key).lower() == b"content-type":
            return bytes(value).split(b";")[0].strip().lower() == b"application/json"
    return False


def envelope_for(status: int) -> CuefastError:
    """The contract's error for a bare HTTP status (an error some layer answered without one)."""
    if status == 404:
        return NotFound()
    if status == 405:
        return MethodNotAllowed()
    if status == 413:
        return RequestTooLarge()
    if status >= 500:
        return InternalError()
    return api_error(status, "http_error", "Request failed")


def _without_trailing_slash(scope: Scope) -> Scope:
    """``scope``, or a copy without the trailing slash of its path (a trailing slash is none)."""
    path: str = scope["path"]
    if len(path) <= 1 or not path.endswith("/"):
        return scope
    scope = dict(scope)
    scope["path"] = scope["path"].rstrip("/") or "/"
    scope["raw_path"] = scope["path"].encode()
    return scope


def _edge_headers(scope: Scope) -> tuple[Any, Any, Any, Any]:
    """The first ``Origin``, ``Content-Length``, ``Authorization`` and ``X-Request-Id`` header
    values (or None)."""
    origin = length = auth = rid = None
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            if auth is None:
                auth = value
        elif key == b"content-length":
            if length is None:
                length = value
        elif key == b"origin":
            if origin is None:
                origin = value
        elif key == b"x-request-id" and rid is None:
            rid = value
    return origin, length, auth, rid


def _cors(scope: Scope, origin: Any, extra: list[tuple[bytes, bytes]]) -> bool:
    """Add the CORS headers of a request with ``origin`` to ``extra``; True for a preflight
    (answered 204 by the edge)."""
    extra += [
        (b"access-control-allow-origin", bytes(origin)),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", EXPOSE),
        (b"vary", b"Origin"),
    ]
    if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
        req_headers = _header(scope, b"access-control-request-headers") or b"*"
        extra += [
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", req_headers),
            (b"access-control-max-age", b"600"),
        ]
        return True
    return False


def _too_large(length: Any) -> bool:
    try:
        return int(length) > MAX_BODY
    except ValueError:
        return False


_SAFE_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
"""a client's request id that is kept: bounded, and nothing that could split a log line or a
header (no spaces, quotes, control characters)"""


def request_id(given: Any) -> bytes:
    """The request's id: the client's ``X-Request-Id`` when it is safe (``_SAFE_ID``), else new."""
    if given is not None and _SAFE_ID.fullmatch(given):
        return bytes(given)
    return _request_id()


def _request_id() -> bytes:
    """A random (version 4) UUID as text, without building a ``uuid.UUID``."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()


class Edge:
    """The one ASGI layer in front of the Litestar app: edge duties and, with ``limiter``, the
    rate limit (``ratelimit.RateLimit``) — one ``await`` level and one send hook per request;
    with ``fast``, the hot routes answered without Litestar (``fast.FastRoutes``)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: m.Metrics | None = None,
        limiter: RateLimit | None = None,
        fast: FastRoutes | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics or m.Metrics()
        self.limiter = limiter
        self.fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = _without_trailing_slash(scope)
        path: str = scope["path"]
        origin, length, auth, given_id = _edge_headers(scope)
        reset = REQUEST_ID.set(rid := request_id(given_id))  # on every log line of the request (logs.py)
        try:
            extra: list[tuple[bytes, bytes]] = [(b"x-request-id", rid)]
            # the dashboard: no CORS (cookie sessions), and its own HTML error pages
            page = path == "/dashboard" or path.startswith("/dashboard/")
            if origin is not None and not page and _cors(scope, origin, extra):
                await self._send(send, 204, b"", extra)  # a preflight
                return
            if length is not None and _too_large(length):
                await self._error(send, RequestTooLarge(), extra)
                return
            started = replaced = False
            status = 500
            t0 = time.perf_counter_ns()
            authorization = None if auth is None else bytes(auth).decode("latin-1")
            result: AuthResult | None = None
            rate: list[tuple[bytes, bytes]] = []
            hot = None if self.fast is None else self.fast.match(scope["method"], path)
            pre: Prepared | None = None
            if self.limiter is not None and not is_exempt(path):
                result, now, pre = await self._count(self.limiter, scope, receive, hot, authorization)
                if result is not None:
                    rate, refused = limited(result, now, extra)
                    if refused is not None:  # 429: never reaches the app, not counted
                        await self._refuse(scope, send, refused, t0)
                        return
            after = [*rate, *extra]

            async def send_with_headers(message: Message) -> None:
                nonlocal started, status, replaced
                if message["type"] == "http.response.start":
                    started = True
                    status = int(message["status"])
                    if (
                        status >= 400
                        and not page
                        and not _is_json(message.get("headers", ()))
                        and not scope.get(PAGE)
                    ):
                        replaced = True  # its body is dropped below
                        await self._error(send, envelope_for(status), extra)
                        return
                    message["headers"] = [*message.get("headers", ()), *after]
                elif replaced:
                    return
                await send(message)

            token = None if result is None else counted_request(authorization, result)
            try:
                if hot is None:
                    await self.app(scope, receive, send_with_headers)
                else:  # answered here (fast.py): same answer as the Litestar route's
                    status, body = await hot.answer(scope, receive, authorization, pre=pre)
                    started = True
                    await send(
                        {"type": "http.response.start", "status": status, "headers": headers(body, after)}
                    )
                    await send({"type": "http.response.body", "body": body})
            except Exception:
                log.exception("unhandled error on %s %s", scope.get("method"), path)
                if not started:
                    await self._error(send, InternalError(), extra)
            finally:
                if token is not None:
                    served(token)
                self._observe(scope, status, t0)
        finally:
            REQUEST_ID.reset(reset)

    @staticmethod
    async def _count(
        limiter: RateLimit, scope: Scope, receive: Receive, hot: Hot | None, authorization: str | None
    ) -> tuple[AuthResult | None, int, Prepared | None]:
        """The rate limiter's call (``RateLimit.count``); a create is read and parsed first, so the
        call also reserves its name (``fast.FastRoutes.prepare``)."""
        if hot is None or not hot.prepares:
            result, now = await limiter.count(scope, authorization)
            return result, now, None
        pre = await hot.routes.prepare(receive, authorization)
        result, now = await limiter.count(scope, authorization, pre.reservation)
        if result is not None:
            pre.reserved = result.reserved
        return result, now, pre

    async def _refuse(
        self, scope: Scope, send: Send, refused: tuple[bytes, list[tuple[bytes, bytes]]], t0: int
    ) -> None:
        """Answer the rate limiter's 429 (body, headers)."""
        await send({"type": "http.response.start", "status": 429, "headers": refused[1]})
        await send({"type": "http.response.body", "body": refused[0]})
        self._observe(scope, 429, t0)

    def _observe(self, scope: Scope, status: int, t0: int) -> None:
        """The request's latency, by matched route template (bounded), never the raw path."""
        route = scope.get("path_template") or "(unmatched)"
        method = scope["method"] if scope["method"] in _METHODS else "other"
        labels = (method, route, f"{status // 100}xx")
        self.metrics.observe_us(m.HTTP_LATENCY, labels, (time.perf_counter_ns() - t0) // 1000)

    async def _error(self, send: Send, err: CuefastError, extra: list[tuple[bytes, bytes]]) -> None:
        await self._send(send, err.status, msgspec.json.encode(err.envelope()), extra, json=True)

    @staticmethod
    async def _send(
        send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]], *, json: bool = False
    ) -> None:
        headers = [(b"content-length", str(len(body)).encode()), *extra]
        if json:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
