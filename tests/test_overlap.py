"""The overlap policy per cue (issue 17) end to end: the field on the API, and the scheduler
deciding each slot under a frozen clock with real Redis, for both transports (and on the Redis
Cluster: the ``cluster`` variant of ``settings_on``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cuefast.api import create_app
from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.engine.scheduler import Scheduler
from cuefast.times import parse_datetime
from tests.api.test_dashboard import sign_in
from tests.conftest import Api, assert_error
from tests.snap_env import snap_env
from tests.test_scheduler import T0, env  # noqa: F401  (env: the scheduler tests' fixture, at T0)


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    return settings_on


Env = tuple[Api, FrozenClock, Scheduler]


async def new_cue(api: Api, key: str, name: str, transport: str = "worker", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "transport": transport,
        "schedule": {"type": "recurring", "cron": "* * * * *"},
        "payload": {"task": name},
        **over,
    }
    if transport == "webhook":
        body["callback"] = {"url": "http://127.0.0.1:9/hook"}  # never called: no dispatcher
    res = await api.request("POST", "/v1/cues", key, json=body)
    assert res.status_code == 201, res.text
    out: dict[str, Any] = res.json()
    return out


async def listing(api: Api, key: str, query: str) -> dict[str, Any]:
    res = await api.request("GET", f"/v1/executions?{query}&limit=100", key)
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    return out


async def statuses(api: Api, key: str, cue_id: str) -> dict[str, str]:
    """scheduled_for → status of the cue's executions"""
    rows = (await listing(api, key, f"cue_id={cue_id}"))["executions"]
    return {e["scheduled_for"]: e["status"] for e in rows}


async def tick_at(clock: FrozenClock, sched: Scheduler, at: str) -> int:
    clock.set(parse_datetime(at))
    return await sched.tick()


# ---- the field ------------------------------------------------------------------------------------
async def test_overlap_defaults_to_allow_and_round_trips(env: Env) -> None:
    api, _, _ = env
    key = await api.register()
    plain = await new_cue(api, key, "plain")
    assert plain["overlap"] == "allow"
    cue = await new_cue(api, key, "skipper", overlap="skip")
    assert cue["overlap"] == "skip"
    got = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert got["overlap"] == "skip"
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"overlap": "allow"})
    assert res.status_code == 200 and res.json()["overlap"] == "allow"
    res = await api.request("PATCH", f"/v1/cues/{plain['id']}", key, json={"description": "x"})
    assert res.json()["overlap"] == "allow"  # untouched by a PATCH that does not send it


@pytest.mark.parametrize("bad", ["never", 1, True, ""])
async def test_overlap_rejects_unknown_values(env: Env, bad: Any) -> None:
    api, _, _ = env
    key = await api.register()
    body = {"name": "c", "transport": "worker", "schedule": {"type": "recurring", "cron": "* * * * *"}}
    res = await api.request("POST", "/v1/cues", key, json={**body, "overlap": bad})
    assert_error(res, 422, "validation_error")
    assert "body.overlap" in res.text
    cue = await new_cue(api, key, "ok")
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"overlap": bad})
    assert_error(res, 422, "validation_error")


# ---- skip -----------------------------------------------------------------------------------------
async def test_skip_worker_records_skipped_slots_until_the_outcome(env: Env) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "w", overlap="skip")
    assert await tick_at(clock, sched, "2031-01-06T09:00:00.1Z") == 1
    first = (await listing(api, key, f"cue_id={cue['id']}"))["executions"][0]
    res = await api.request("POST", f"/v1/executions/{first['id']}/claim", key, json={"worker_id": "w1"})
    assert res.status_code == 200, res.text
    await tick_at(clock, sched, "2031-01-06T09:01:00.1Z")
    await tick_at(clock, sched, "2031-01-06T09:02:00.1Z")
    assert await statuses(api, key, cue["id"]) == {
        "2031-01-06T09:00:00Z": "delivering",
        "2031-01-06T09:01:00Z": "skipped",
        "2031-01-06T09:02:00Z": "skipped",
    }
    skipped = await listing(api, key, f"cue_id={cue['id']}&status=skipped")
    assert skipped["total"] == 2
    e = skipped["executions"][0]
    assert e["attempts"] == 0 and e["started_at"] is None and e["claimed_by_worker"] is None
    assert e["error_message"] == "Skipped: the previous execution was still running (overlap: skip)"
    claimable = (await api.request("GET", "/v1/executions/claimable", key)).json()
    assert claimable["executions"] == []  # a skipped slot is never offered
    res = await api.request("POST", f"/v1/executions/{first['id']}/outcome", key, json={"success": True})
    assert res.status_code == 200, res.text
    await tick_at(clock, sched, "2031-01-06T09:03:00.1Z")
    assert (await statuses(api, key, cue["id"]))["2031-01-06T09:03:00Z"] == "pending"
    usage = (await api.request("GET", "/v1/usage", key)).json()
    assert usage["executions"]["used"] == 1  # the one claim; skipped slots are not billed
    assert usage["outcomes"]["failed"] == 0
    detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["execution_total"] == 4  # the skipped slots are in the cue's history
    assert detail["fired_count"] == 4


async def test_skip_webhook_counts_an_undelivered_execution_as_running(env: Env) -> None:
    """No dispatcher runs: the webhook execution stays pending (queued, not final), so the next
    slots are skipped and never queued."""
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "h", transport="webhook", overlap="skip")
    await tick_at(clock, sched, "2031-01-06T09:00:00.1Z")
    await tick_at(clock, sched, "2031-01-06T09:01:00.1Z")
    assert await statuses(api, key, cue["id"]) == {
        "2031-01-06T09:00:00Z": "pending",
        "2031-01-06T09:01:00Z": "skipped",
    }
    p = api.rt.keys.cue_partition(cue["id"])
    assert await api.rt.store.redis.xlen(api.rt.keys.outbox(p)) == 1


@pytest.mark.parametrize("transport", ["webhook", "worker"])
async def test_skip_catch_up_all_runs_the_first_missed_slot_only(env: Env, transport: str) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c", transport=transport, overlap="skip", catch_up="all")
    await tick_at(clock, sched, "2031-01-06T09:03:30Z")  # down across 09:00 … 09:03
    got = await statuses(api, key, cue["id"])
    assert got == {
        "2031-01-06T09:00:00Z": "pending",
        "2031-01-06T09:01:00Z": "skipped",
        "2031-01-06T09:02:00Z": "skipped",
        "2031-01-06T09:03:00Z": "skipped",
    }
    counted = await listing(api, key, "status__in=skipped,pending")
    assert counted["total"] == 4


@pytest.mark.parametrize("transport", ["webhook", "worker"])
async def test_allow_runs_every_slot_as_today(env: Env, transport: str) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "a", transport=transport)
    await tick_at(clock, sched, "2031-01-06T09:00:00.1Z")
    await tick_at(clock, sched, "2031-01-06T09:01:00.1Z")
    assert set((await statuses(api, key, cue["id"])).values()) == {"pending"}
    h = await api.rt.store.redis.hgetall(api.rt.keys.cue(cue["id"]))
    assert "ov" not in h and "rx" not in h  # nothing new stored for a cue without a policy


# ---- cancel_previous ------------------------------------------------------------------------------
async def test_cancel_previous_worker_the_holder_learns_it_and_a_late_outcome_is_stored(env: Env) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "w", overlap="cancel_previous")
    await tick_at(clock, sched, "2031-01-06T09:00:00.1Z")
    first = (await listing(api, key, f"cue_id={cue['id']}"))["executions"][0]
    res = await api.request("POST", f"/v1/executions/{first['id']}/claim", key, json={"worker_id": "w1"})
    assert res.status_code == 200, res.text
    await tick_at(clock, sched, "2031-01-06T09:01:00.1Z")
    got = await statuses(api, key, cue["id"])
    assert got == {"2031-01-06T09:00:00Z": "cancelled", "2031-01-06T09:01:00Z": "pending"}
    res = await api.request("POST", f"/v1/executions/{first['id']}/heartbeat", key, json={})
    assert_error(res, 409, "execution_cancelled")
    res = await api.request(
        "POST", "/v1/worker/leases", key, json={"worker_id": "w1", "execution_ids": [first["id"]]}
    )
    assert res.status_code == 200, res.text
    assert res.json() == {"extended": [], "lost": [], "cancelled": [first["id"]]}
    res = await api.request("POST", f"/v1/executions/{first['id']}/outcome", key, json={"success": True})
    assert res.status_code == 200, res.text  # stored as late: the status stays cancelled
    e = (await api.request("GET", f"/v1/executions/{first['id']}", key)).json()
    assert e["status"] == "cancelled" and e["outcome"]["success"] is True
    assert e["error_message"] == "Cancelled: a later slot came due (overlap: cancel_previous)"
    cancelled = await listing(api, key, "status=cancelled")
    assert cancelled["total"] == 1
    usage = (await api.request("GET", "/v1/usage", key)).json()
    assert usage["outcomes"]["failed"] == 0  # superseded, not failed


async def test_cancel_previous_webhook_cancels_an_undelivered_execution(env: Env) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "h", transport="webhook", overlap="cancel_previous")
    await tick_at(clock, sched, "2031-01-06T09:00:00.1Z")
    await tick_at(clock, sched, "2031-01-06T09:01:00.1Z")
    assert await statuses(api, key, cue["id"]) == {
        "2031-01-06T09:00:00Z": "cancelled",
        "2031-01-06T09:01:00Z": "pending",
    }


@pytest.mark.parametrize("transport", ["webhook", "worker"])
async def test_cancel_previous_catch_up_runs_the_last_missed_slot(env: Env, transport: str) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c", transport=transport, overlap="cancel_previous", catch_up="all")
    await tick_at(clock, sched, "2031-01-06T09:02:30Z")
    assert await statuses(api, key, cue["id"]) == {
        "2031-01-06T09:00:00Z": "cancelled",
        "2031-01-06T09:01:00Z": "cancelled",
        "2031-01-06T09:02:00Z": "pending",
    }


# ---- buffer_one -----------------------------------------------------------------------------------
async def test_buffer_one_worker_releases_the_waiting_slot_when_the_running_one_ends(env: Env) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "w", overlap="buffer_one")
    await tick_at(clock, sched, "2031-01-06T09:00:00.1Z")
    first = (await listing(api, key, f"cue_id={cue['id']}"))["executions"][0]
    res = await api.request("POST", f"/v1/executions/{first['id']}/claim", key, json={"worker_id": "w1"})
    assert res.status_code == 200, res.text
    await tick_at(clock, sched, "2031-01-06T09:01:00.1Z")
    await tick_at(clock, sched, "2031-01-06T09:02:00.1Z")
    assert await statuses(api, key, cue["id"]) == {
        "2031-01-06T09:00:00Z": "delivering",
        "2031-01-06T09:01:00Z": "pending",  # waiting, not offered
        "2031-01-06T09:02:00Z": "skipped",
    }
    claimable = (await api.request("GET", "/v1/executions/claimable", key)).json()
    assert claimable["executions"] == []
    res = await api.request("POST", f"/v1/executions/{first['id']}/outcome", key, json={"success": False})
    assert res.status_code == 200, res.text
    claimable = (await api.request("GET", "/v1/executions/claimable", key)).json()
    assert [e["scheduled_for"] for e in claimable["executions"]] == ["2031-01-06T09:01:00Z"]
    await tick_at(clock, sched, "2031-01-06T09:03:00.1Z")  # the released one now runs: this waits
    got = await statuses(api, key, cue["id"])
    assert (got["2031-01-06T09:01:00Z"], got["2031-01-06T09:03:00Z"]) == ("pending", "pending")
    claimable = (await api.request("GET", "/v1/executions/claimable", key)).json()
    assert len(claimable["executions"]) == 1  # 09:03 waits behind 09:01


@pytest.mark.parametrize("transport", ["webhook", "worker"])
async def test_buffer_one_catch_up_runs_one_and_buffers_one(env: Env, transport: str) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c", transport=transport, overlap="buffer_one", catch_up="all")
    await tick_at(clock, sched, "2031-01-06T09:03:30Z")
    assert await statuses(api, key, cue["id"]) == {
        "2031-01-06T09:00:00Z": "pending",
        "2031-01-06T09:01:00Z": "pending",
        "2031-01-06T09:02:00Z": "skipped",
        "2031-01-06T09:03:00Z": "skipped",
    }
    if transport == "webhook":
        p = api.rt.keys.cue_partition(cue["id"])
        assert await api.rt.store.redis.xlen(api.rt.keys.outbox(p)) == 1
    else:
        claimable = (await api.request("GET", "/v1/executions/claimable", key)).json()
        assert [e["scheduled_for"] for e in claimable["executions"]] == ["2031-01-06T09:00:00Z"]


# ---- the dashboard --------------------------------------------------------------------------------
async def test_dashboard_shows_the_policy_and_the_new_statuses(env: Env) -> None:
    api, clock, sched = env
    key = await api.register()
    skip = await new_cue(api, key, "s", overlap="skip")
    cancel = await new_cue(api, key, "c", overlap="cancel_previous")
    await tick_at(clock, sched, "2031-01-06T09:00:00.1Z")
    await tick_at(clock, sched, "2031-01-06T09:01:00.1Z")
    transport = httpx.ASGITransport(app=create_app(api.rt, manage_runtime=False))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://cuefast.test") as web:
        assert (await sign_in(web, key)).status_code == 303
        page = (await web.get(f"/dashboard/cues/{skip['id']}")).text
        assert "skip — a slot due while the previous one runs is recorded as skipped" in page
        assert '<span class="badge idle">skipped</span>' in page
        page = (await web.get(f"/dashboard/cues/{cancel['id']}")).text
        assert "cancel previous — a slot due cancels the one still running" in page
        assert '<span class="badge warn">cancelled</span>' in page
        listed = (await web.get("/dashboard/executions?status=skipped")).text
        assert '<option value="cancelled">' in listed and '<option value="skipped" selected>' in listed
        assert ">1 execution<" in listed and '<span class="badge idle">skipped</span>' in listed


# ---- PostgreSQL ---------------------------------------------------------------------------------
async def test_skipped_and_cancelled_executions_are_snapshotted_and_trimmable(settings: Settings) -> None:
    async with snap_env(settings) as senv:
        api, clock, sched = senv.api, senv.clock, senv.scheduler()
        key = await api.register()
        skip = await new_cue(api, key, "s", overlap="skip")
        cancel = await new_cue(api, key, "c", overlap="cancel_previous")
        await tick_at(clock, sched, "2031-01-06T09:00:00.1Z")
        await tick_at(clock, sched, "2031-01-06T09:01:00.1Z")
        await senv.snap.snapshot()
        async with senv.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT cue_id, status FROM executions WHERE cue_id = ANY($1::text[])",
                [skip["id"], cancel["id"]],
            )
            # the partial index retention reads through covers the two final statuses
            pred = await conn.fetchval(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indexrelid::regclass::text "
                "LIKE '%executions_trim_final'"
            )
        got = sorted((r["cue_id"] == skip["id"], r["status"]) for r in rows)
        assert got == [(False, "cancelled"), (False, "pending"), (True, "pending"), (True, "skipped")]
        assert "'skipped'" in pred and "'cancelled'" in pred


async def test_cancel_previous_gives_a_cancelled_claims_task_cap_permit_back(env: Env) -> None:
    """A claim cancel_previous ends no longer counts against its task's claim cap: its permit goes
    back when the scheduler cancels it, not when its lease ends, so the slot that superseded it
    can be claimed at once under a cap of 1."""
    api, clock, sched = env
    key = await api.register()
    res = await api.request("PUT", "/v1/worker/task-caps/w", key, json={"max_concurrency": 1})
    assert res.status_code == 200, res.text
    cue = await new_cue(api, key, "w", overlap="cancel_previous")
    await tick_at(clock, sched, "2031-01-06T09:00:00.1Z")
    first = (await listing(api, key, f"cue_id={cue['id']}"))["executions"][0]
    res = await api.request("POST", f"/v1/executions/{first['id']}/claim", key, json={"worker_id": "w1"})
    assert res.status_code == 200, res.text
    held = (await api.request("GET", "/v1/worker/task-caps/w", key)).json()["held"]
    assert held == 1
    await tick_at(clock, sched, "2031-01-06T09:01:00.1Z")  # within the claim's lease
    assert (await statuses(api, key, cue["id"]))["2031-01-06T09:00:00Z"] == "cancelled"
    assert (await api.request("GET", "/v1/worker/task-caps/w", key)).json()["held"] == 0
    res = await api.request("POST", "/v1/worker/claim", key, json={"worker_id": "w2"})
    assert res.status_code == 200, res.text
    assert [e["scheduled_for"] for e in res.json()["executions"]] == ["2031-01-06T09:01:00Z"]
