"""Leases and unclaimed work (CONTRACT.md §9.5, checklist 45–46), driven by the scheduler's
worker steps with a frozen clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from cuefast.config import Settings
from tests.api.worker_helpers import Env, make_env, wenv  # noqa: F401  (fixture)
from tests.conftest import assert_error
from tests.test_dispatcher import Receiver


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def registry_beat(env: Env, key: str, worker: str) -> None:
    res = await env.post(key, "/v1/worker/heartbeat", {"worker_id": worker, "handlers": ["t"]})
    assert res.status_code == 200, res.text


async def test_execution_heartbeats_keep_a_long_handler(wenv: Env) -> None:
    key = await wenv.api.register()
    eid = await wenv.fire(key, (await wenv.cue(key))["id"])
    await wenv.claim(key, eid)
    for _ in range(4):  # 3,200 s of work, no registry heartbeat, one execution heartbeat per 800 s
        await wenv.tick(800)
        assert (await wenv.post(key, f"/v1/executions/{eid}/heartbeat", {})).status_code == 200
    await wenv.tick(800)
    got = await wenv.get(key, eid)
    assert got["status"] == "delivering" and got["claimed_by_worker"] == "w1" and got["attempts"] == 1


async def test_registry_heartbeats_renew_expired_leases(wenv: Env) -> None:  # checklist 45
    key = await wenv.api.register()
    eid = await wenv.fire(key, (await wenv.cue(key))["id"])
    await registry_beat(wenv, key, "w1")
    await wenv.claim(key, eid)
    first_lease = (await wenv.get(key, eid))["lease_expires_at"]
    for _ in range(40):  # 2,400 s, the worker daemon beats every 60 s, never an execution heartbeat
        await wenv.tick(60)
        await registry_beat(wenv, key, "w1")
    got = await wenv.get(key, eid)
    assert got["status"] == "delivering" and got["attempts"] == 1
    assert got["lease_expires_at"] > first_lease


async def test_renewal_stops_at_the_ceiling(settings: Settings) -> None:
    async with make_env(settings.replace(worker_max_claim_seconds=2000)) as env:
        key = await env.api.register()
        eid = await env.fire(key, (await env.cue(key))["id"])
        await registry_beat(env, key, "w1")
        await env.claim(key, eid)
        statuses: dict[int, str] = {}
        for minute in range(1, 48):  # the worker stays alive throughout
            await env.tick(60)
            await registry_beat(env, key, "w1")
            statuses[minute * 60] = (await env.get(key, eid))["status"]
        # renewed at 900 s and 1,800 s (inside the 2,000 s ceiling); the lease ending at 2,700 s is not
        assert {t for t, st in statuses.items() if st == "delivering"} == set(range(60, 2700, 60))
        assert statuses[2700] == "retry_ready"


async def test_dead_worker_lease_reoffers_then_another_claims(wenv: Env) -> None:  # checklist 46
    key = await wenv.api.register()
    eid = await wenv.fire(key, (await wenv.cue(key))["id"])
    await wenv.claim(key, eid, "w1")
    await wenv.tick(899)
    assert (await wenv.get(key, eid))["status"] == "delivering"
    assert_error(await wenv.claim(key, eid, "w2"), 409, "claim_failed")  # lease still held
    await wenv.tick(2)
    got = await wenv.get(key, eid)
    assert got["status"] == "retry_ready" and got["attempts"] == 1
    assert got["error_message"] == "Worker lease expired; execution re-offered"
    assert got["claimed_by_worker"] is None and got["lease_expires_at"] is None and got["claimed_at"] is None
    (item,) = await wenv.claimable(key)
    assert item["execution_id"] == eid and item["attempt"] == 1
    assert (await wenv.claim(key, eid, "w2")).status_code == 200
    got = await wenv.get(key, eid)
    assert got["status"] == "delivering" and got["claimed_by_worker"] == "w2" and got["attempts"] == 2
    # a late outcome from the previous holder is still accepted (§8.5)
    res = await wenv.post(key, f"/v1/executions/{eid}/outcome", {"success": True})
    assert res.status_code == 200
    assert (await wenv.get(key, eid))["status"] == "success"
    await wenv.tick(1000)  # nothing left to reap
    assert (await wenv.get(key, eid))["status"] == "success"


async def test_deleted_worker_is_not_alive(wenv: Env) -> None:
    key = await wenv.api.register()
    eid = await wenv.fire(key, (await wenv.cue(key))["id"])
    await registry_beat(wenv, key, "w1")
    await wenv.claim(key, eid, "w1")
    assert (await wenv.api.request("DELETE", "/v1/workers/w1", key)).status_code == 204
    await wenv.tick(100)
    await wenv.tick(801)
    assert (await wenv.get(key, eid))["status"] == "retry_ready"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        assert r.runner is not None
        await r.runner.cleanup()


async def test_attempts_exhausted_fails_with_on_failure(wenv: Env, receiver: Receiver) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(
        key,
        retry={"max_attempts": 2},
        on_failure={"webhook": receiver.url, "pause": True, "email": False},
    )
    eid = await wenv.fire(key, cue["id"])
    for worker in ("w1", "w2"):
        assert (await wenv.claim(key, eid, worker)).status_code == 200
        await wenv.tick(901)
    got = await wenv.get(key, eid)
    assert got["status"] == "failed" and got["attempts"] == 2
    assert got["error_message"] == "Worker lease expired; max attempts exhausted"
    assert await wenv.claimable(key) == []
    (notice,) = receiver.requests
    body = json.loads(notice["body"])
    assert body["event"] == "cue.failed" and body["execution_id"] == eid and body["attempts"] == 2
    assert (
        body["last_error"] == "Worker lease expired; max attempts exhausted"
        and body["last_http_status"] is None
    )
    assert notice["headers"]["X-CueAPI-Signature"].startswith("v1=")
    detail = (await wenv.api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["status"] == "paused" and detail["next_run"] is None
    usage = (await wenv.api.request("GET", "/v1/usage", key)).json()
    assert usage["outcomes"]["failed"] == 1  # a final lease failure without an outcome counts


async def test_unclaimed_becomes_missed(wenv: Env, receiver: Receiver) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, on_failure={"webhook": receiver.url, "email": False})
    eid = await wenv.fire(key, cue["id"])
    await wenv.tick(899)
    assert (await wenv.get(key, eid))["status"] == "pending"
    await wenv.tick(2)
    got = await wenv.get(key, eid)
    assert got["status"] == "missed"
    assert got["error_message"] == "No worker claimed this execution within timeout window"
    assert await wenv.claimable(key) == []
    assert_error(await wenv.claim(key, eid), 409, "claim_failed")
    assert json.loads(receiver.requests[0]["body"])["execution_id"] == eid
    usage = (await wenv.api.request("GET", "/v1/usage", key)).json()
    assert usage["outcomes"] == {"reported": 0, "succeeded": 0, "failed": 1}  # a missed execution counts


async def test_missed_is_measured_from_the_re_offer(wenv: Env) -> None:
    key = await wenv.api.register()
    eid = await wenv.fire(key, (await wenv.cue(key))["id"])
    await wenv.tick(800)
    await wenv.claim(key, eid)
    await wenv.tick(901)  # lease expired at 1,700 s → re-offered now
    assert (await wenv.get(key, eid))["status"] == "retry_ready"
    await wenv.tick(800)
    assert (await wenv.get(key, eid))["status"] == "retry_ready"
    await wenv.tick(101)
    assert (await wenv.get(key, eid))["status"] == "missed"


async def test_one_time_worker_cue_missed_fails_the_cue(wenv: Env) -> None:
    key = await wenv.api.register()
    at = "2026-11-23T11:45:00Z"  # T0 is 2026-11-23T11:42:02Z
    cue = await wenv.cue(key, "once", schedule={"type": "once", "at": at})
    await wenv.tick(180)
    (item,) = await wenv.claimable(key)
    assert item["cue_id"] == cue["id"] and item["task"] == "t"
    await wenv.tick(901)
    detail = (await wenv.api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["status"] == "failed"


async def test_scheduled_worker_executions_are_claimable(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(
        key, "minutely", {"task": "m", "agent": "bot"}, schedule={"type": "recurring", "cron": "* * * * *"}
    )
    await wenv.tick(60)
    items = await wenv.claimable(key, "?task=m&agent=bot")
    assert [i["cue_id"] for i in items] == [cue["id"]]
    res = await wenv.post(key, "/v1/executions/claim", {"worker_id": "w", "task": "m", "agent": "bot"})
    assert res.status_code == 200


async def test_scheduler_wakes_for_lease_expiry_and_missed_timeout(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    first = await wenv.fire(key, cue["id"])
    await wenv.claim(key, first)  # lease ends at 900 s
    wenv.clock.advance(100)
    await wenv.fire(key, cue["id"])  # never claimed: missed at 1,000 s
    window = wenv.sched.unclaimed_window_us
    assert (await wenv.rt.store.schedule.due_work(wenv.clock.now_us(), window)).wait_us == 800 * 1_000_000
    await wenv.tick(801)  # lease reaped at 901 s (re-offered); next: the other's missed timeout
    assert (await wenv.get(key, first))["status"] == "retry_ready"
    assert (await wenv.rt.store.schedule.due_work(wenv.clock.now_us(), window)).wait_us == 99 * 1_000_000


async def test_first_claim_counts_one_monthly_execution(wenv: Env) -> None:
    key = await wenv.api.register()
    eid = await wenv.fire(key, (await wenv.cue(key))["id"])
    await wenv.claim(key, eid)
    await wenv.tick(901)  # re-offered
    await wenv.claim(key, eid, "w2")
    me = (await wenv.api.request("GET", "/v1/auth/me", key)).json()
    assert me["executions_this_month"] == 1
