"""A small pooled HTTP/1.1 client for webhook sends: one request per kept-alive connection.

``Webhooks.send`` uses it for the plain case — ``http``/``https``, an ASCII URL with nothing
to quote, header names and values without control characters — and aiohttp for anything
else. It exists for speed: a delivery through aiohttp's client costs the dispatcher ~60 µs of
CPU (request and response objects, payload registry, tracing hooks, timers), this path
~15 µs (one pre-joined write, httptools' C parser, one protocol object per connection).

Connections are pooled per (scheme, host, port), at most ``limit`` open in all; an idle one
is closed after ``KEEPALIVE_S`` or when the server said ``Connection: close``. A new
connection gets its address from ``connect`` (the SSRF-checking resolver). A request that
finds its reused connection closed before any response byte is sent once more on a new
connection (the server closed the idle connection as we wrote: the request never reached
it). The body of a response is read up to ``limit`` bytes (more: the connection is closed).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

import httptools

KEEPALIVE_S = 15.0
"""an idle connection is closed after this long (aiohttp's default)"""

Connect = Callable[[str, int], Awaitable[str]]
"""(host, port) → the checked IP address to connect to"""


class Closed(Exception):
    """The connection closed before a complete response (``started``: response bytes came)."""

    def __init__(self, started: bool) -> None:
        super().__init__("connection closed")
        self.started = started


class _Conn(asyncio.Protocol):
    """One connection: at most one request at a time."""

    __slots__ = (
        "body",
        "done",
        "keep",
        "key",
        "left",
        "parser",
        "started",
        "status",
        "transport",
        "used_at",
    )

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] | None = None
        self.status = 0
        self.body: list[bytes] = []
        self.left = 0
        self.started = False
        self.keep = True
        self.used_at = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Closed(True))
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._ended()

    def _ended(self) -> None:
        """The server closed: a response whose headers came is complete (a body that ends
        with the connection), otherwise the exchange failed."""
        self.keep = False
        if self.done is not None and not self.done.done():
            if self.status:
                self.done.set_result(None)
            else:
                self.done.set_exception(Closed(self.started))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, data: bytes) -> None:
        if self.left > 0:
            piece = data[: self.left]
            self.body.append(piece)
            self.left -= len(piece)
        elif data:
            self.keep = False  # more than we read: the rest is not waited for

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.keep = False
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.keep = False
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)

    def close(self) -> None:
        self.keep = False
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class Client:
    """The pool (see the module docstring). ``connect`` resolves and judges a host."""

    def __init__(self, limit: int, connect: Connect, ssl_context: ssl.SSLContext | None = None) -> None:
        self.limit = limit
        self.connect = connect
        self.ssl_context = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Conn]] = {}
        self._open = 0
        self._busy = 0  # requests under way (at most ``limit``)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._swept = time.monotonic()

    async def close(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()

    def _take(self, key: tuple[str, str, int]) -> _Conn | None:
        conns = self._idle.get(key)
        if not conns:
            return None
        now = time.monotonic()
        while conns:
            c = conns.pop()  # the most recently used: least likely to have been closed
            if c.transport is not None and not c.transport.is_closing() and now - c.used_at < KEEPALIVE_S:
                return c
            c.close()
            self._open -= 1
        return None

    def _put(self, c: _Conn) -> None:
        now = time.monotonic()
        if c.keep and c.transport is not None and not self._closed and self._open <= self.limit:
            c.used_at = now
            conns = self._idle.get(c.key)
            if conns is None:
                conns = self._idle[c.key] = deque()
            conns.append(c)
        else:
            c.close()
            self._open -= 1
        if now - self._swept > KEEPALIVE_S:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close the connections idle for longer than ``KEEPALIVE_S`` (or closed meanwhile)."""
        self._swept = now
        for key, conns in list(self._idle.items()):
            fresh: deque[_Conn] = deque()
            for c in conns:
                if c.transport is not None and now - c.used_at < KEEPALIVE_S:
                    fresh.append(c)
                else:
                    c.close()
                    self._open -= 1
            if fresh:
                self._idle[key] = fresh
            else:
                del self._idle[key]

    async def _new(self, key: tuple[str, str, int]) -> _Conn:
        scheme, host, port = key
        ip = await self.connect(host, port)
        loop = asyncio.get_running_loop()
        if scheme == "https":
            if self.ssl_context is None:
                self.ssl_context = ssl.create_default_context()
            ctx = self.ssl_context
            _, conn = await loop.create_connection(
                lambda: _Conn(key), ip, port, ssl=ctx, server_hostname=host.strip("[]")
            )
        else:
            _, conn = await loop.create_connection(lambda: _Conn(key), ip, port)
        self._open += 1
        return conn

    async def request(
        self, key: tuple[str, str, int], head: bytes, body: bytes, read_limit: int
    ) -> tuple[int, bytes]:
        """Send one request (``head``: request line and headers, ending with the blank line)
        and return (status, body start up to ``read_limit`` bytes; none for a non-2xx).
        Raises ``Closed``, ``OSError``, ``ssl.SSLError``, ``httptools.HttpParserError`` or
        what ``connect`` raises. The caller bounds the time (cancel: the connection closes)."""
        if self._busy >= self.limit or self._waiters:
            await self._wait_turn()  # the slot is handed over: ``_busy`` already counts it
        else:
            self._busy += 1
        try:
            return await self._request(key, head, body, read_limit)
        finally:
            self._pass_turn()

    def _pass_turn(self) -> None:
        """Hand this request's slot to the oldest waiter still waiting, else free it."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._busy -= 1

    async def _wait_turn(self) -> None:
        """Wait for a slot handed over by a finishing request, in arrival order
        (asyncio.Semaphore would do, but its ``locked()`` walks every waiter on each acquire in
        Python 3.11)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed a slot, then cancelled: pass it on
                self._pass_turn()
            raise

    async def _request(
        self, key: tuple[str, str, int], head: bytes, body: bytes, read_limit: int
    ) -> tuple[int, bytes]:
        for retry in (True, False):
            conn = self._take(key)
            reused = conn is not None
            if conn is None:
                conn = await self._new(key)
            try:
                status, data = await self._exchange(conn, head, body, read_limit)
            except Closed as exc:
                conn.close()
                self._open -= 1
                if retry and reused and not exc.started:
                    continue  # closed while idle: the request did not reach the server
                raise
            except BaseException:
                conn.close()
                self._open -= 1
                raise
            self._put(conn)
            return status, data
        raise AssertionError("unreachable")

    async def _exchange(self, conn: _Conn, head: bytes, body: bytes, read_limit: int) -> tuple[int, bytes]:
        transport = conn.transport
        if transport is None:
            raise Closed(False)
        done = conn.done = asyncio.get_running_loop().create_future()
        conn.status, conn.body, conn.left, conn.started = 0, [], read_limit, False
        transport.write(head + body if body else head)
        await done
        status = conn.status
        data = b"".join(conn.body) if 200 <= status < 300 else b""
        conn.body, conn.done = [], None
        return status, data


_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""a control character (tab allowed) in a header value"""
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""an HTTP header name (RFC 9110 token)"""


def request_head(
    method: str, target: str, host_header: str, headers: Mapping[str, str], length: int | None
) -> bytes | None:
    """The request line and headers, or None when a header would need encoding or could
    break the framing (the caller then uses a full client)."""
    parts = [f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\n"]
    accept = accept_encoding = True
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or _BAD.search(value):
            return None
        parts.append(f"{name}: {value}\r\n")
        if name[0] in "Aa":
            low = name.lower()
            accept = accept and low != "accept"
            accept_encoding = accept_encoding and low != "accept-encoding"
    if accept:  # the defaults aiohttp sends (a custom header replaces them)
        parts.append("Accept: */*\r\n")
    if accept_encoding:
        parts.append("Accept-Encoding: gzip, deflate\r\n")
    if length is not None:
        parts.append(f"Content-Length: {length}\r\n")
    parts.append("\r\n")
    text = "".join(parts)
    return text.encode("ascii") if text.isascii() else None
