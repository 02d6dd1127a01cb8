"""Per-target-host concurrency: a hanging host cannot hold the dispatcher's capacity.

Real receivers: one on 127.0.0.2 that never answers within the test, one on 127.0.0.1
that answers at once (Linux routes all of 127/8 to the loopback interface).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cuefast.engine.dispatcher import HOST_WAIT_S, Dispatcher, host_key
from cuefast.times import parse_datetime
from tests.test_dispatcher import Receiver, env, webhook_cue

__all__ = ["env"]


async def until(cond: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait for a condition, polling; fails with ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not await cond():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def statuses(api: Any, key: str, cue_ids: set[str]) -> list[dict[str, Any]]:
    res = await api.request("GET", "/v1/executions?limit=100", key)
    return [e for e in res.json()["executions"] if e["cue_id"] in cue_ids]


def test_host_key() -> None:
    assert host_key("https://Agent.Example.com/run") == "agent.example.com:443"
    assert host_key("http://127.0.0.2:8080/h") == "127.0.0.2:8080"
    assert host_key("http://[::1]/h") == "::1:80"
    assert host_key("http://h:99999/x") == "http://h:99999/x"  # bad port: the URL itself


@pytest.mark.slow
async def test_hanging_host_does_not_block_a_fast_one(env: Any) -> None:
    api, clock, sched, _, fast = env
    slow = Receiver("127.0.0.2")
    slow.mode = "block"
    await slow.start()
    settings = api.rt.settings.replace(delivery_shutdown_grace_seconds=0.5)
    dispatcher = Dispatcher(api.rt.store, settings, clock, api.rt.webhooks, concurrency=8, per_host=3)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        key = await api.register()
        slow_ids = {(await webhook_cue(api, key, slow.url, name=f"s{i}"))["id"] for i in range(40)}
        fast_ids = {(await webhook_cue(api, key, fast.url, name=f"f{i}"))["id"] for i in range(12)}
        clock.set(parse_datetime("2031-01-06T09:00:00Z"))
        assert await sched.tick() == 52
        task = asyncio.create_task(dispatcher.run(stop, block_ms=50))

        async def fast_done() -> bool:
            rows = await statuses(api, key, fast_ids)
            return len(rows) == 12 and all(e["status"] == "success" for e in rows)

        await until(fast_done, 10 + 2 * HOST_WAIT_S, "every fast-host delivery to succeed")
        assert len(fast.requests) == 12
        # the slow host got exactly its bound of requests, all still hanging
        assert len(slow.requests) == 3
        assert dispatcher._hosts[host_key(slow.url)].active == 3

        async def handed_back() -> bool:
            rows = await statuses(api, key, slow_ids)
            return sum(e["status"] == "pending" for e in rows) == 37

        # what queued behind the stuck host went back to Redis (no attempt counted), to be
        # re-queued later through the delayed zset: the dispatcher holds no more of it
        await until(handed_back, 5 * HOST_WAIT_S + 5, "the slow host's queue to be handed back")
        rows = await statuses(api, key, slow_ids)
        assert sorted(e["status"] for e in rows) == ["delivering"] * 3 + ["pending"] * 37
        assert all(e["attempts"] == 0 for e in rows)
        assert dispatcher._parked == 0 and len(dispatcher._tasks) == 3
        keys = api.rt.keys
        redis = api.rt.store.redis

        async def queued() -> tuple[int, int]:
            parts = range(keys.partitions)
            delayed = sum([await redis.zcard(keys.delayed(p)) for p in parts])
            return delayed, sum([await redis.xlen(keys.outbox(p)) for p in parts])

        assert await queued() == (37, 3)  # 3: the hanging attempts' entries
        # once their time comes they go back into the outbox; the host is still stuck, so
        # they are handed back again at once, still without an attempt
        clock.advance(2)
        await sched.tick()

        async def back_again() -> bool:
            firsts = [
                await redis.zrange(keys.delayed(p), 0, 0, withscores=True) for p in range(keys.partitions)
            ]
            earliest = min((row[0][1] for row in firsts if row), default=0)
            return await queued() == (37, 3) and earliest >= clock.now_us() + 1_000_000

        await until(back_again, 5, "the second hand-back")
        assert len(slow.requests) == 3
        assert all(e["attempts"] == 0 for e in await statuses(api, key, slow_ids))
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 10)  # the 3 hanging requests are cut off and released
        slow.unblock.set()
        assert slow.runner is not None
        await slow.runner.cleanup()
    rows = await statuses(api, key, slow_ids)
    assert sorted(e["status"] for e in rows) == ["pending"] * 40
    assert all(e["attempts"] == 0 for e in rows)
    keys = api.rt.keys
    assert sum([await api.rt.store.redis.zcard(keys.leases(p)) for p in range(keys.partitions)]) == 0
