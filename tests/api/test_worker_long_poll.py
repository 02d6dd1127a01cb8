"""The cost of a long-polling batch claim (POST /v1/worker/claim with wait_seconds) is bounded
and proportional to what changed: Redis commands counted on a server of the test's own
(``INFO commandstats``, so other tests' traffic cannot blur the count)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from cuefast.config import Settings
from cuefast.embedded.servers import EmbeddedRedis
from cuefast.services import claims as work
from cuefast.services import work_feed
from cuefast.services.work_feed import WorkFeed
from cuefast.store import Store, connect
from cuefast.store.keys import Keys
from cuefast.times import fmt_z
from tests.api.worker_helpers import Env, make_env, wenv  # noqa: F401  (fixture)
from tests.conftest import assert_error, wait_for

TASKS = [f"task-{i}" for i in range(100)]  # the most a batch claim accepts


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("own-redis"))
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
async def counted(own_redis: str, settings: Settings) -> AsyncIterator[tuple[Env, aioredis.Redis]]:
    """An API on the test's own Redis, and a client to read its command counts."""
    async with make_env(msgspec.structs.replace(settings, redis_url=own_redis)) as env:
        stats = aioredis.Redis.from_url(own_redis, decode_responses=True)
        try:
            yield env, stats
        finally:
            await stats.aclose()


async def calls(stats: aioredis.Redis, command: str) -> int:
    info: dict[str, Any] = await stats.info("commandstats")
    return int(info.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_tasks_at_the_bound(wenv: Env) -> None:
    key = await wenv.api.register()
    body = {"worker_id": "w", "tasks": TASKS}
    res = await wenv.post(key, "/v1/worker/claim", body)
    assert res.status_code == 200 and res.json()["executions"] == []
    err = assert_error(
        await wenv.post(key, "/v1/worker/claim", {**body, "tasks": [*TASKS, "one-more"]}),
        422,
        "validation_error",
    )
    assert err["message"] == "body.tasks: List should have at most 100 items"


async def test_a_long_poll_reads_only_what_changed(counted: tuple[Env, aioredis.Redis]) -> None:
    """100 task filters over the account's partitions (its bitmap's; up to 4): the first pass reads
    100 indexes per partition; a signal for the account reads that signal's partition only (100);
    an idle wait reads nothing."""
    env, stats = counted
    key = await env.api.register()
    other = await env.cue(key, "other", {"task": "not-polled"})
    wanted = await env.cue(key, "wanted", {"task": "task-42"})
    partitions = len({env.rt.store.keys.cue_partition(c["id"]) for c in (other, wanted)})  # its bitmap's
    stranger_key = await env.api.register()
    stranger = await env.cue(stranger_key, "s", {"task": "task-42"})
    await stats.config_resetstat()
    poll = asyncio.create_task(
        env.post(key, "/v1/worker/claim", {"worker_id": "w", "tasks": TASKS, "wait_seconds": 20})
    )
    first = len(TASKS) * partitions
    await wait_for(lambda: _at_least(stats, first), what="the first pass")
    # work of another account, then of this account for a task not polled: the first wakes
    # nothing, the second one pass over the signalled partition only
    await env.fire(stranger_key, stranger["id"])
    await env.fire(key, other["id"])
    await wait_for(lambda: _at_least(stats, first + len(TASKS)), what="the woken pass")
    assert not poll.done()
    eid = await env.fire(key, wanted["id"])
    res = await asyncio.wait_for(poll, 10)
    assert [i["execution_id"] for i in res.json()["executions"]] == [eid]
    # first pass + 100 + 100 index reads, and the one inside claims_claim.lua that took the execution
    assert await calls(stats, "zrangebyscore") == first + 2 * len(TASKS) + 1


@pytest.mark.slow
async def test_a_burst_of_signals_costs_one_pass(
    counted: tuple[Env, aioredis.Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signals arriving within MIN_PASS_SECONDS of the previous pass join one pass, which reads
    each signalled partition once: the bound on a long poll's total work under any signal rate."""
    monkeypatch.setattr(work, "MIN_PASS_SECONDS", 3.0)  # room for the burst below
    env, stats = counted
    key = await env.api.register()
    cues = [await env.cue(key, f"other-{i}", {"task": "not-polled"}) for i in range(12)]
    wanted = await env.cue(key, "wanted", {"task": "task-7"})
    partitions = len({env.rt.store.keys.cue_partition(c["id"]) for c in [*cues, wanted]})
    await stats.config_resetstat()
    poll = asyncio.create_task(
        env.post(key, "/v1/worker/claim", {"worker_id": "w", "tasks": TASKS, "wait_seconds": 20})
    )
    first = len(TASKS) * partitions
    await wait_for(lambda: _at_least(stats, first), what="the first pass")
    fired = [await env.fire(key, cue["id"]) for cue in cues]
    eid = await env.fire(key, wanted["id"])
    res = await asyncio.wait_for(poll, 10)
    assert [i["execution_id"] for i in res.json()["executions"]] == [eid]
    signalled = {env.rt.store.keys.execution_partition(e) for e in [*fired, eid]}
    assert await calls(stats, "zrangebyscore") == first + len(TASKS) * len(signalled) + 1


async def _at_least(stats: aioredis.Redis, n: int) -> bool:
    return await calls(stats, "zrangebyscore") >= n


@pytest.mark.slow
async def test_work_that_becomes_available_later_is_claimed_without_a_signal(
    counted: tuple[Env, aioredis.Redis],
) -> None:
    """A send_at fire is listed with a future score and never signalled: the long poll wakes when
    the earliest such work its first pass saw becomes available, and reads only its partition."""
    env, stats = counted
    key = await env.api.register()
    cue = await env.cue(key)
    partitions = 1  # the account's one cue's: a long poll reads the partitions its bitmap names
    send_at = env.clock.now_us() + 1_000_000
    res = await env.api.request("POST", f"/v1/cues/{cue['id']}/fire", key, json={"send_at": fmt_z(send_at)})
    assert res.status_code == 200, res.text
    eid = res.json()["id"]
    await stats.config_resetstat()
    poll = asyncio.create_task(env.post(key, "/v1/worker/claim", {"worker_id": "w", "wait_seconds": 20}))
    await wait_for(lambda: _at_least(stats, partitions), what="the first pass")
    env.clock.advance(1)
    out = await asyncio.wait_for(poll, 10)
    assert [i["execution_id"] for i in out.json()["executions"]] == [eid]
    assert await calls(stats, "zrangebyscore") == partitions + 1 + 1  # + claims_claim.lua's own


async def test_a_feed_that_may_have_lost_signals_wakes_everyone_for_a_full_read(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(work_feed, "READ_COUNT", 3)
    store = Store(connect(redis_url), Keys(key_prefix, 2))
    feed = WorkFeed(store, block_ms=100)
    try:
        mine = await feed.subscribe("acct-a")
        other = await feed.subscribe("acct-b")
        await store.redis.xadd(store.keys.work_signal(1), {"a": "acct-a"})
        await wait_for(mine.event.is_set, what="a signal")
        assert mine.take() == {1} and not other.event.is_set()
        async with store.redis.pipeline(transaction=True) as pipe:  # seen in one read
            for _ in range(3):  # a full batch from one stream: entries may have been trimmed away
                pipe.xadd(store.keys.work_signal(0), {"a": "acct-c"})
            await pipe.execute()
        await wait_for(lambda: mine.event.is_set() and other.event.is_set(), what="everyone woken")
        assert mine.take() is None and other.take() is None
    finally:
        await feed.close()
        await store.close()


async def test_close_ends_the_feed_even_when_its_cancel_is_swallowed(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel that lands while redis-py's read timeout fires is swallowed and the read retried
    (seen as a close() that never returned, ~1 run in 10 of the test above): the feed must stop
    anyway."""
    store = Store(connect(redis_url), Keys(key_prefix, 2))
    feed = WorkFeed(store, block_ms=100)
    real = store.claims.read_signals

    async def swallowing(*args: Any) -> Any:
        try:
            return await real(*args)
        except asyncio.CancelledError:  # what that race does: the cancel is lost, the read retried
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()
            return await real(*args)

    monkeypatch.setattr(store.claims, "read_signals", swallowing)
    try:
        await feed.subscribe("acct-a")
        listener = feed._task
        assert listener is not None
        closing = asyncio.create_task(feed.close())
        done, _ = await asyncio.wait({closing}, timeout=5)
        assert done == {closing}, "close() did not return"
    finally:
        monkeypatch.setattr(store.claims, "read_signals", real)
        feed._closing = True  # the listener stops after its current read whatever happened
        await asyncio.wait({listener}, timeout=5)
        await store.close()
