"""cuefast's batch pull API (/v1/worker/claim|outcomes|leases|release) and the worker registry."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cuefast.config import Settings
from tests.api.worker_helpers import Env, make_env, wenv  # noqa: F401  (fixture)
from tests.conftest import assert_error


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def batch_claim(env: Env, key: str, **body: Any) -> dict[str, Any]:
    body.setdefault("worker_id", "bw")
    res = await env.post(key, "/v1/worker/claim", body)
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    return out


async def test_batch_claim_shapes_filters_and_lease(wenv: Env) -> None:
    key = await wenv.api.register()
    a = await wenv.cue(key, "a", {"task": "a"})
    b = await wenv.cue(key, "b", {"task": "b", "agent": "x"})
    ids_a = [await wenv.fire(key, a["id"]) for _ in range(5)]
    wenv.clock.advance(1)
    ids_b = [await wenv.fire(key, b["id"]) for _ in range(3)]
    out = await batch_claim(wenv, key, tasks=["b"], max=2, lease_seconds=60)
    assert out["lease_seconds"] == 60 and len(out["executions"]) == 2
    item = out["executions"][0]
    assert set(item) == {
        "execution_id",
        "cue_id",
        "cue_name",
        "task",
        "scheduled_for",
        "payload",
        "attempt",
        "lease_expires_at",
    }
    assert item["task"] == "b" and item["cue_name"] == "b" and item["attempt"] == 1
    assert item["payload"] == {"task": "b", "agent": "x"} and {
        i["execution_id"] for i in out["executions"]
    } < set(ids_b)
    got = await wenv.get(key, item["execution_id"])
    assert got["status"] == "delivering" and got["claimed_by_worker"] == "bw"
    assert got["lease_expires_at"] == item["lease_expires_at"]
    out = await batch_claim(wenv, key, agent="x")
    assert len(out["executions"]) == 1 and out["lease_seconds"] == 900
    out = await batch_claim(wenv, key, tasks=["a", "zzz"], max=500)
    assert {i["execution_id"] for i in out["executions"]} == set(ids_a)
    assert (await batch_claim(wenv, key))["executions"] == []
    assert (await batch_claim(wenv, key, tasks=[]))["executions"] == []
    # the 60 s lease is real: the reaper re-offers after it
    await wenv.tick(61)
    assert len(await wenv.claimable(key)) == 2


async def test_batch_claim_validation(wenv: Env) -> None:
    key = await wenv.api.register()
    for body in (
        {},
        {"worker_id": ""},
        {"worker_id": "x" * 256},
        {"worker_id": "w", "max": 0},
        {"worker_id": "w", "max": 501},
        {"worker_id": "w", "wait_seconds": 31},
        {"worker_id": "w", "wait_seconds": "soon"},
        {"worker_id": "w", "lease_seconds": 901},
        {"worker_id": "w", "tasks": "a"},
    ):
        assert_error(await wenv.post(key, "/v1/worker/claim", body), 422, "validation_error")
    assert_error(
        await wenv.api.request("POST", "/v1/worker/claim", json={"worker_id": "w"}), 401, "invalid_api_key"
    )


@pytest.mark.slow
async def test_long_poll_returns_when_work_arrives_and_empty_after_wait(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    started = time.monotonic()
    assert (await batch_claim(wenv, key, wait_seconds=0.3))["executions"] == []
    assert time.monotonic() - started >= 0.3
    waiting = asyncio.create_task(batch_claim(wenv, key, wait_seconds=20))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    started = time.monotonic()
    eid = await wenv.fire(key, cue["id"])
    out = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 5
    assert [i["execution_id"] for i in out["executions"]] == [eid]


async def test_concurrent_batch_and_single_claims_claim_each_once(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    ids = [await wenv.fire(key, cue["id"]) for _ in range(150)]
    calls = [wenv.post(key, "/v1/worker/claim", {"worker_id": f"b{i}", "max": 40}) for i in range(4)]
    calls += [wenv.post(key, "/v1/executions/claim", {"worker_id": f"s{i}"}) for i in range(10)]
    calls += [wenv.claim(key, eid, f"i{n}") for n, eid in enumerate(ids[:20])]
    results = await asyncio.gather(*calls)
    won: list[str] = []
    for res in results[:4]:
        won += [i["execution_id"] for i in res.json()["executions"]]
    for res in results[4:]:
        if res.status_code == 200:
            won.append(res.json()["execution_id"])
    assert len(won) == len(set(won)) == 150 and set(won) == set(ids)


async def test_batch_outcomes_mixed_items(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, verification={"mode": "require_external_id"})
    ids = [await wenv.fire(key, cue["id"]) for _ in range(3)]
    await batch_claim(wenv, key, max=3)
    other = await wenv.api.register()
    foreign = await wenv.fire(other, (await wenv.cue(other))["id"])
    res = await wenv.post(
        key,
        "/v1/worker/outcomes",
        {
            "worker_id": "bw",
            "outcomes": [
                {"execution_id": ids[0], "success": True, "external_id": "ext-1", "result": "r"},
                {"execution_id": ids[1], "success": False, "error": "boom"},
                {"execution_id": ids[2]},
                {"execution_id": "nope", "success": True},
                {"execution_id": foreign, "success": True},
                {"execution_id": ids[0], "success": True},
                {"success": True},
                {"execution_id": ids[2], "success": True, "metadata": {"x": "y" * 40_000}},
            ],
        },
    )
    assert res.status_code == 200, res.text
    results = res.json()["results"]
    assert [(r["outcome_recorded"], r["outcome_state"]) for r in results[:2]] == [
        (True, "verified_success"),
        (True, "reported_failure"),
    ]
    codes = [r["error"]["code"] if r["error"] else None for r in results]
    assert codes == [
        None,
        None,
        "validation_error",
        "execution_not_found",
        "execution_not_found",
        "outcome_already_recorded",
        "validation_error",
        "metadata_too_large",
    ]
    assert results[2]["error"]["message"] == "body.outcomes.2.success: Field required"
    assert (await wenv.get(key, ids[0]))["status"] == "success"
    failed = await wenv.get(key, ids[1])
    assert failed["status"] == "failed" and failed["error_message"] == "boom"
    assert (await wenv.get(key, ids[2]))["status"] == "delivering"
    for body in ({"worker_id": "w"}, {"worker_id": "w", "outcomes": []}, {"worker_id": "w", "outcomes": {}}):
        assert_error(await wenv.post(key, "/v1/worker/outcomes", body), 422, "validation_error")


async def test_extend_leases_and_lost(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key)
    ids = []
    for _ in range(3):
        ids.append(await wenv.fire(key, cue["id"]))
        wenv.clock.advance(1)  # claims take the oldest first
    await batch_claim(wenv, key, max=2, worker_id="mine")
    await wenv.claim(key, ids[2], "theirs")
    wenv.clock.advance(500)
    res = await wenv.post(key, "/v1/worker/leases", {"worker_id": "mine", "execution_ids": [*ids, "bad"]})
    assert res.status_code == 200, res.text
    body = res.json()
    assert {e["execution_id"] for e in body["extended"]} == set(ids[:2])
    assert sorted(body["lost"]) == sorted(["bad", ids[2]])
    await wenv.tick(899)  # 1,399 s after the claim; the extension holds
    assert (await wenv.get(key, ids[0]))["status"] == "delivering"
    assert (await wenv.get(key, ids[2]))["status"] == "retry_ready"
    assert_error(await wenv.post(key, "/v1/worker/leases", {"worker_id": "mine"}), 422, "validation_error")


async def test_release_gives_back_without_counting(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, delivery={"outcome_deadline_seconds": 60})
    ids = [await wenv.fire(key, cue["id"]) for _ in range(2)]
    await batch_claim(wenv, key, max=2, worker_id="mine")
    armed = await wenv.get(key, ids[0])
    assert armed["outcome_deadline_at"] is not None
    res = await wenv.post(key, "/v1/worker/release", {"worker_id": "other", "execution_ids": ids})
    assert res.json() == {"released": 0}
    res = await wenv.post(key, "/v1/worker/release", {"worker_id": "mine", "execution_ids": ids})
    assert res.json() == {"released": 2}
    got = await wenv.get(key, ids[0])
    assert got["status"] == "pending" and got["attempts"] == 0 and got["claimed_by_worker"] is None
    assert got["started_at"] is None and got["outcome_deadline_at"] is None
    assert [i["attempt"] for i in await wenv.claimable(key)] == [0, 0]
    out = await batch_claim(wenv, key, max=1)
    assert out["executions"][0]["attempt"] == 1


async def test_worker_registry(wenv: Env) -> None:
    key = await wenv.api.register()
    warn = await wenv.api.request(
        "POST",
        "/v1/cues",
        key,
        json={"name": "c", "transport": "worker", "schedule": {"type": "recurring", "cron": "0 0 * * *"}},
    )
    assert warn.json().get("warning")
    res = await wenv.post(key, "/v1/worker/heartbeat", {"worker_id": "box-1", "handlers": ["etl"]})
    assert res.status_code == 200 and res.json()["acknowledged"] is True
    assert res.json()["server_time"].endswith("Z")
    ok = await wenv.api.request(
        "POST",
        "/v1/cues",
        key,
        json={"name": "d", "transport": "worker", "schedule": {"type": "recurring", "cron": "0 0 * * *"}},
    )
    assert ok.json().get("warning") is None
    wenv.clock.advance(200)
    await wenv.post(key, "/v1/worker/heartbeat", {"worker_id": "box-2"})
    wenv.clock.advance(10)
    workers = (await wenv.api.request("GET", "/v1/workers", key)).json()["workers"]
    assert [(w["worker_id"], w["heartbeat_status"], w["seconds_since_heartbeat"]) for w in workers] == [
        ("box-2", "active", 10),
        ("box-1", "stale", 210),
    ]
    assert workers[1]["handlers"] == ["etl"] and workers[1]["registered_since"].endswith("Z")
    assert workers[0]["handlers"] == []
    wenv.clock.advance(900)
    statuses = [
        w["heartbeat_status"] for w in (await wenv.api.request("GET", "/v1/workers", key)).json()["workers"]
    ]
    assert statuses == ["dead", "dead"]
    assert (await wenv.api.request("DELETE", "/v1/workers/box-1", key)).status_code == 204
    assert_error(
        await wenv.api.request("DELETE", "/v1/workers/box-1", key),
        404,
        "worker_not_found",
        "Worker not found",
    )
    other = await wenv.api.register()
    assert (await wenv.api.request("GET", "/v1/workers", other)).json() == {"workers": []}
    assert_error(await wenv.post(key, "/v1/worker/heartbeat", {}), 422, "validation_error")
    assert_error(
        await wenv.post(key, "/v1/worker/heartbeat", {"worker_id": "w", "handlers": "x"}),
        422,
        "validation_error",
    )


async def test_openapi_documents_the_batch_routes(wenv: Env) -> None:
    res = await wenv.api.request("GET", "/docs/openapi.json")
    assert res.status_code == 200
    paths = res.json()["paths"]
    for path in ("/v1/worker/claim", "/v1/worker/outcomes", "/v1/worker/leases", "/v1/worker/release"):
        assert "cuefast extension" in paths[path]["post"]["description"], path
    assert "/v1/executions/claimable" in paths and "/v1/echo/{token}" in paths


@pytest.mark.slow
async def test_two_api_processes_share_claims_and_wake_ups(settings: Settings) -> None:
    """Two runtimes (as two API processes would be) on one Redis: a long poll served by one is
    woken by work created through the other, and their batch claims never overlap."""
    async with make_env(settings) as a, make_env(settings) as b:
        key = await a.api.register()
        cue = await a.cue(key)
        waiting = asyncio.create_task(batch_claim(a, key, wait_seconds=20, worker_id="on-a"))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        eid = await b.fire(key, cue["id"])
        out = await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - started < 5
        assert [i["execution_id"] for i in out["executions"]] == [eid]
        ids = [await b.fire(key, cue["id"]) for _ in range(120)]
        results = await asyncio.gather(
            *(
                batch_claim(env, key, worker_id=f"{n}-{i}", max=25)
                for i in range(3)
                for n, env in (("a", a), ("b", b))
            )
        )
        won = [item["execution_id"] for r in results for item in r["executions"]]
        assert len(won) == len(set(won)) and set(won) <= set(ids)
        rest = await batch_claim(a, key, max=500)
        assert set(won) | {i["execution_id"] for i in rest["executions"]} == set(ids)
