"""Retention: finished executions leave Redis only once PostgreSQL holds them, and listings and
reads still include them (Redis first, then PostgreSQL; totals and pagination over both)."""

from __future__ import annotations

from typing import Any

from cuefast.config import Settings
from tests.snap_env import Env, fire, new_cue, snap_env


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


async def _in_redis(env: Env, ids: list[str]) -> set[str]:
    return {eid for eid, h in zip(ids, await env.rt.store.get_executions(ids), strict=True) if h}


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
        assert await store.dirty_count() == 1  # marked for the next snapshot
        await env.snap.snapshot()
        env.clock.advance(120)
        assert await env.snap.trim() == 1


async def test_history_survives_a_restore(settings: Settings) -> None:
    from cuefast.restore import restore
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
