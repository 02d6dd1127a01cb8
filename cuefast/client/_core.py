"""The SDK's one implementation, shared by the sync and the async client.

Every API method is written once, as a *builder* that returns a ``Call`` (method, path,
query, body, how to decode the answer, whether it may be retried) and performs no I/O.
``op`` turns a builder into a method: on a resource bound to the sync transport it
sends the call and returns the decoded value, on one bound to the async transport it
returns an awaitable of it (the overloads on ``op.__get__`` give both spellings their
exact types). ``Core`` is the sans-IO part: request headers, answer → value or
exception, and the retry decision. The two transports are the ~20-line loops at the end.

Retry policy (``max_retries``, default 2; 0 turns it off):

* a connection that could not be made, and a 429 (the server rejected the request
  without processing it): retried for every request;
* a 5xx, a timeout or a connection lost mid-request: retried only for idempotent
  requests (GET, PATCH, DELETE, heartbeats, a fire with an ``idempotency_key``), or for
  all when ``retry_non_idempotent=True`` — a retried outcome report may then answer
  409 ``outcome_already_recorded``, a retried claim may claim a second execution;
* waits: ``Retry-After`` for a 429 (when it exceeds ``max_retry_wait`` the
  ``RateLimitError`` is raised at once), otherwise 0.5 s · 2ⁿ with full jitter, capped
  at 8 s.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import httpx
import msgspec

from cuefast import __version__
from cuefast.client.errors import (
    CueAPIConnectionError,
    CueAPIError,
    CueAPITimeoutError,
    RateLimitError,
    error_for_status,
)

T = TypeVar("T")
P = ParamSpec("P")

USER_AGENT = f"cuefast-python/{__version__}"
_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}
_ANY = msgspec.json.Decoder()


def decoder(kind: Any) -> msgspec.json.Decoder[Any]:
    dec = _DECODERS.get(kind)
    if dec is None:
        dec = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return dec


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One HTTP request and how to read its answer (no I/O)."""

    method: str
    path: str
    decode: Any
    """The type the JSON answer decodes to (``None``: the answer is ignored)."""
    body: Any = None
    params: Mapping[str, Any] | None = None
    idempotent: bool = False
    timeout: float | None = None
    headers: Mapping[str, str] | None = None


def call(
    method: str,
    path: str,
    decode: type[T] | Any,
    *,
    body: Any = None,
    params: Mapping[str, Any] | None = None,
    idempotent: bool | None = None,
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> Call[T]:
    if idempotent is None:
        idempotent = method in ("GET", "HEAD", "PATCH", "PUT", "DELETE")
    if params is not None:
        params = {k: v for k, v in params.items() if v is not None}
    return Call(method, path, decode, body, params, idempotent, timeout, headers)


def drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class SyncMode:
    """Marker: the resource's methods return values."""


class AsyncMode:
    """Marker: the resource's methods return awaitables."""


Mode = TypeVar("Mode", SyncMode, AsyncMode)


class Resource(Generic[Mode]):
    """A group of API methods bound to one transport (``send``)."""

    def __init__(self, send: Callable[[Call[Any]], Any]) -> None:
        self._send = send


class op(Generic[P, T]):
    """Decorator: a builder (returns ``Call[T]``) → an API method (sync or async)."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        self.name = build.__name__
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> op[P, T]: ...
    @overload
    def __get__(self, obj: Resource[SyncMode], owner: type | None = None) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: Resource[AsyncMode], owner: type | None = None) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        build = self.build
        send = obj._send

        @functools.wraps(build)
        def method(*args: Any, **kwargs: Any) -> Any:
            return send(build(obj, *args, **kwargs))

        obj.__dict__[self.name] = method  # later lookups skip the descriptor
        return method


@dataclass(frozen=True, slots=True)
class _Retry:
    delay: float


class Core:
    """Sans-IO: what to send, and what an answer (or a failure to get one) means."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float,
        max_retries: int,
        retry_non_idempotent: bool,
        max_retry_wait: float,
        headers: Mapping[str, str] | None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required (or set CUEFAST_API_KEY)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.retry_non_idempotent = retry_non_idempotent
        self.max_retry_wait = max_retry_wait
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }

    def request_args(self, c: Call[Any]) -> dict[str, Any]:
        args: dict[str, Any] = {"params": c.params}
        if c.body is not None:
            args["content"] = _ENCODER.encode(c.body)
        if c.timeout is not None:
            args["timeout"] = c.timeout
        if c.headers:
            args["headers"] = c.headers
        return args

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(8.0, 0.5 * 2**attempt))  # noqa: S311 (jitter, not a secret)

    def answer(self, c: Call[T], attempt: int, res: httpx.Response) -> T | _Retry:
        status = res.status_code
        if 200 <= status < 300:
            if c.decode is None or status == 204 or not res.content:
                return None  # type: ignore[return-value]
            try:
                return decoder(c.decode).decode(res.content)  # type: ignore[no-any-return]
            except msgspec.DecodeError as exc:
                raise CueAPIError(f"Unexpected response body: {exc}", status, "invalid_response") from None
        try:
            body = _ANY.decode(res.content) if res.content else None
        except msgspec.DecodeError:
            body = {"error": {"code": "unknown", "message": res.text[:500] or f"HTTP {status}"}}
        err = error_for_status(status, body, res.headers.get("retry-after"))
        if attempt < self.max_retries:
            if isinstance(err, RateLimitError):
                wait = float(err.retry_after if err.retry_after is not None else 1)
                if wait <= self.max_retry_wait:
                    return _Retry(wait + random.uniform(0, 0.25))  # noqa: S311 (jitter)
            elif status >= 500 and (c.idempotent or self.retry_non_idempotent):
                return _Retry(self._backoff(attempt))
        raise err

    def failure(self, c: Call[Any], attempt: int, exc: httpx.TransportError) -> _Retry:
        not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if attempt < self.max_retries and (not_sent or c.idempotent or self.retry_non_idempotent):
            return _Retry(self._backoff(attempt))
        kind = CueAPITimeoutError if isinstance(exc, httpx.TimeoutException) else CueAPIConnectionError
        raise kind(f"{type(exc).__name__}: {exc}", None, "connection_error") from exc


class SyncSender:
    def __init__(self, core: Core, http: httpx.Client) -> None:
        self.core = core
        self.http = http

    def __call__(self, c: Call[T]) -> T:
        core = self.core
        attempt = 0
        while True:
            try:
                res = self.http.request(c.method, c.path, **core.request_args(c))
                out = core.answer(c, attempt, res)
            except httpx.TransportError as exc:
                out = core.failure(c, attempt, exc)
            if not isinstance(out, _Retry):
                return out
            time.sleep(out.delay)
            attempt += 1


class AsyncSender:
    def __init__(self, core: Core, http: httpx.AsyncClient) -> None:
        self.core = core
        self.http = http

    async def __call__(self, c: Call[T]) -> T:
        core = self.core
        attempt = 0
        while True:
            try:
                res = await self.http.request(c.method, c.path, **core.request_args(c))
                out = core.answer(c, attempt, res)
            except httpx.TransportError as exc:
                out = core.failure(c, attempt, exc)
            if not isinstance(out, _Retry):
                return out
            await asyncio.sleep(out.delay)
            attempt += 1
