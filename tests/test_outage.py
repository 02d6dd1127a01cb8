"""The background roles while Redis is down or refusing writes (a node down, a cluster failing
over, a full or busy server), and the snapshotter and history reads while PostgreSQL is down:
one warning naming the cause when it starts, no traceback a pass, every pass retried, and one
line when it ends (``cuefast.store.outage``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from redis import Redis, RedisCluster
from redis.cluster import ClusterNode
from redis.exceptions import ConnectionError as RedisConnectionError

from cuefast.clock import FrozenClock, SystemClock
from cuefast.config import Settings
from cuefast.durability.schema import pg_unavailable
from cuefast.durability.snapshots import Snapshotter
from cuefast.engine.dispatcher import Dispatcher
from cuefast.engine.notices import NoticeSender
from cuefast.engine.scheduler import Scheduler
from cuefast.engine.webhooks import Webhooks
from cuefast.runtime import Runtime
from cuefast.services.work_feed import WorkFeed
from cuefast.store import Store
from cuefast.store.connect import connect
from cuefast.store.keys import Keys
from cuefast.store.outage import Outage, unavailable
from cuefast.times import parse_datetime
from tests.chaos.backends import PgProxy, RedisServer, pg_target, proxied_dsn
from tests.conftest import Api, backend_settings, make_api, wait_for
from tests.refusals import Refusal
from tests.snap_env import fire, new_cue, snap_env


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _records(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


Role = Callable[[Store, Settings, asyncio.Event], tuple[Outage, Awaitable[None]]]
"""a role over ``store``: its outage log and the coroutine that runs it until the event is set"""


def _scheduler(store: Store, settings: Settings, stop: asyncio.Event) -> tuple[Outage, Awaitable[None]]:
    role = Scheduler(store, SystemClock())
    return role.outage, role.run(stop, max_sleep=0.05)


def _dispatcher(store: Store, settings: Settings, stop: asyncio.Event) -> tuple[Outage, Awaitable[None]]:
    role = Dispatcher(store, settings, SystemClock(), Webhooks(settings))
    return role.outage, role.run(stop, block_ms=10)


def _notices(store: Store, settings: Settings, stop: asyncio.Event) -> tuple[Outage, Awaitable[None]]:
    role = NoticeSender(store, settings, SystemClock(), Webhooks(settings))
    return role.outage, role.run(stop, block_ms=10)


def _snapshotter(store: Store, settings: Settings, stop: asyncio.Event) -> tuple[Outage, Awaitable[None]]:
    # the pool is never reached: taking the lease (Redis) fails first
    role = Snapshotter(store, settings.replace(snapshot_interval=0.05), SystemClock(), pool=object())
    return role.outage, role.run(stop)


def _work_feed(store: Store, settings: Settings, stop: asyncio.Event) -> tuple[Outage, Awaitable[None]]:
    feed = WorkFeed(store, block_ms=10)

    async def run() -> None:
        await feed.subscribe("acct")  # starts the listener, which reads until closed
        await stop.wait()
        await feed.close()

    return feed.outage, run()


ROLES: dict[str, tuple[Role, str]] = {
    "scheduler": (_scheduler, "cuefast.engine.scheduler"),
    "dispatcher": (_dispatcher, "cuefast.engine.dispatcher"),
    "notices": (_notices, "cuefast.engine.notices"),
    "snapshotter": (_snapshotter, "cuefast.durability.snapshots"),
    "work_feed": (_work_feed, "cuefast.services.work_feed"),
}


@pytest.mark.parametrize("name", ROLES)
async def test_an_unreachable_redis_is_one_warning_not_a_traceback_a_pass(
    settings: Settings, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """Every pass fails (nothing listens on the port) and is retried; the log gets one warning
    naming the cause, no traceback and no error line."""
    redis = connect(f"redis://127.0.0.1:{_closed_port()}/0")
    store = Store(redis, Keys(settings.key_prefix, 16))
    make, logger = ROLES[name]
    caplog.set_level(logging.INFO, logger=logger)
    stop = asyncio.Event()
    outage, run = make(store, settings, stop)
    task = asyncio.ensure_future(run)
    try:
        await wait_for(lambda: outage.failures >= 2 or task.done(), 30, "two failed passes")
        assert not task.done(), task  # the role did not die of it
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await redis.aclose()
    records = _records(caplog, logger)
    warned = [r for r in records if "Redis unavailable (ConnectionError)" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING, records
    assert all(r.exc_info is None and r.levelno < logging.ERROR for r in records), records


def test_an_outage_repeats_its_warning_at_most_once_a_period_and_says_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("tests.outage")
    caplog.set_level(logging.INFO, logger="tests.outage")
    outage = Outage(log, "a loop", repeat_s=3600)
    bug = ValueError("a bug")
    for _ in range(5):
        outage.failed(RedisConnectionError("refused"), "a pass failed")
    assert [r.getMessage() for r in caplog.records] == [
        "a loop: Redis unavailable (ConnectionError); retrying"
    ]
    outage.repeat_s = 0  # the period has passed: the next failure repeats it, with the count
    outage.failed(RedisConnectionError("refused"), "a pass failed")
    assert caplog.records[-1].getMessage().startswith("a loop: Redis still unavailable after ")
    assert "6 failed attempts (ConnectionError)" in caplog.records[-1].getMessage()
    outage.ok()
    assert "a loop: Redis available again after " in caplog.records[-1].getMessage()
    assert "6 failed attempts" in caplog.records[-1].getMessage()
    outage.ok()  # no outage: nothing more
    assert len(caplog.records) == 3 and all(r.exc_info is None for r in caplog.records)
    # anything else is a bug: its traceback, every time, and it is no outage
    outage.failed(bug, "a pass failed")
    outage.failed(bug, "a pass failed")
    assert [r.getMessage() for r in caplog.records[3:]] == ["a pass failed"] * 2
    assert all(r.exc_info is not None and r.levelno == logging.ERROR for r in caplog.records[3:])
    assert outage.since is None and unavailable(bug) == ""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["full", "misconf"])
async def test_a_scheduler_on_a_redis_refusing_writes_warns_once_then_catches_up(
    own_redis: RedisServer, database_url: str, pg_schema: str, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """A Redis past maxmemory or unable to save refuses the materialise script whole: the
    scheduler warns once (no traceback), retries, and once the server takes writes again says so
    and creates the slot that fell due meanwhile — once."""
    settings = backend_settings(own_redis.url, database_url, pg_schema, f"t{uuid.uuid4().hex[:10]}")
    clock = FrozenClock(parse_datetime("2031-01-06T08:00:30Z"))
    api, rt = await make_api(settings, clock)
    caplog.set_level(logging.INFO, logger="cuefast.engine.scheduler")
    refusal = Refusal(own_redis.url, kind)
    stop = asyncio.Event()
    scheduler = Scheduler(rt.store, clock)
    task: asyncio.Task[None] | None = None
    try:
        key = await api.register()
        body = {
            "name": "every-minute",
            "schedule": {"type": "recurring", "cron": "* * * * *"},
            "transport": "worker",
        }
        res = await api.request("POST", "/v1/cues", key, json=body)
        assert res.status_code == 201, res.text
        cue_id = res.json()["id"]
        refusal.begin()
        clock.advance(60)  # 08:01:30: the 08:01 slot is due
        task = asyncio.create_task(scheduler.run(stop, max_sleep=0.05))
        try:
            await wait_for(lambda: scheduler.outage.failures >= 3 or task.done(), 30, "refused passes")
            assert not task.done(), task
        finally:
            refusal.end()
        await wait_for(lambda: scheduler.outage.since is None, 30, "a pass after the refusal")
        listing = (await api.request("GET", f"/v1/executions?cue_id={cue_id}", key)).json()
        assert [e["scheduled_for"] for e in listing["executions"]] == ["2031-01-06T08:01:00Z"], listing
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await api.client.aclose()
        await rt.close()
    records = _records(caplog, "cuefast.engine.scheduler")
    messages = [r.getMessage() for r in records]
    cause = f"scheduler: Redis unavailable (refusing writes: {refusal.logged}"
    assert sum(m.startswith(cause) for m in messages) == 1, messages
    assert sum("Redis available again" in m for m in messages) == 1, messages
    assert all(r.exc_info is None for r in records), messages


@contextlib.asynccontextmanager
async def _on_cluster(
    cluster_url: str, database_url: str, pg_schema: str, clock: Any = None
) -> AsyncIterator[tuple[Api, Runtime, RedisCluster]]:
    """An API on the session's Redis Cluster under a fresh prefix, and a client of the cluster."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = backend_settings(cluster_url, database_url, pg_schema, prefix, redis_cluster=True)
    api, rt = await make_api(settings, clock)
    seed = RedisCluster.from_url(cluster_url, decode_responses=True)
    try:
        yield api, rt, seed
    finally:
        seed.close()
        await api.client.aclose()
        await rt.close()


@contextlib.contextmanager
def _configured(node: ClusterNode, name: str, value: int) -> Iterator[Redis]:
    """One cluster node with ``name`` set to ``value`` until the block ends (then 0)."""
    r = Redis(host=node.host, port=node.port)
    try:
        r.config_set(name, value)
        yield r
    finally:
        r.config_set(name, 0)
        r.close()


@pytest.mark.slow
@pytest.mark.cluster
async def test_a_cluster_shard_refusing_writes_leaves_the_other_shards_work_done(
    cluster_url: str, database_url: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One primary of a Redis Cluster past maxmemory: a scheduler pass creates the slots of the
    cues on the other shards, warns (no traceback) that the full shard's partitions failed, and
    the next pass after the shard takes writes again creates the rest — every slot once."""
    clock = FrozenClock(parse_datetime("2031-01-06T08:00:30Z"))
    caplog.set_level(logging.INFO, logger="cuefast.engine.scheduler")
    async with _on_cluster(cluster_url, database_url, pg_schema, clock) as (api, rt, seed):
        keys = rt.store.keys
        key = await api.register()
        cues: list[str] = []
        for i in range(16):
            body = {
                "name": f"c{i}",
                "schedule": {"type": "recurring", "cron": "* * * * *"},
                "transport": "worker",
            }
            res = await api.request("POST", "/v1/cues", key, json=body)
            assert res.status_code == 201, res.text
            cues.append(res.json()["id"])
        node_of = {c: seed.get_node_from_key(keys.part(keys.cue_partition(c))) for c in cues}
        target = node_of[cues[0]]
        refused = {c for c in cues if node_of[c].name == target.name}
        assert refused != set(cues), "every cue on one shard: nothing to tell apart"
        clock.advance(60)  # 08:01:30: every cue's 08:01 slot is due
        scheduler = Scheduler(rt.store, clock)
        with _configured(target, "maxmemory", 1):  # noeviction: writes refused with OOM, reads served
            assert await scheduler.tick() == len(cues) - len(refused)
        assert await scheduler.tick() == len(refused)
        assert await scheduler.tick() == 0
        for c in cues:
            listing = (await api.request("GET", f"/v1/executions?cue_id={c}", key)).json()
            assert [e["scheduled_for"] for e in listing["executions"]] == ["2031-01-06T08:01:00Z"], listing
    records = _records(caplog, "cuefast.engine.scheduler")
    warned = [r.getMessage() for r in records if "partitions failed this pass" in r.getMessage()]
    assert len(warned) == 1 and "refusing writes: out of memory" in warned[0], warned
    assert all(r.exc_info is None and r.levelno < logging.ERROR for r in records), records


@pytest.mark.slow
@pytest.mark.cluster
async def test_a_cluster_shard_refusing_writes_leaves_the_other_outboxes_read(
    cluster_url: str, database_url: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A consumer-group read is a write (it moves the entry into the pending list): a primary
    with fewer replicas than its ``min-replicas-to-write`` refuses it. A dispatcher's read still
    gets the other shards' outbox entries, warns once naming the cause, and reads the refused
    shard's entries once it takes writes again."""
    caplog.set_level(logging.INFO, logger="cuefast.store.streams")
    async with _on_cluster(cluster_url, database_url, pg_schema) as (api, rt, seed):
        keys = rt.store.keys
        key = await api.register()
        fired: dict[str, int] = {}  # execution id → partition
        for i in range(12):
            body = {
                "name": f"c{i}",
                "schedule": {"type": "recurring", "cron": "0 9 * * *"},
                "callback": {"url": "http://127.0.0.1:9/h"},
            }
            cue = (await api.request("POST", "/v1/cues", key, json=body)).json()["id"]
            res = await api.request("POST", f"/v1/cues/{cue}/fire", key)
            assert res.status_code in (200, 201, 202), res.text
            fired[res.json()["id"]] = keys.cue_partition(cue)
        node_of = {p: seed.get_node_from_key(keys.outbox(p)) for p in set(fired.values())}
        target = next(iter(node_of.values()))
        held = {e for e, p in fired.items() if node_of[p].name == target.name}
        assert held != set(fired), "every execution on one shard: nothing to tell apart"
        await rt.store.delivery.ensure_groups()
        with _configured(target, "min-replicas-to-write", 2):  # it has one: NOREPLICAS for every write
            first = await rt.store.delivery.read("c1", 100, None)
        assert {e.execution_id for e in first} == set(fired) - held
        then = await rt.store.delivery.read("c1", 100, None)
        assert {e.execution_id for e in then} == held
    records = _records(caplog, "cuefast.store.streams")
    warned = [r.getMessage() for r in records if "streams not read" in r.getMessage()]
    assert len(warned) == 1 and "refusing writes: short of replicas" in warned[0], warned
    assert all(r.exc_info is None for r in records), records


async def test_execution_counters_kept_through_an_outage_with_one_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The dispatcher writes its monthly execution counts every second: while Redis is down they
    are kept for the next flush and the log gets one warning, not one a second."""
    redis = connect(f"redis://127.0.0.1:{_closed_port()}/0")
    dispatcher = Dispatcher(
        Store(redis, Keys(settings.key_prefix, 16)), settings, SystemClock(), Webhooks(settings)
    )
    caplog.set_level(logging.INFO, logger="cuefast.engine.dispatcher")
    dispatcher._usage = {("acct", "2031-01"): 3}
    try:
        for _ in range(3):
            await dispatcher.flush_usage(quiet=True)
        assert dispatcher._usage == {("acct", "2031-01"): 3}  # kept
        with pytest.raises(RedisConnectionError):  # at shutdown: raised (logged by the caller)
            await dispatcher.flush_usage()
        assert dispatcher._usage == {("acct", "2031-01"): 3}
    finally:
        await redis.aclose()
    records = _records(caplog, "cuefast.engine.dispatcher")
    assert [r.getMessage() for r in records] == [
        "dispatcher: execution counters (kept): Redis unavailable (ConnectionError); retrying"
    ]


def test_a_connection_that_dies_inside_a_transaction_is_an_outage() -> None:
    """asyncpg reports a connection that died inside ``async with conn.transaction()`` as an
    ``InterfaceError`` ("cannot call Transaction.__aexit__(): the underlying connection is
    closed") raised while handling the death itself: an outage, not a bug (a CI run of the test
    below logged a snapshot cycle's traceback for it)."""
    died = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    try:
        try:
            raise died
        except asyncpg.PostgresError:
            raise asyncpg.InterfaceError(  # noqa: B904 (asyncpg raises it so: context, not cause)
                "cannot call Transaction.__aexit__(): the underlying connection is closed"
            )
    except asyncpg.InterfaceError as exc:
        closing = exc
    assert pg_unavailable(closing) == pg_unavailable(died) != ""
    busy = asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    assert pg_unavailable(busy) == ""  # a misuse raised on its own: a bug


async def test_a_postgresql_outage_is_one_warning_for_the_snapshotter_and_history(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL behind a relay that drops every connection and refuses new ones: the
    snapshotter's cycles fail and are retried with one warning, no traceback a cycle; the
    history reads answer from Redis alone with one warning, not a line a request; both say
    when it ends, and the snapshot catches up."""
    proxy = PgProxy(pg_target(settings.database_url))
    await proxy.start()
    over = {"database_url": proxied_dsn(settings.database_url, proxy.port), "snapshot_interval": 0.05}
    for logger in ("cuefast.durability.snapshots", "cuefast.durability.history"):
        caplog.set_level(logging.INFO, logger=logger)
    stop = asyncio.Event()
    try:
        async with snap_env(settings, **over) as env:
            store, history = env.rt.store, env.rt.executions.history
            key = await env.api.register()
            cue = await new_cue(env.api, key, "w")
            task = asyncio.ensure_future(env.snap.run(stop))
            await wait_for(lambda: _clean(store), 30, "the first snapshot")
            proxy.outage()
            ids = await fire(env.api, key, cue["id"], 3)  # Redis serves; PostgreSQL cannot take them
            await wait_for(lambda: env.snap.outage.failures >= 3 or task.done(), 30, "failed cycles")
            assert not task.done(), task
            for _ in range(3):
                assert await history.get("acct", ids[0]) is None
            assert history.outage.failures == 3
            proxy.restore()
            await wait_for(lambda: env.snap.outage.since is None and _clean(store), 30, "the catch-up")
            assert await history.get("acct", ids[0]) is None  # (another account's: not found)
            assert history.outage.since is None
            async with env.pool.acquire() as conn:
                held = await conn.fetchval("SELECT count(*) FROM executions WHERE id = ANY($1::uuid[])", ids)
            assert held == 3
            stop.set()
            await asyncio.wait_for(task, 30)
    finally:
        stop.set()
        await proxy.close()
    for logger, what in (
        ("cuefast.durability.snapshots", "snapshot cycle"),
        ("cuefast.durability.history", "execution history"),
    ):
        records = _records(caplog, logger)
        said = [r.getMessage() for r in records]
        assert len([m for m in said if m.startswith(f"{what}: PostgreSQL unavailable (")]) == 1, said
        assert len([m for m in said if m.startswith(f"{what}: PostgreSQL available again after ")]) == 1, said
        assert all(r.exc_info is None and r.levelno < logging.ERROR for r in records), said


async def _clean(store: Store) -> bool:
    """Nothing dirty left: every change is in PostgreSQL."""
    return await store.snapshots.dirty_count() == 0


async def test_a_process_started_while_postgresql_is_down_says_when_it_is_back(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A serving process whose PostgreSQL is away at start serves from Redis and retries in the
    background: one warning naming the server and the setting (no traceback), quiet retries,
    and one line once PostgreSQL can be used (before: a retry loop that said nothing of an error
    that was no outage, and "postgres connected" at INFO)."""
    proxy = PgProxy(pg_target(settings.database_url))
    await proxy.start()
    proxy.outage()
    caplog.set_level(logging.INFO, logger="cuefast.runtime")
    rt = Runtime(settings.replace(database_url=proxied_dsn(settings.database_url, proxy.port)))
    try:
        await rt.start()
        assert rt.pg_pool is None
        await wait_for(lambda: rt._pg_outage.failures >= 2, 30, "a retry in the background")
        proxy.restore()
        await wait_for(lambda: rt.pg_pool is not None, 30, "PostgreSQL in use")
    finally:
        await rt.close()
        await proxy.close()
    records = _records(caplog, "cuefast.runtime")
    said = [r.getMessage() for r in records]
    down = [m for m in said if m.startswith("startup: PostgreSQL unavailable (")]
    assert len(down) == 1 and "CUEFAST_DATABASE_URL" in down[0], said
    assert "retrying in the background (the API serves from Redis meanwhile)" in down[0]
    assert len([m for m in said if m.startswith("startup: PostgreSQL available again after ")]) == 1, said
    assert all(r.exc_info is None and r.levelno < logging.ERROR for r in records), said
