"""Worker transport, CueAPI door (CONTRACT.md §9.1–§9.4, checklist 40–47) over real HTTP."""

from __future__ import annotations

import asyncio

import pytest

from cuefast.config import Settings
from tests.api.worker_helpers import Env, wenv  # noqa: F401  (fixture)
from tests.conftest import assert_error


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def test_fired_execution_is_claimable_with_override(wenv: Env) -> None:  # checklist 40
    key = await wenv.api.register()
    cue = await wenv.cue(key, "etl", {"task": "etl", "n": 1})
    eid = await wenv.fire(key, cue["id"], {"extra": "from-fire"})
    (item,) = await wenv.claimable(key)
    assert item == {
        "execution_id": eid,
        "cue_id": cue["id"],
        "cue_name": "etl",
        "task": "etl",
        "scheduled_for": item["scheduled_for"],
        "payload": {"task": "etl", "n": 1, "extra": "from-fire"},
        "attempt": 0,
    }
    assert item["scheduled_for"].endswith("Z")
    other = await wenv.api.register()
    assert await wenv.claimable(other) == []


async def test_claim_by_id_and_second_claim(wenv: Env) -> None:  # checklist 42
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    eid = await wenv.fire(key, cue["id"])
    res = await wenv.claim(key, eid)
    assert res.status_code == 200 and res.json() == {
        "claimed": True,
        "execution_id": eid,
        "lease_seconds": 900,
    }
    got = await wenv.get(key, eid)
    assert got["status"] == "delivering" and got["claimed_by_worker"] == "w1" and got["attempts"] == 1
    assert got["claimed_at"] and got["started_at"] == got["claimed_at"] == got["last_attempt_at"]
    assert got["lease_expires_at"] is not None and got["http_status"] is None
    assert_error(
        await wenv.claim(key, eid, "w2"), 409, "claim_failed", "Execution not available for claiming"
    )
    assert await wenv.claimable(key) == []
    assert_error(await wenv.claim(key, "not-a-uuid"), 404, "execution_not_found")
    other = await wenv.api.register()
    assert_error(await wenv.claim(other, eid), 404, "execution_not_found")
    assert_error(await wenv.post(key, f"/v1/executions/{eid}/claim", {}), 422, "validation_error")


async def test_claim_next_oldest_first_and_filters(wenv: Env) -> None:  # checklist 43
    key = await wenv.api.register()
    a = await wenv.cue(key, "a", {"task": "a", "agent": "x"})
    b = await wenv.cue(key, "b", {"task": "b"})
    first = await wenv.fire(key, a["id"])
    wenv.clock.advance(1)
    second = await wenv.fire(key, b["id"])
    wenv.clock.advance(1)
    third = await wenv.fire(key, a["id"])
    res = await wenv.post(key, "/v1/executions/claim", {"worker_id": "w", "task": "b"})
    assert res.json()["execution_id"] == second
    res = await wenv.post(key, "/v1/executions/claim", {"worker_id": "w", "agent": "x"})
    assert res.json()["execution_id"] == first
    res = await wenv.post(key, "/v1/executions/claim", {"worker_id": "w"})
    assert res.status_code == 200 and res.json()["execution_id"] == third
    assert_error(
        await wenv.post(key, "/v1/executions/claim", {"worker_id": "w"}),
        409,
        "claim_failed",
        "No executions available for claiming",
    )
    assert_error(await wenv.post(key, "/v1/executions/claim", {}), 422, "validation_error")
    assert_error(await wenv.post(key, "/v1/executions/claim", {"worker_id": ""}), 422, "validation_error")


async def test_task_filter_before_limit(wenv: Env) -> None:  # checklist 41
    key = await wenv.api.register()
    noise = await wenv.cue(key, "noise", {"task": "other"})
    wanted = await wenv.cue(key, "wanted", {"task": "X"})
    for _ in range(60):
        await wenv.fire(key, noise["id"])
    wenv.clock.advance(1)
    target = await wenv.fire(key, wanted["id"])
    items = await wenv.claimable(key, "?task=X")
    assert [i["execution_id"] for i in items] == [target]
    assert len(await wenv.claimable(key)) == 50
    assert len(await wenv.claimable(key, "?limit=100")) == 61
    assert await wenv.claimable(key, "?task=X&agent=nobody") == []
    assert_error(
        await wenv.api.request("GET", "/v1/executions/claimable?limit=0", key), 422, "validation_error"
    )
    assert_error(
        await wenv.api.request("GET", "/v1/executions/claimable?limit=101", key), 422, "validation_error"
    )


async def test_future_send_at_is_not_claimable_yet(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    res = await wenv.post(key, f"/v1/cues/{cue['id']}/fire", {"send_at": "2026-11-23T12:00:00Z"})
    eid = res.json()["id"]
    assert await wenv.claimable(key) == []
    assert_error(await wenv.claim(key, eid), 409, "claim_failed")


async def test_heartbeat_rules(wenv: Env) -> None:  # checklist 44
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    eid = await wenv.fire(key, cue["id"])
    path = f"/v1/executions/{eid}/heartbeat"
    assert_error(
        await wenv.post(key, path, {}),
        409,
        "execution_not_claiming",
        "Execution is not currently being claimed",
    )
    await wenv.claim(key, eid)
    wenv.clock.advance(100)
    res = await wenv.api.request("POST", path, key, json={})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["acknowledged"] is True and body["execution_id"] == eid
    assert body["lease_extended_until"].endswith("+00:00")
    got = await wenv.get(key, eid)
    assert got["last_heartbeat_at"] is not None
    assert got["lease_expires_at"].replace("Z", "+00:00") == body["lease_extended_until"]
    res = await wenv.api.request("POST", path, key, headers={"X-Worker-Id": "w1"})
    assert res.status_code == 200
    assert_error(
        await wenv.api.request("POST", path, key, headers={"X-Worker-Id": "intruder"}),
        403,
        "not_execution_owner",
        "Only the claiming worker can heartbeat",
    )
    await wenv.post(key, f"/v1/executions/{eid}/outcome", {"success": True})
    assert_error(await wenv.post(key, path, {}), 409, "execution_not_claiming")
    assert_error(await wenv.post(key, "/v1/executions/nope/heartbeat", {}), 404, "execution_not_found")


async def test_worker_outcomes_finish(wenv: Env) -> None:  # checklist 47
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    ids = [await wenv.fire(key, cue["id"]) for _ in range(3)]
    await wenv.claim(key, ids[0])
    await wenv.claim(key, ids[1])
    res = await wenv.post(key, f"/v1/executions/{ids[0]}/outcome", {"success": True, "result": "r" * 4096})
    assert res.status_code == 200 and res.json()["outcome_state"] == "reported_success"
    await wenv.post(key, f"/v1/executions/{ids[1]}/outcome", {"success": False, "error": "boom"})
    await wenv.post(key, f"/v1/executions/{ids[2]}/outcome", {"success": True})  # never claimed
    a, b, c = [await wenv.get(key, e) for e in ids]
    assert a["status"] == "success" and a["delivered_at"] and a["error_message"] is None
    assert b["status"] == "failed" and b["error_message"] == "boom" and b["outcome"]["error"] == "boom"
    assert c["status"] == "success"
    assert await wenv.claimable(key) == []
    assert_error(await wenv.claim(key, ids[2]), 409, "claim_failed")


async def test_two_workers_race_for_each_execution(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    ids = [await wenv.fire(key, cue["id"]) for _ in range(20)]
    results = await asyncio.gather(*(wenv.claim(key, eid, w) for eid in ids for w in ("a", "b")))
    codes = [r.status_code for r in results]
    assert codes.count(200) == 20 and codes.count(409) == 20
    for i in range(20):
        assert {results[2 * i].status_code, results[2 * i + 1].status_code} == {200, 409}
    # claim-next races too: 30 concurrent claims for 10 executions
    more = [await wenv.fire(key, cue["id"]) for _ in range(10)]
    results = await asyncio.gather(
        *(wenv.post(key, "/v1/executions/claim", {"worker_id": f"w{i}"}) for i in range(30))
    )
    won = [r.json()["execution_id"] for r in results if r.status_code == 200]
    assert sorted(won) == sorted(more)


async def test_executions_list_worker_filter_and_oldest_claimed_at(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    ids = []
    for _ in range(5):
        ids.append(await wenv.fire(key, cue["id"]))
        wenv.clock.advance(1)
    listing = (await wenv.api.request("GET", "/v1/executions", key)).json()
    assert listing["oldest_claimed_at"] is None and listing["total"] == 5
    await wenv.claim(key, ids[3], "w1")
    first_claim = (await wenv.get(key, ids[3]))["claimed_at"]
    wenv.clock.advance(10)
    await wenv.claim(key, ids[1], "w2")
    listing = (await wenv.api.request("GET", "/v1/executions?limit=2&offset=1", key)).json()
    assert listing["total"] == 5 and listing["has_more"] is True
    assert [e["id"] for e in listing["executions"]] == [ids[3], ids[2]]
    assert listing["oldest_claimed_at"] == first_claim.replace("Z", "+00:00")
    mine = (await wenv.api.request("GET", "/v1/executions?worker_id=w2", key)).json()
    assert [e["id"] for e in mine["executions"]] == [ids[1]]
    assert mine["oldest_claimed_at"] == (await wenv.get(key, ids[1]))["claimed_at"].replace("Z", "+00:00")
    await wenv.post(key, f"/v1/executions/{ids[3]}/outcome", {"success": True})  # claimed_at stays
    listing = (await wenv.api.request("GET", "/v1/executions", key)).json()
    assert listing["oldest_claimed_at"] == first_claim.replace("Z", "+00:00")
    other = await wenv.api.register()
    assert (await wenv.api.request("GET", "/v1/executions", other)).json()["oldest_claimed_at"] is None
