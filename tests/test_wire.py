"""The store's multiplexed Redis connections (``cuefast.store.wire``) against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError

from cuefast.store import UNREACHABLE, connect
from cuefast.store.wire import Endpoint, Wire
from tests.chaos.backends import RedisServer


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = connect(redis_url)
    yield c
    await c.aclose()


@pytest.fixture
async def wire(client: aioredis.Redis) -> AsyncIterator[Wire]:
    w = Wire.of(client)
    yield w
    await w.aclose()


async def test_replies_have_redis_py_shapes(wire: Wire, client: aioredis.Redis, key_prefix: str) -> None:
    h, s = f"{key_prefix}:h", f"{key_prefix}:s"
    await client.hset(h, mapping={"a": "1", "é": "ü"})
    await client.set(s, "text")
    pipe = wire.pipeline()
    pipe.hgetall(h).hgetall(f"{key_prefix}:none").get(s).get(f"{key_prefix}:none")
    pipe.hget(h, "a").hmget(h, ["a", "zz"]).exists(h, s, f"{key_prefix}:none")
    assert await pipe.execute() == [{"a": "1", "é": "ü"}, {}, "text", None, "1", ["1", None], 2]
    assert await wire.call("INCRBY", f"{key_prefix}:n", 5) == 5
    assert await wire.call("EVAL", "return {1, 'x', {2}}", 0) == [1, "x", [2]]


async def test_error_replies_are_redis_py_exceptions(
    wire: Wire, client: aioredis.Redis, key_prefix: str
) -> None:
    s = f"{key_prefix}:s"
    await client.set(s, "text")
    replies = await wire.execute([("HGETALL", s), ("EVALSHA", "0" * 40, 0), ("GET", s)])
    assert isinstance(replies[0], ResponseError) and "WRONGTYPE" in str(replies[0])
    assert isinstance(replies[1], NoScriptError)
    assert replies[2] == "text"
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await wire.call("HGETALL", s)
    pipe = wire.pipeline().get(s).hgetall(s)
    with pytest.raises(ResponseError):
        await pipe.execute()


async def test_concurrent_callers_each_get_their_own_replies(wire: Wire, key_prefix: str) -> None:
    """Thousands of callers' batches share two sockets and come back to the right caller."""

    async def one(i: int) -> list[object]:
        k = f"{key_prefix}:c{i}"
        return await wire.execute([("SET", k, i), ("INCRBY", k, i), ("GET", k)])

    results = await asyncio.gather(*(one(i) for i in range(3000)))
    assert results == [["OK", 2 * i, str(2 * i)] for i in range(3000)]


async def test_a_cancelled_caller_does_not_disturb_the_others(wire: Wire, key_prefix: str) -> None:
    blocked = asyncio.ensure_future(wire.call("BLPOP", f"{key_prefix}:empty", 0.3))
    others = [asyncio.ensure_future(wire.call("ECHO", str(i))) for i in range(50)]
    await asyncio.sleep(0)  # both queued on their connections
    blocked.cancel()
    assert await asyncio.gather(*others) == [str(i) for i in range(50)]
    assert await wire.call("ECHO", "after") == "after"


async def test_a_killed_connection_fails_its_callers_and_is_reopened(
    wire: Wire, client: aioredis.Redis, key_prefix: str
) -> None:
    wire = Wire(wire.endpoint, size=1)
    try:
        conn_id = await wire.call("CLIENT", "ID")
        waiting = asyncio.ensure_future(wire.call("BLPOP", f"{key_prefix}:empty", 10))
        while not any(c["id"] == str(conn_id) and c["cmd"] == "blpop" for c in await client.client_list()):
            await asyncio.sleep(0.01)
        await client.client_kill_filter(_id=str(conn_id))
        with pytest.raises(UNREACHABLE):
            await waiting
        assert await wire.call("CLIENT", "ID") != conn_id  # a new connection
    finally:
        await wire.aclose()


async def test_an_unanswered_command_times_out(wire: Wire, key_prefix: str) -> None:
    slow = Wire(wire.endpoint, size=1, timeout=1.0)
    try:
        with pytest.raises(UNREACHABLE, match="Timeout"):
            await slow.call("BLPOP", f"{key_prefix}:empty", 5)
        assert await slow.call("ECHO", "again") == "again"
    finally:
        await slow.aclose()


async def test_an_unreachable_redis_raises_what_the_api_answers_503_for() -> None:
    endpoint = Endpoint("127.0.0.1", 1, None, None, None, None, 0, 2.0)
    with pytest.raises(UNREACHABLE, match=r"Error connecting to 127\.0\.0\.1:1\b"):
        await Wire(endpoint).call("PING")


async def test_password_and_database_from_the_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        await server.wait_ready()
        admin = aioredis.Redis(port=server.port)
        await admin.config_set("requirepass", "s3cret")
        await admin.aclose()
        right = connect(f"redis://:s3cret@127.0.0.1:{server.port}/3")
        wire = Wire.of(right)
        await wire.call("SET", "k", "v")
        assert await right.get("k") == "v"  # the same database 3
        assert await wire.call("CLIENT", "INFO")  # authenticated
        wrong = Wire.of(connect(f"redis://:nope@127.0.0.1:{server.port}/0"))
        with pytest.raises(AuthenticationError):
            await wrong.call("PING")
        await wire.aclose()
        await right.aclose()
    finally:
        server.stop()


def test_a_wire_outlives_its_event_loop(redis_url: str) -> None:
    """A store made in one event loop and used in the next (a test's fixture, a CLI command
    run twice) reconnects instead of waiting forever on the dead loop's connection."""
    wire = Wire.of(connect(redis_url))
    assert asyncio.run(wire.call("ECHO", "one")) == "one"
    assert asyncio.run(wire.call("ECHO", "two")) == "two"

    async def close() -> None:
        await wire.aclose()

    asyncio.run(close())


def test_on_uvloop(redis_url: str) -> None:
    """cuefast serves on uvloop, whose transports are not ``asyncio.Transport`` subclasses."""
    import uvloop

    async def main() -> list[object]:
        wire = Wire.of(connect(redis_url))
        try:
            return await wire.execute([("ECHO", "a"), ("ECHO", "b")])
        finally:
            await wire.aclose()

    assert uvloop.run(main()) == ["a", "b"]


async def test_no_commands_no_round_trip(wire: Wire) -> None:
    assert await wire.execute([]) == []


async def test_a_reply_that_is_not_text_fails_its_connection_not_the_process(
    wire: Wire, client: aioredis.Redis, key_prefix: str
) -> None:
    """Replies are decoded as UTF-8 (as redis-py's ``decode_responses``); a binary value read
    by mistake fails the callers of that connection with ``ConnectionError``, and the next
    call gets a new connection."""
    await client.execute_command("SET", f"{key_prefix}:bin", b"\xff\xfe")  # type: ignore[no-untyped-call]
    with pytest.raises(UNREACHABLE, match="Unreadable reply"):
        await wire.call("GET", f"{key_prefix}:bin")
    assert await wire.call("ECHO", "fine") == "fine"
