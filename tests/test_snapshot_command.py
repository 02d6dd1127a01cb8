"""``cuefast snapshot`` (a real subprocess) next to a running snapshotter (a real process): it
asks that one for a snapshot now and exits 0 only once PostgreSQL holds every change made
before it was called; without one it writes the snapshot itself; it gives up with exit 3."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cuefast.config import Settings
from cuefast.runtime import Runtime
from tests.conftest import Api, make_api, wait_for
from tests.procs import Processes, cuefast_command, process_env
from tests.snap_env import fire
from tests.test_scheduler import new_cue


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[tuple[Api, Runtime]]:
    api, rt = await make_api(settings)
    try:
        yield api, rt
    finally:
        await api.client.aclose()
        await rt.close()


async def snapshot_command(env: dict[str, str], *args: str) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds taken)."""
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *cuefast_command(), "snapshot", *args, env=env, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    return int(proc.returncode or 0), out.decode(), err.decode(), time.monotonic() - began


async def pg_ids(rt: Runtime, table: str, ids: list[str]) -> set[str]:
    cast = "uuid" if table == "executions" else "text"
    async with rt.pg_pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT id::text AS id FROM {table} WHERE id = ANY($1::{cast}[])", ids)
    return {r["id"] for r in rows}


async def test_snapshot_asks_the_running_snapshotter(
    settings: Settings, app: tuple[Api, Runtime], tmp_path: Path
) -> None:
    api, rt = app
    key = await api.register()
    first = await new_cue(api, key, "first")
    env = process_env(settings, CUEFAST_SNAPSHOT_INTERVAL="3600")  # never again on its own
    async with Processes(tmp_path / "logs", lifetime=100) as procs:
        procs.start("snapshotter", "snapshotter", env=env)

        async def first_cycle_done() -> Any:
            return await pg_ids(rt, "cues", [first["id"]])

        await wait_for(first_cycle_done, timeout=30, what="the snapshotter's first snapshot")
        assert await rt.store.redis.get(rt.keys.snapshot_lease)  # it holds the lease
        # changes made after that snapshot: nothing would write them for an hour
        cue = await new_cue(api, key, "later")
        execs = await fire(api, key, cue["id"], 3)
        assert await rt.store.snapshots.dirty_count() > 0
        rc, out, err, took = await snapshot_command(env, "--timeout", "60")
        assert rc == 0, (out, err)
        assert "written by the running snapshotter" in out
        assert await pg_ids(rt, "cues", [cue["id"]]) == {cue["id"]}
        assert await pg_ids(rt, "executions", execs) == set(execs)
        assert took < 30
        assert procs.procs["snapshotter"].alive()
        # and again: each call gets its own request
        more = await fire(api, key, cue["id"], 2)
        rc, out, err, _ = await snapshot_command(env, "--timeout", "60")
        assert rc == 0 and "written by the running snapshotter" in out, (out, err)
        assert await pg_ids(rt, "executions", more) == set(more)
        assert await procs.stop("snapshotter") == 0


async def test_snapshot_takes_over_a_lease_that_lapses(settings: Settings, app: tuple[Api, Runtime]) -> None:
    api, rt = app
    key = await api.register()
    cue = await new_cue(api, key, "orphan")
    # a snapshotter that died holding the lease: nobody serves the request until it lapses
    await rt.store.redis.set(rt.keys.snapshot_lease, "dead-snapshotter", px=1500)
    rc, out, err, _ = await snapshot_command(process_env(settings), "--timeout", "60")
    assert rc == 0 and "rows upserted" in out, (out, err)
    assert await pg_ids(rt, "cues", [cue["id"]]) == {cue["id"]}
    assert not await rt.store.redis.exists(rt.keys.snapshot_lease)  # released


async def test_snapshot_times_out_with_exit_3(settings: Settings, app: tuple[Api, Runtime]) -> None:
    api, rt = app
    await new_cue(api, await api.register(), "stuck")
    # a lease holder that never snapshots (say, its PostgreSQL is unreachable)
    await rt.store.redis.set(rt.keys.snapshot_lease, "stuck-snapshotter", px=60_000)
    rc, out, err, took = await snapshot_command(process_env(settings), "--timeout", "1")
    assert rc == 3, (out, err)
    assert "did not complete a snapshot within 1 s" in err and "Traceback" not in err
    assert took < 20
