"""``Wire`` with ``Replicas`` (``CUEFAST_REDIS_WAIT_REPLICAS``) and no replica: writes wait, reads do not."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from cuefast.store import UNREACHABLE, Keys, Store, connect
from cuefast.store.dashboard_sessions import DashboardSession
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


async def test_the_writes_beside_the_scripts_wait_for_replicas_too(
    client: aioredis.Redis, redis_url: str, key_prefix: str
) -> None:
    """Dashboard sessions, one-time login tokens, a login window's give-back, a removed task
    cap's permits and the claimers' wake-up go through the wire (they were redis-py calls,
    outside ``CUEFAST_REDIS_WAIT_REPLICAS``): with no replica each raises ``NotReplicated``."""
    store = Store(connect(redis_url), Keys(key_prefix, 4), replicas=Replicas(1, 50))
    writes_ = [
        store.dashboard_sessions.create("s" * 64, DashboardSession("k" * 64, "csrf"), 60_000),
        store.dashboard_sessions.delete("s" * 64),
        store.login.put_token(store.keys.magic_link("t" * 64), "v", now_us=1, ttl_s=60),
        store.login.take_token(store.keys.magic_link("t" * 64), 1),
        store.login.give_back("ip", "127.0.0.1", 1),
        store.task_caps.drop("acct", "task"),
        store.task_caps.signal("acct"),
    ]
    try:
        for write in writes_:
            with pytest.raises(NotReplicated):
                await write
        assert await store.dashboard_sessions.get("s" * 64) is None  # reads carry no WAIT
    finally:
        await store.close()
