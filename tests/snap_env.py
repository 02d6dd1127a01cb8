"""Shared setup of the snapshot, history and restore tests: an API on a frozen clock, its own
PostgreSQL schema (restore reads a whole schema, so each test gets one), a snapshotter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.durability.schema import drop_schema
from cuefast.durability.snapshots import Snapshotter
from cuefast.engine.scheduler import Scheduler
from cuefast.runtime import Runtime
from cuefast.times import parse_datetime
from tests.conftest import Api, make_api
from tests.test_scheduler import new_cue  # noqa: F401  (re-exported for the snapshot tests)

T0 = parse_datetime("2031-01-06T08:59:30Z")


@dataclass
class Env:
    api: Api
    rt: Runtime
    clock: FrozenClock
    snap: Snapshotter
    settings: Settings

    @property
    def pool(self) -> Any:
        return self.rt.pg_pool

    def scheduler(self) -> Scheduler:
        return Scheduler(self.rt.store, self.clock)


@asynccontextmanager
async def snap_env(settings: Settings, **over: Any) -> AsyncIterator[Env]:
    schema = f"{settings.database_schema}_{uuid.uuid4().hex[:8]}"
    own = settings.replace(database_schema=schema, **over)
    clock = FrozenClock(T0)
    api, rt = await make_api(own, clock)
    snap = Snapshotter(rt.store, own, clock, rt.pg_pool)
    assert await snap.acquire()
    try:
        yield Env(api, rt, clock, snap, own)
    finally:
        await snap.release()
        await api.client.aclose()
        await rt.close()
        await drop_schema(own.database_url, schema)


async def fire(api: Api, key: str, cue_id: str, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        res = await api.request("POST", f"/v1/cues/{cue_id}/fire", key, json={})
        assert res.status_code in (200, 201), res.text
        ids.append(res.json()["id"])
    return ids


async def wipe_redis(rt: Runtime) -> None:
    """Delete every key of this test's prefix (never FLUSHALL)."""
    keys = [k async for k in rt.store.redis.scan_iter(match=f"{rt.keys.prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await rt.store.redis.delete(*keys[i : i + 500])


async def counts_exact(conn: Any) -> None:
    """Every scope's counts (folded or not) equal ``count(*)`` of the history rows."""
    want = await conn.fetch(
        "SELECT e.account_id, s.cue_id, s.worker_id, e.status, e.outcome_state, e.triggered_by, "
        "count(*) AS n FROM executions e CROSS JOIN LATERAL (VALUES ('', '', false), (e.cue_id, '', false), "
        "('', e.worker_id, true), (e.cue_id, e.worker_id, true)) AS s (cue_id, worker_id, by_worker) "
        "WHERE NOT e.in_redis AND (NOT s.by_worker OR e.worker_id <> '') GROUP BY 1, 2, 3, 4, 5, 6"
    )
    got = await conn.fetch(
        "SELECT account_id, cue_id, worker_id, status, outcome_state, triggered_by, sum(n) AS n FROM ("
        "SELECT account_id, cue_id, worker_id, status, outcome_state, triggered_by, n FROM history_counts "
        "UNION ALL SELECT c.account_id, s.cue_id, s.worker_id, c.status, c.outcome_state, c.triggered_by, "
        "c.n "
        "FROM history_count_changes c CROSS JOIN LATERAL (VALUES ('', '', false), (c.cue_id, '', false), "
        "('', c.worker_id, true), (c.cue_id, c.worker_id, true)) AS s (cue_id, worker_id, by_worker) "
        "WHERE NOT s.by_worker OR c.worker_id <> '') t GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(n) <> 0"
    )
    assert {tuple(r[:6]): int(r[6]) for r in got} == {tuple(r[:6]): int(r[6]) for r in want}
