"""One-time cues end where their scheduled execution ends (CONTRACT.md §7.2): every terminal end
of that execution — delivery, an outcome through either door, a response-body outcome, an
outcome deadline, a lease or a claim window running out — decides the cue, and nothing else
(a manual fire) does."""

from __future__ import annotations

from typing import Any

import pytest

from cuefast.config import Settings
from tests.api.worker_helpers import Env as WorkerEnv
from tests.api.worker_helpers import wenv  # noqa: F401  (fixture)
from tests.test_dispatcher import Env as DispatchEnv
from tests.test_dispatcher import drain, env, only_execution, webhook_cue  # noqa: F401  (fixture)
from tests.test_scheduler import executions


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


AT = "2026-11-23T11:45:00Z"  # the worker env's T0 is 2026-11-23T11:42:02Z


async def _fired_worker_once(wenv: WorkerEnv, key: str, **over: Any) -> tuple[dict[str, Any], str]:
    """A one-time worker cue whose scheduled execution exists: (cue, execution id)."""
    cue = await wenv.cue(key, "once", schedule={"type": "once", "at": AT}, **over)
    await wenv.tick(180)
    (item,) = await executions(wenv.api, key, cue["id"])
    assert item["triggered_by"] == "scheduled" and item["status"] == "pending"
    return cue, str(item["id"])


async def _cue(api: Any, key: str, cue_id: str) -> dict[str, Any]:
    res = await api.request("GET", f"/v1/cues/{cue_id}", key)
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    return out


@pytest.mark.parametrize(("success", "final"), [(True, "completed"), (False, "failed")])
async def test_outcome_decides_a_one_time_worker_cue(wenv: WorkerEnv, success: bool, final: str) -> None:
    key = await wenv.api.register()
    cue, eid = await _fired_worker_once(wenv, key)
    assert (await wenv.claim(key, eid)).status_code == 200
    body: dict[str, Any] = {"success": success} if success else {"success": False, "error": "boom"}
    res = await wenv.post(key, f"/v1/executions/{eid}/outcome", body)
    assert res.status_code == 200, res.text
    got = await _cue(wenv.api, key, cue["id"])
    assert got["status"] == final and got["next_run"] is None and got["run_count"] == 1
    listed = (await wenv.api.request("GET", f"/v1/cues?status={final}", key)).json()
    assert [c["id"] for c in listed["cues"]] == [cue["id"]]
    active = (await wenv.api.request("GET", "/v1/cues?status=active", key)).json()
    assert active["cues"] == []


@pytest.mark.parametrize(("success", "final"), [(True, "completed"), (False, "failed")])
async def test_batch_outcome_decides_a_one_time_worker_cue(
    wenv: WorkerEnv, success: bool, final: str
) -> None:
    key = await wenv.api.register()
    cue, eid = await _fired_worker_once(wenv, key)
    res = await wenv.post(key, "/v1/worker/claim", {"worker_id": "bw", "max": 5})
    assert res.status_code == 200 and [e["execution_id"] for e in res.json()["executions"]] == [eid], res.text
    item: dict[str, Any] = {"execution_id": eid, "success": success}
    if not success:
        item["error"] = "boom"
    res = await wenv.post(key, "/v1/worker/outcomes", {"worker_id": "bw", "outcomes": [item]})
    assert res.status_code == 200 and res.json()["results"][0]["outcome_recorded"] is True, res.text
    assert (await _cue(wenv.api, key, cue["id"]))["status"] == final


async def test_outcome_of_an_unclaimed_scheduled_execution_decides_too(wenv: WorkerEnv) -> None:
    key = await wenv.api.register()
    cue, eid = await _fired_worker_once(wenv, key)
    res = await wenv.post(key, f"/v1/executions/{eid}/outcome", {"success": True})
    assert res.status_code == 200, res.text
    assert (await _cue(wenv.api, key, cue["id"]))["status"] == "completed"


async def test_outcome_deadline_fails_a_one_time_worker_cue(wenv: WorkerEnv) -> None:
    key = await wenv.api.register()
    cue, eid = await _fired_worker_once(wenv, key, delivery={"outcome_deadline_seconds": 60})
    assert (await wenv.claim(key, eid)).status_code == 200
    await wenv.tick(61)
    assert (await wenv.get(key, eid))["status"] == "outcome_timeout"
    assert (await _cue(wenv.api, key, cue["id"]))["status"] == "failed"


async def test_lease_exhausted_fails_a_one_time_worker_cue(wenv: WorkerEnv) -> None:
    key = await wenv.api.register()
    cue, eid = await _fired_worker_once(wenv, key, retry={"max_attempts": 1})
    assert (await wenv.claim(key, eid)).status_code == 200
    await wenv.tick(901)  # the worker never heartbeats: its lease runs out, no attempt is left
    assert (await wenv.get(key, eid))["status"] == "failed"
    assert (await _cue(wenv.api, key, cue["id"]))["status"] == "failed"


async def test_unclaimed_scheduled_execution_fails_a_one_time_worker_cue(wenv: WorkerEnv) -> None:
    key = await wenv.api.register()
    cue, eid = await _fired_worker_once(wenv, key)
    await wenv.tick(901)
    assert (await wenv.get(key, eid))["status"] == "missed"
    assert (await _cue(wenv.api, key, cue["id"]))["status"] == "failed"


async def test_a_manual_fire_does_not_decide_a_one_time_cue(wenv: WorkerEnv) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, "once", schedule={"type": "once", "at": AT})
    manual = await wenv.fire(key, cue["id"])
    res = await wenv.post(key, f"/v1/executions/{manual}/outcome", {"success": True})
    assert res.status_code == 200, res.text
    got = await _cue(wenv.api, key, cue["id"])
    assert got["status"] == "active" and got["next_run"] == AT


@pytest.mark.parametrize(("success", "final"), [(True, "completed"), (False, "failed")])
async def test_outcome_decides_a_one_time_webhook_cue_with_a_deadline(
    env: DispatchEnv,
    success: bool,
    final: str,
) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    at = "2031-01-06T09:00:00Z"
    cue = await webhook_cue(
        api,
        key,
        receiver.url,
        name="once",
        schedule={"type": "once", "at": at},
        delivery={"outcome_deadline_seconds": 120},
    )
    clock.advance(30)
    await sched.tick()
    assert await drain(dispatcher) == ["pending_outcome"]
    e = await only_execution(api, key, cue["id"])
    assert (await _cue(api, key, cue["id"]))["status"] == "active"
    res = await api.request("POST", f"/v1/executions/{e['id']}/outcome", key, json={"success": success})
    assert res.status_code == 200, res.text
    assert (await _cue(api, key, cue["id"]))["status"] == final
    clock.advance(3600)  # the deadline was disarmed: nothing changes any more
    await sched.tick()
    assert (await _cue(api, key, cue["id"]))["status"] == final


async def test_response_body_outcome_decides_a_one_time_webhook_cue(env: DispatchEnv) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    receiver.mode = "outcome"  # answers {"success": false, ...}
    cue = await webhook_cue(
        api,
        key,
        receiver.url,
        name="once",
        schedule={"type": "once", "at": "2031-01-06T09:00:00Z"},
        delivery={"outcome_deadline_seconds": 120},
    )
    clock.advance(30)
    await sched.tick()
    assert await drain(dispatcher) == ["failed"]  # the body's outcome, recorded with the delivery
    assert (await only_execution(api, key, cue["id"]))["status"] == "failed"
    assert (await _cue(api, key, cue["id"]))["status"] == "failed"
