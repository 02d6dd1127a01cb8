"""Retention: finished executions leave Redis only once PostgreSQL holds them, and listings and
reads still include them (Redis first, then PostgreSQL; totals and pagination over both)."""

from __future__ import annotations

from typing import Any

import pytest

from cuefast.config import Settings
from cuefast.store import Status
from tests.snap_env import Env, counts_exact, fire, new_cue, snap_env


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def _succeed(env: Env, key: str, ids: list[str]) -> None:
    for eid in ids:
        res = await env.api.request("POST", f"/v1/executions/{eid}/outcome", key, json={"success": True})
        assert res.status_code == 200, res.text


async def _all_pages(env: Env, key: str, path: str, field: str, size: int) -> tuple[list[str], int]:
    seen: list[str] = []
    offset, total = 0, -1
    sep = "&" if "?" in path else "?"
    lim, off = (
        ("execution_limit", "execution_offset")
        if field == "executions" and "/cues/" in path
        else (
            "limit",
            "offset",
        )
    )
    while True:
        res = await env.api.request("GET", f"{path}{sep}{lim}={size}&{off}={offset}", key)
        assert res.status_code == 200, res.text
        body: dict[str, Any] = res.json()
        total = body.get("total", body.get("execution_total", -1))
        items = body[field]
        seen += [e["id"] for e in items]
        offset += size
        if offset >= total:
            return seen, total


async def _cursor_pages(env: Env, key: str, path: str, size: int) -> tuple[list[str], int]:
    """Every page of ``path`` by cursor: the ids in order and the total (the same on each)."""
    seen: list[str] = []
    sep = "&" if "?" in path else "?"
    cursor, totals = "", set()
    while True:
        res = await env.api.request("GET", f"{path}{sep}limit={size}&cursor={cursor}", key)
        assert res.status_code == 200, res.text
        body: dict[str, Any] = res.json()
        seen += [e["id"] for e in body["executions"]]
        totals.add(body["total"])
        if body["next_cursor"] is None:
            assert len(totals) == 1
            return seen, totals.pop()
        cursor = body["next_cursor"]


async def _in_redis(env: Env, ids: list[str]) -> set[str]:
    return {eid for eid, h in zip(ids, await env.rt.store.executions.get_many(ids), strict=True) if h}


@pytest.mark.slow
async def test_retention_trims_only_snapshotted_executions_and_history_still_lists_them(
    settings: Settings,
) -> None:
    async with snap_env(settings, redis_retention=3600) as env:
        key = await env.api.register()
        cue = await new_cue(env.api, key, "w")
        other = await new_cue(env.api, key, "other")
        old = await fire(env.api, key, cue["id"], 12)
        await _succeed(env, key, old)
        await env.snap.snapshot()
        late = await fire(env.api, key, cue["id"], 5)
        await _succeed(env, key, late)  # finished, but not snapshotted yet
        env.clock.advance(1800)
        live = await fire(env.api, key, cue["id"], 3)  # unfinished: never trimmed
        mine = await fire(env.api, key, other["id"], 2)
        env.clock.advance(1801 + 60)  # old and late finished over an hour ago
        assert await env.snap.trim() == 12
        assert await _in_redis(env, old) == set()
        async with env.pool.acquire() as conn:  # the history's counts, kept by the trim
            await counts_exact(conn)
            assert await conn.fetchval("SELECT count(*) FROM history_count_changes") == 0
        assert await _in_redis(env, late + live + mine) == set(late + live + mine)

        everything = set(old + late + live + mine)
        for size in (1, 4, 7, 50):
            ids, total = await _all_pages(env, key, "/v1/executions", "executions", size)
            assert total == len(everything)
            assert len(ids) == len(set(ids)) and set(ids) == everything, size
            ids, total = await _all_pages(env, key, f"/v1/executions?cue_id={cue['id']}", "executions", size)
            assert total == 20 and set(ids) == set(old + late + live)
            ids, total = await _all_pages(env, key, f"/v1/cues/{cue['id']}", "executions", size)
            assert total == 20 and len(ids) == 20 and set(ids) == set(old + late + live), size
        ids, total = await _all_pages(env, key, "/v1/executions?status=success", "executions", 5)
        assert total == 17 and set(ids) == set(old + late)
        ids, total = await _all_pages(env, key, "/v1/executions?status=pending", "executions", 5)
        assert total == 5 and set(ids) == set(live + mine)
        for path in ("/v1/executions", f"/v1/executions?cue_id={cue['id']}", "/v1/executions?status=success"):
            offset_ids, total = await _all_pages(env, key, path, "executions", 100)
            for size in (1, 4, 9, 50):  # cuefast's cursor: Redis by keyset, then the history
                assert await _cursor_pages(env, key, path, size) == (offset_ids, total), (path, size)

        res = await env.api.request("GET", f"/v1/executions/{old[0]}", key)
        assert res.status_code == 200, res.text
        assert res.json()["status"] == "success" and res.json()["id"] == old[0]
        stranger = await env.api.register()
        res = await env.api.request("GET", f"/v1/executions/{old[0]}", stranger)
        assert res.status_code == 404

        # the next snapshot catches the late ones up; then they may go too
        await env.snap.snapshot()
        assert await env.snap.trim() == 5
        assert await _in_redis(env, late) == set()
        ids, total = await _all_pages(env, key, "/v1/executions", "executions", 3)
        assert total == len(everything) and set(ids) == everything and len(ids) == len(everything)


async def test_a_changed_execution_is_kept_and_snapshotted_again(settings: Settings) -> None:
    async with snap_env(settings, redis_retention=60) as env:
        key = await env.api.register()
        cue = await new_cue(env.api, key, "w")
        [eid] = await fire(env.api, key, cue["id"])
        await _succeed(env, key, [eid])
        await env.snap.snapshot()
        env.clock.advance(120)
        # changed after its snapshot (the same status, a newer version): exec_trim keeps it
        store = env.rt.store
        p = store.keys.execution_partition(eid)
        assert p is not None
        await store.redis.hset(store.keys.execution(p, eid), "ua", str(env.clock.now_us()))
        assert await env.snap.trim() == 0
        assert await _in_redis(env, [eid]) == {eid}
        assert await store.snapshots.dirty_count() == 1  # marked for the next snapshot
        await env.snap.snapshot()
        env.clock.advance(120)
        assert await env.snap.trim() == 1


async def test_history_survives_a_restore(settings: Settings) -> None:
    from cuefast.durability.restore import restore
    from tests.snap_env import wipe_redis

    async with snap_env(settings, redis_retention=60) as env:
        key = await env.api.register()
        cue = await new_cue(env.api, key, "w")
        old = await fire(env.api, key, cue["id"], 3)
        await _succeed(env, key, old)
        await env.snap.snapshot()
        env.clock.advance(120)
        assert await env.snap.trim() == 3
        recent = await fire(env.api, key, cue["id"], 2)
        await env.snap.snapshot()
        before, total = await _all_pages(env, key, "/v1/executions", "executions", 2)
        assert total == 5
        await wipe_redis(env.rt)
        await restore(env.rt.store, env.pool, env.clock.now_us())
        after, total = await _all_pages(env, key, "/v1/executions", "executions", 2)
        assert total == 5 and after == before and set(after) == set(old + recent)


async def _fired_once_cue_trimmed(env: Env, key: str) -> tuple[dict[str, Any], str]:
    """A one-time worker cue that fired and completed, its execution snapshotted and trimmed
    from Redis by retention (PostgreSQL holds it only): (cue, execution id)."""
    cue = await new_cue(env.api, key, "once", schedule={"type": "once", "at": "2031-01-06T09:00:00Z"})
    env.clock.advance(60)
    assert await env.scheduler().tick() == 1
    res = await env.api.request("GET", f"/v1/executions?cue_id={cue['id']}", key)
    (e,) = res.json()["executions"]
    await _succeed(env, key, [e["id"]])
    got = (await env.api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert got["status"] == "completed" and got["fired_count"] == 1
    await env.snap.snapshot()
    env.clock.advance(120)
    assert await env.snap.trim() == 1
    assert await _in_redis(env, [e["id"]]) == set()
    return cue, str(e["id"])


async def test_a_trimmed_one_time_cue_cannot_be_reactivated(settings: Settings) -> None:
    from tests.conftest import assert_error

    async with snap_env(settings, redis_retention=60) as env:
        key = await env.api.register()
        cue, eid = await _fired_once_cue_trimmed(env, key)
        path = f"/v1/cues/{cue['id']}"
        assert_error(
            await env.api.request("PATCH", path, key, json={"status": "active"}),
            400,
            "invalid_schedule",
            "One-time cue has already fired; set a new schedule.at",
        )
        assert (await env.api.request("GET", path, key)).json()["status"] == "completed"
        # nothing fires again, and the recorded run stays as it was
        env.clock.advance(3600)
        assert await env.scheduler().tick() == 0
        await env.snap.snapshot()
        res = await env.api.request("GET", f"/v1/executions/{eid}", key)
        assert res.status_code == 200 and res.json()["status"] == "success"
        assert res.json()["outcome"]["success"] is True
        # a new `at` re-arms it (a new slot, a new execution id)
        res = await env.api.request(
            "PATCH", path, key, json={"status": "active", "schedule": {"at": "2031-01-06T12:00:00Z"}}
        )
        assert res.status_code == 200, res.text
        assert res.json()["next_run"] == "2031-01-06T12:00:00Z"


async def test_a_restored_one_time_cue_still_knows_it_fired(settings: Settings) -> None:
    from cuefast.durability.restore import restore
    from tests.conftest import assert_error
    from tests.snap_env import wipe_redis

    async with snap_env(settings, redis_retention=60) as env:
        key = await env.api.register()
        cue, _ = await _fired_once_cue_trimmed(env, key)
        await env.snap.snapshot()
        await wipe_redis(env.rt)
        await restore(env.rt.store, env.pool, env.clock.now_us())
        assert_error(
            await env.api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "active"}),
            400,
            "invalid_schedule",
            "One-time cue has already fired; set a new schedule.at",
        )


async def test_the_fired_check_needs_neither_the_execution_nor_postgres(settings: Settings) -> None:
    """The cue itself records that its slot fired (O(1), no PostgreSQL query); a cue that fired
    before that record existed is found in history."""
    from tests.conftest import assert_error

    async with snap_env(settings, redis_retention=60) as env:
        key = await env.api.register()
        cue, _ = await _fired_once_cue_trimmed(env, key)
        path = f"/v1/cues/{cue['id']}"
        history, env.rt.executions.history = env.rt.executions.history, None  # PostgreSQL gone
        try:
            assert_error(
                await env.api.request("PATCH", path, key, json={"status": "active"}),
                400,
                "invalid_schedule",
            )
        finally:
            env.rt.executions.history = history
        store = env.rt.store
        await store.redis.hdel(store.keys.cue(cue["id"]), "fa")  # fired before the field existed
        assert_error(
            await env.api.request("PATCH", path, key, json={"status": "active"}),
            400,
            "invalid_schedule",
        )


async def test_cue_update_never_puts_a_fired_slot_back(settings: Settings) -> None:
    """A PATCH that read the cue before its slot fired cannot re-arm that slot (the script
    answers "re-read" and the re-read sees the fired slot)."""
    async with snap_env(settings) as env:
        key = await env.api.register()
        at = "2031-01-06T09:00:00Z"
        cue = await new_cue(env.api, key, "once", schedule={"type": "once", "at": at})
        store = env.rt.store
        stale = await store.cues.get(cue["id"])  # what a PATCH read before the slot fired
        assert stale is not None and "fa" not in stale
        env.clock.advance(60)
        assert await env.scheduler().tick() == 1
        acct = stale["acct"]
        res = await store.cues.update(
            cue["id"], acct, stale.get("v") or "1", next_run=stale["nr"], fields={"ua": 1, "v": 2}
        )
        assert res is Status.CONFLICT
        fresh = await store.cues.get(cue["id"])
        assert fresh is not None and fresh["nr"] == "" and fresh["fa"] == stale["nr"]
        due = store.keys.due(store.keys.cue_partition(cue["id"]))
        assert await store.redis.zscore(due, cue["id"]) is None


async def _listed_once(env: Env, key: str, cue_id: str, everything: set[str], of_cue: set[str]) -> None:
    """Every listing shows each execution exactly once and counts it once."""
    for size in (1, 3, 50):
        ids, total = await _all_pages(env, key, "/v1/executions", "executions", size)
        assert total == len(everything) and len(ids) == total and set(ids) == everything, size
        ids, total = await _all_pages(env, key, f"/v1/cues/{cue_id}", "executions", size)
        assert total == len(of_cue) and len(ids) == total and set(ids) == of_cue, size
    ids, total = await _all_pages(env, key, "/v1/executions?status=success", "executions", 4)
    assert total == len(of_cue) and len(ids) == total and set(ids) == of_cue


async def _pg_in_redis(env: Env, ids: list[str]) -> dict[str, bool]:
    async with env.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id::text AS id, in_redis FROM executions WHERE id = ANY($1::uuid[])", ids
        )
    return {r["id"]: r["in_redis"] for r in rows}


async def test_a_trim_interrupted_between_its_halves_lists_once_and_converges(settings: Settings) -> None:
    from cuefast.durability.snapshots import Snapshotter

    async with snap_env(settings, redis_retention=60) as env:
        key = await env.api.register()
        cue = await new_cue(env.api, key, "w")
        other = await new_cue(env.api, key, "other")
        old = await fire(env.api, key, cue["id"], 7)
        await _succeed(env, key, old)
        await env.snap.snapshot()
        env.clock.advance(120)
        recent = await fire(env.api, key, other["id"], 2)
        everything, of_cue = set(old + recent), set(old)

        # the Redis half only (the process dies before PostgreSQL hears of it)
        assert await env.snap.trim_redis() == (7, 7)
        assert await _in_redis(env, old) == set()
        assert set((await _pg_in_redis(env, old)).values()) == {True}
        await _listed_once(env, key, cue["id"], everything, of_cue)

        # a fresh snapshotter finishes it first thing
        await env.snap.release()
        fresh = Snapshotter(env.rt.store, env.settings, env.clock, env.pool)
        assert await fresh.acquire()
        env.snap = fresh
        assert await fresh.trim() == 0
        assert set((await _pg_in_redis(env, old)).values()) == {False}
        assert await env.rt.store.snapshots.trim_handoff() == {}
        assert not await env.rt.store.redis.exists(env.rt.keys.trim_pending)
        await _listed_once(env, key, cue["id"], everything, of_cue)


async def test_a_trim_interrupted_after_its_postgres_commit_lists_once_and_converges(
    settings: Settings,
) -> None:
    async with snap_env(settings, redis_retention=60) as env:
        key = await env.api.register()
        cue = await new_cue(env.api, key, "w")
        old = await fire(env.api, key, cue["id"], 5)
        await _succeed(env, key, old)
        await env.snap.snapshot()
        env.clock.advance(120)
        assert await env.snap.trim_redis() == (5, 5)
        # the PostgreSQL half commits, then the process dies before the hand-offs are dropped
        handed = await env.rt.store.snapshots.trim_handoff()
        async with env.pool.acquire() as conn:
            await conn.execute(
                "UPDATE executions SET in_redis = false WHERE id = ANY($1::uuid[])",
                [eid for ids in handed.values() for eid in ids],
            )
        await _listed_once(env, key, cue["id"], set(old), set(old))
        assert await env.snap.trim() == 0
        async with env.pool.acquire() as conn:  # the direct UPDATE counted, then folded
            await counts_exact(conn)
            assert await conn.fetchval("SELECT count(*) FROM history_count_changes") == 0
        assert await env.rt.store.snapshots.trim_handoff() == {}
        await _listed_once(env, key, cue["id"], set(old), set(old))
        # and a trim with nothing to hand off leaves no pending flag behind
        assert not await env.rt.store.redis.exists(env.rt.keys.trim_pending)


async def test_a_deleted_cues_history_is_gone_at_once(settings: Settings) -> None:
    """After DELETE /v1/cues/{id}, its executions answer 404 and leave every listing at once,
    even those PostgreSQL already holds (the snapshot that drops them may be seconds away)."""
    async with snap_env(settings, redis_retention=3600) as env:
        key = await env.api.register()
        cue = await new_cue(env.api, key, "w")
        other = await new_cue(env.api, key, "other")
        ids = await fire(env.api, key, cue["id"], 3)
        kept = await fire(env.api, key, other["id"], 1)
        await _succeed(env, key, ids + kept)
        await env.snap.snapshot()
        env.clock.advance(7200)
        assert await env.snap.trim() == 4  # PostgreSQL alone holds them now
        assert not await _in_redis(env, ids)
        res = await env.api.request("DELETE", f"/v1/cues/{cue['id']}", key)
        assert res.status_code in (200, 204), res.text
        for eid in ids:
            res = await env.api.request("GET", f"/v1/executions/{eid}", key)
            assert res.status_code == 404, res.text
        seen, total = await _all_pages(env, key, "/v1/executions", "executions", 2)
        assert seen == kept and total == 1
        async with env.pool.acquire() as conn:  # the deleted cue's history uncounted at once
            await counts_exact(conn)
