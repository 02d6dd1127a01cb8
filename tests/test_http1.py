"""The webhook fast path (cuefast/engine/http1.py) against raw HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from cuefast.config import load_settings
from cuefast.engine import http1
from cuefast.engine.webhooks import INVALID_HEADER, Webhooks, plain_target

ALLOW = load_settings({}, allow_private_callbacks=True)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""(request head, writer) → keep the connection open"""


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return head


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A server answering with ``handler``; yields (URL, request heads, connection numbers)."""
    heads: list[bytes] = []
    conns: list[int] = []
    count = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        me = count
        while (head := await _read_request(reader)) is not None:
            heads.append(head)
            conns.append(me)
            if not await handler(head, writer):
                break
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook", heads, conns
    finally:
        server.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    """The server closes a kept-alive connection after each answer (without saying so): the
    next send finds it closed and goes out once on a new connection."""

    async def once(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        return False

    webhooks = Webhooks(ALLOW)
    try:
        async with raw_server(once) as (url, heads, conns):
            for _ in range(3):
                assert await webhooks.send(url, "POST", b"{}", {}, 5) == (200, "", b"ok")
                await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
    finally:
        await webhooks.close()
    assert len(heads) == 3 and conns == [1, 2, 3]


async def test_connection_close_and_a_close_delimited_body() -> None:
    """A response without a length ends with the connection; ``Connection: close`` is honoured."""

    async def until_close(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b'{"success": true}')
        await writer.drain()
        return False

    webhooks = Webhooks(ALLOW)
    try:
        async with raw_server(until_close) as (url, heads, conns):
            for _ in range(2):
                assert await webhooks.send(url, "POST", b"{}", {}, 5) == (200, "", b'{"success": true}')
    finally:
        await webhooks.close()
    assert conns == [1, 2]


async def test_a_chunked_body_and_keep_alive() -> None:
    async def chunked(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        await writer.drain()
        return True

    webhooks = Webhooks(ALLOW)
    try:
        async with raw_server(chunked) as (url, heads, conns):
            for _ in range(3):
                assert await webhooks.send(url, "POST", b"{}", {}, 5) == (201, "", b"abcde")
    finally:
        await webhooks.close()
    assert conns == [1, 1, 1]  # one kept-alive connection


async def test_a_non_2xx_and_a_body_over_the_bound() -> None:
    big = b"x" * 100

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        if b"/big" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + big)
        else:
            writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")
        await writer.drain()
        return True

    webhooks = Webhooks(ALLOW)
    try:
        async with raw_server(answer) as (url, heads, conns):
            assert await webhooks.send(url, "POST", b"{}", {}, 5) == (
                503,
                "Webhook endpoint server error (503)",
                b"",
            )
            client = http1.Client(4, webhooks._connect)
            key = ("http", "127.0.0.1", int(url.split(":")[2].split("/")[0]))
            head = http1.request_head("POST", "/big", "127.0.0.1", {}, 0)
            assert head is not None
            assert await client.request(key, head, b"", 10) == (200, big[:10])
            await client.close()
    finally:
        await webhooks.close()


async def test_a_header_that_could_split_the_request_never_takes_the_fast_path() -> None:
    """A value with CR/LF is not written by the fast path (aiohttp refuses it: an error, not a
    second header or request at the receiver)."""
    assert http1.request_head("POST", "/", "h", {"X-A": "1\r\nX-B: 2"}, 0) is None
    assert http1.request_head("POST", "/", "h", {"X A": "1"}, 0) is None
    assert http1.request_head("POST", "/", "h", {"X-A": "é"}, 0) is None

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        return True

    webhooks = Webhooks(ALLOW)
    try:
        async with raw_server(answer) as (url, heads, conns):
            # regression: aiohttp's ValueError escaped send (the attempt stayed leased, re-sent forever)
            sent = await webhooks.send(url, "POST", b"{}", {"X-A": "1\r\nX-B: 2"}, 5)
            assert sent == (None, INVALID_HEADER, b"")
            assert await webhooks.send(url, "POST", b"{}", {"X-A": "1"}, 5) == (200, "", b"ok")
    finally:
        await webhooks.close()
    assert all(b"X-B" not in h for h in heads)


def test_only_plain_urls_take_the_fast_path() -> None:
    assert plain_target("http://127.0.0.1:8080/hook?a=1&b=%20") == (
        ("http", "127.0.0.1", 8080),
        "/hook?a=1&b=%20",
        "127.0.0.1:8080",
    )
    assert plain_target("https://Example.COM/") == (("https", "example.com", 443), "/", "example.com")
    assert plain_target("http://[::1]:9/x") == (("http", "[::1]", 9), "/x", "[::1]:9")
    assert plain_target("https://example.com") == (("https", "example.com", 443), "/", "example.com")
    for url in (
        "http://example.com/a b",
        "http://example.com/ü",
        "http://bücher.example/",
        "http://example.com/%zz",
        "http://example.com/a/../b",
        "http://user:pw@example.com/",
        "ftp://example.com/",
    ):
        assert plain_target(url) is None, url
