"""``Wire`` with ``Replicas`` (``CUEFAST_REDIS_WAIT_REPLICAS``) and no replica: writes wait, reads do not."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from cuefast.store import UNREACHABLE, connect
from cuefast.store.wire import NotReplicated, Replicas, Wire, writes


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = connect(redis_url)
    if int((await c.info("replication"))["connected_slaves"]):
        await c.aclose()
        pytest.skip("the test Redis has replicas: WAIT 1 would succeed")
    yield c
    await c.aclose()


def test_a_batch_writes_unless_every_command_is_a_read() -> None:
    assert not writes([("GET", "k"), ("HGETALL", "h"), (b"zrangebyscore", "z", 0, 1)])
    assert writes([("GET", "k"), ("SET", "k", 1)])
    assert writes([("EVALSHA", "sha", 1, "k")])  # a script may write
    assert not writes([("EVALSHA_RO", "sha", 1, "k")])


async def test_a_write_no_replica_acknowledged_raises_after_the_timeout(
    client: aioredis.Redis, key_prefix: str
) -> None:
    wire = Wire.of(client, replicas=Replicas(1, 150))
    try:
        started = time.monotonic()
        with pytest.raises(NotReplicated, match="0 of 1 replicas acknowledged within 150 ms"):
            await wire.execute([("SET", f"{key_prefix}:a", 1), ("INCR", f"{key_prefix}:n")])
        assert time.monotonic() - started >= 0.15
        assert isinstance(NotReplicated("x"), UNREACHABLE)  # the API answers 503
        assert await client.get(f"{key_prefix}:a") == "1"  # applied on the primary all the same
        # reads alone carry no WAIT: answered at once, in order, error replies in place
        started = time.monotonic()
        replies = await wire.execute([("GET", f"{key_prefix}:a"), ("HGET", f"{key_prefix}:a", "f")])
        assert replies[0] == "1" and isinstance(replies[1], Exception)
        assert time.monotonic() - started < 0.15
    finally:
        await wire.aclose()
