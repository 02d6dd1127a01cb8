"""Restore: Redis wiped (this test's prefix only) → ``restore`` → the API answers the same, outcomes
stay write-once and scheduling resumes without firing a recorded slot twice."""

from __future__ import annotations

import io
from typing import Any

import pytest

from cuefast.config import Settings
from cuefast.durability.restore import NotEmpty, restore
from cuefast.ids import key_sha, scheduled_execution_id
from cuefast.times import parse_datetime
from tests.snap_env import Env, fire, new_cue, snap_env, wipe_redis


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def _answers(env: Env, key: str, cue_ids: list[str], exec_ids: list[str]) -> dict[str, Any]:
    paths = ["/v1/auth/me", "/v1/cues", "/v1/cues?status=active", "/v1/executions", "/v1/executions?limit=2"]
    paths += ["/v1/alerts", "/v1/alerts?alert_type=consecutive_failures", "/v1/alerts?limit=1&offset=1"]
    paths += [f"/v1/cues/{c}" for c in cue_ids]
    paths += [f"/v1/executions/{e}" for e in exec_ids]
    paths += [f"/v1/executions?cue_id={c}" for c in cue_ids]
    out: dict[str, Any] = {}
    for path in paths:
        res = await env.api.request("GET", path, key)
        assert res.status_code == 200, (path, res.text)
        out[path] = res.json()
    return out


async def _restore(env: Env, force: bool = False) -> str:
    buf = io.StringIO()
    await restore(env.rt.store, env.pool, env.clock.now_us(), force=force, progress_out=buf)
    return buf.getvalue()


async def test_restore_rebuilds_what_the_api_answers_and_scheduling_resumes(settings: Settings) -> None:
    async with snap_env(settings) as env:
        key = await env.api.register()
        every = await new_cue(env.api, key, "every-minute")
        hook = await new_cue(
            env.api,
            key,
            "hook",
            transport="webhook",
            callback={"url": "http://127.0.0.1:9/hook"},
            schedule={"type": "recurring", "cron": "0 12 * * *"},
        )
        once = await new_cue(
            env.api, key, "once", schedule={"type": "once", "at": "2031-01-07T00:00:00Z"}, payload={"a": 1}
        )
        res = await env.api.request("PATCH", f"/v1/cues/{hook['id']}", key, json={"status": "paused"})
        assert res.status_code == 200, res.text
        sched = env.scheduler()
        env.clock.set(parse_datetime("2031-01-06T09:00:00.2Z"))
        assert await sched.tick() == 1
        p = env.rt.keys.cue_byte(every["id"])
        slot1 = scheduled_execution_id(every["id"], parse_datetime("2031-01-06T09:00:00Z"), p)
        res = await env.api.request(
            "POST", f"/v1/executions/{slot1}/outcome", key, json={"success": True, "result": "ok"}
        )
        assert res.status_code == 200, res.text
        manual = await fire(env.api, key, every["id"], 2)
        # three failure outcomes in a row: one consecutive_failures alert (and one more cue)
        flaky = await new_cue(
            env.api,
            key,
            "flaky",
            alerts={"consecutive_failures": 3},
            schedule={"type": "recurring", "cron": "0 0 1 1 *"},
        )
        failed = await fire(env.api, key, flaky["id"], 3)
        for eid in failed:
            res = await env.api.request("POST", f"/v1/executions/{eid}/outcome", key, json={"success": False})
            assert res.status_code == 200, res.text
        alerts = (await env.api.request("GET", "/v1/alerts", key)).json()
        assert [a["alert_type"] for a in alerts["alerts"]] == ["consecutive_failures"], alerts
        await env.snap.snapshot()
        cues = [every["id"], hook["id"], once["id"], flaky["id"]]
        execs = [slot1, *manual, *failed]
        before = await _answers(env, key, cues, execs)

        # a slot materialised after the last snapshot: lost with Redis
        env.clock.set(parse_datetime("2031-01-06T09:01:00.2Z"))
        assert await sched.tick() == 1
        slot2 = scheduled_execution_id(every["id"], parse_datetime("2031-01-06T09:01:00Z"), p)

        with pytest.raises(NotEmpty):
            await _restore(env)
        await wipe_redis(env.rt)
        res = await env.api.request("GET", "/v1/cues", key)
        assert res.status_code == 401  # Redis really lost everything
        text = await _restore(env)
        assert "100%" in text

        after = await _answers(env, key, cues, execs)
        assert after == before
        # the account's cue-partition bitmap is back, computed from its cues (listings read only those)
        me = await env.rt.store.accounts.authenticate(key_sha(key), count=False, now_us=0)
        assert me.account is not None
        assert me.account.partitions == tuple(sorted({env.rt.keys.cue_partition(c) for c in cues}))
        # write-once outcomes survive
        res = await env.api.request("POST", f"/v1/executions/{slot1}/outcome", key, json={"success": False})
        assert res.status_code == 409, res.text
        # names stay unique
        res = await env.api.request(
            "POST",
            "/v1/cues",
            key,
            json={
                "name": "every-minute",
                "transport": "worker",
                "schedule": {"type": "recurring", "cron": "* * * * *"},
            },
        )
        assert res.status_code == 409, res.text
        # scheduling resumes: the unrecorded slot fires once more, the recorded one never again
        assert await sched.tick() == 1
        assert await sched.tick() == 0
        res = await env.api.request("GET", f"/v1/executions?cue_id={every['id']}&limit=100", key)
        ids = [e["id"] for e in res.json()["executions"]]
        assert sorted(ids) == sorted([slot1, slot2, *manual])
        env.clock.set(parse_datetime("2031-01-06T09:02:00.2Z"))
        assert await sched.tick() == 1
        # the worker can claim the re-fired slot
        res = await env.api.request("GET", "/v1/executions/claimable", key)
        assert res.status_code == 200, res.text
        claimable = {e["execution_id"] for e in res.json()["executions"]}
        assert slot2 in claimable and slot1 not in claimable


async def test_restore_is_refused_over_data_unless_forced(settings: Settings) -> None:
    async with snap_env(settings) as env:
        key = await env.api.register()
        await new_cue(env.api, key, "a")
        await env.snap.snapshot()
        with pytest.raises(NotEmpty):
            await _restore(env)
        await _restore(env, force=True)  # idempotent over the same data
        res = await env.api.request("GET", "/v1/cues", key)
        assert res.status_code == 200 and res.json()["total"] == 1


@pytest.mark.slow
async def test_the_snapshot_and_restore_commands(settings: Settings) -> None:
    """``cuefast snapshot`` and ``cuefast restore`` as real processes."""
    import asyncio
    import os
    import sys

    async with snap_env(settings) as env:
        key = await env.api.register()
        cue = await new_cue(env.api, key, "cli")
        await env.snap.release()  # the command takes the lease itself
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")},
            "CUEFAST_REDIS_URL": env.settings.redis_url,
            "CUEFAST_REDIS_CLUSTER": str(env.settings.redis_cluster).lower(),
            "CUEFAST_DATABASE_URL": env.settings.database_url,
            "CUEFAST_DATABASE_SCHEMA": env.settings.database_schema,
            "CUEFAST_KEY_PREFIX": env.settings.key_prefix,
            "CUEFAST_PARTITIONS": str(env.settings.partitions),
        }

        async def cli(*args: str) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cuefast", *args, env=environ, stdout=-1, stderr=-1
            )
            out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            return int(proc.returncode or 0), out.decode(), err.decode()

        rc, out, _ = await cli("snapshot")
        assert rc == 0 and "rows upserted" in out, out
        rc, _, err = await cli("restore")
        assert rc == 1 and "--force" in err
        await wipe_redis(env.rt)
        rc, out, err = await cli("restore")
        assert rc == 0, err
        assert "restored 1 accounts, 1 cues" in out and "100%" in err
        res = await env.api.request("GET", f"/v1/cues/{cue['id']}", key)
        assert res.status_code == 200 and res.json()["name"] == "cli"


async def test_labels_and_their_index_survive_a_restore(settings: Settings) -> None:
    async with snap_env(settings) as env:
        key = await env.api.register()
        a = await new_cue(
            env.api, key, "a", labels={"team": "growth", "env": "prod"}, payload={"p": "x" * 80}
        )
        b = await new_cue(env.api, key, "b", labels={"team": "growth"})
        await new_cue(env.api, key, "c")
        queries = ["label=team:growth", "label=env", "label=team:growth&label=env:prod", "label=team:ops"]

        async def listed() -> dict[str, Any]:
            out = {}
            for q in queries:
                res = await env.api.request("GET", f"/v1/cues?{q}", key)
                assert res.status_code == 200, res.text
                out[q] = res.json()
            return out

        before = await listed()
        everything = (await env.api.request("GET", "/v1/cues", key)).json()["cues"]
        in_order = [c["id"] for c in everything if c["id"] in (a["id"], b["id"])]  # frozen clock: ties
        assert [c["id"] for c in before["label=team:growth"]["cues"]] == in_order
        await env.snap.snapshot()
        await wipe_redis(env.rt)
        await _restore(env)
        assert await listed() == before
        got = (await env.api.request("GET", f"/v1/cues/{a['id']}", key)).json()
        assert got["labels"] == {"team": "growth", "env": "prod"}
        # the restored index is maintained as before
        res = await env.api.request("PATCH", f"/v1/cues/{a['id']}", key, json={"labels": {"team": "ops"}})
        assert res.status_code == 200, res.text
        res = await env.api.request("GET", "/v1/cues?label=team:growth", key)
        assert [c["id"] for c in res.json()["cues"]] == [b["id"]]
        res = await env.api.request("POST", "/v1/cues/pause", key, json={"labels": {"team": "ops"}})
        assert res.json() == {"matched": 1, "changed": 1, "ids": [a["id"]]}


async def test_task_cap_permits_are_rebuilt_from_the_restored_claims(settings: Settings) -> None:
    """Per-task claim cap permits are not snapshotted: a restore writes one for each execution it
    restores as claimed (task capped, scored by the claim's lease), so the cap still holds — the
    next claim finds it full instead of passing it."""
    async with snap_env(settings) as env:
        key = await env.api.register()
        res = await env.api.request("PUT", "/v1/worker/task-caps/job", key, json={"max_concurrency": 1})
        assert res.status_code == 200, res.text
        cue = await new_cue(env.api, key, "job", schedule={"type": "recurring", "cron": "0 0 1 1 *"})
        ids = await fire(env.api, key, cue["id"], 2)
        res = await env.api.request("POST", "/v1/worker/claim", key, json={"worker_id": "w1", "max": 5})
        (held,) = [e["execution_id"] for e in res.json()["executions"]]  # one of the two (same time)
        (rest,) = set(ids) - {held}
        await env.snap.snapshot()
        await wipe_redis(env.rt)
        await _restore(env)
        res = await env.api.request("GET", "/v1/worker/task-caps/job", key)
        assert res.json() == {"task": "job", "max_concurrency": 1, "held": 1}
        res = await env.api.request("POST", "/v1/worker/claim", key, json={"worker_id": "w2", "max": 5})
        assert res.status_code == 200 and res.json()["executions"] == []  # the cap holds
        res = await env.api.request(
            "POST",
            "/v1/worker/outcomes",
            key,
            json={"worker_id": "w1", "outcomes": [{"execution_id": held, "success": True}]},
        )
        assert res.status_code == 200, res.text
        res = await env.api.request("POST", "/v1/worker/claim", key, json={"worker_id": "w2", "max": 5})
        assert [e["execution_id"] for e in res.json()["executions"]] == [rest]
