"""Fire and replay (CONTRACT.md §7.10, §8.10) and the delivered payload."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cuefast.config import Settings
from cuefast.times import parse_datetime
from tests.conftest import assert_error
from tests.test_dispatcher import drain, env, only_execution, webhook_cue  # noqa: F401  (fixture)


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def fire(api: Any, key: str, cue_id: str, body: Any = None, status: int = 200) -> dict[str, Any]:
    res = (
        await api.request("POST", f"/v1/cues/{cue_id}/fire", key, json=body)
        if body is not None
        else await api.request("POST", f"/v1/cues/{cue_id}/fire", key)
    )
    assert res.status_code == status, res.text
    out: dict[str, Any] = res.json()
    return out


async def test_fire_merge_replace_and_delivery(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url, payload={"task": "a", "n": 1})
    await api.request(
        "PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"}
    )  # fires work while paused
    out = await fire(api, key, cue["id"])  # no body at all
    assert out["status"] == "pending" and out["triggered_by"] == "manual_fire" and out["cue_id"] == cue["id"]
    assert out["payload"] == {"task": "a", "n": 1} and out["scheduled_for"].endswith("+00:00")
    merged = await fire(api, key, cue["id"], {"payload_override": {"n": 2, "x": True}})
    assert merged["payload"] == {"task": "a", "n": 2, "x": True}
    replaced = await fire(
        api,
        key,
        cue["id"],
        {"payload_override": {"only": 1}, "merge_strategy": "replace", "exit_criteria": {}},
    )
    assert replaced["payload"] == {"only": 1}
    assert (await fire(api, key, cue["id"], {"merge_strategy": "replace"}))["payload"] == {
        "task": "a",
        "n": 1,
    }
    assert await drain(dispatcher) == ["success"] * 4
    delivered = {
        json.loads(r["body"])["execution_id"]: json.loads(r["body"])["payload"] for r in receiver.requests
    }
    assert delivered[merged["id"]] == {"task": "a", "n": 2, "x": True}
    assert delivered[replaced["id"]] == {"only": 1}
    detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["payload"] == {"task": "a", "n": 1} and detail["fired_count"] == 0
    got = (await api.request("GET", f"/v1/executions/{merged['id']}", key)).json()
    assert got["triggered_by"] == "manual_fire" and got["payload"] == {"task": "a", "n": 2, "x": True}


async def test_fire_validation_and_not_found(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    other = await api.register()
    cue = await webhook_cue(api, key, receiver.url)
    for body, field in (
        ({"payload_override": [1]}, "body.payload_override"),
        ({"merge_strategy": "deep"}, "body.merge_strategy"),
        ({"send_at": "soon"}, "body.send_at"),
        ({"idempotency_key": ""}, "body.idempotency_key"),
        ({"idempotency_key": "k" * 257}, "body.idempotency_key"),
    ):
        err = assert_error(
            await api.request("POST", f"/v1/cues/{cue['id']}/fire", key, json=body), 422, "validation_error"
        )
        assert err["details"][0]["field"] == field
    assert_error(
        await api.request(
            "POST", f"/v1/cues/{cue['id']}/fire", key, json={"payload_override": {"a": "\u0000"}}
        ),
        400,
        "invalid_payload",
    )
    assert_error(
        await api.request("POST", f"/v1/cues/{cue['id']}/fire", other, json={}), 404, "cue_not_found"
    )
    assert_error(await api.request("POST", "/v1/cues/cue_nope/fire", key, json={}), 404, "cue_not_found")


async def test_idempotency(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url)
    body = {"idempotency_key": "k1", "payload_override": {"n": 5}}
    first = await fire(api, key, cue["id"], body)
    again = await fire(api, key, cue["id"], body)
    assert again == first
    res = await api.request(
        "POST",
        f"/v1/cues/{cue['id']}/fire",
        key,
        json={"idempotency_key": "k1", "payload_override": {"n": 6}},
    )
    assert_error(
        res,
        409,
        "idempotency_key_conflict",
        f"Idempotency key reused with a different request. Existing execution: {first['id']}",
    )
    # concurrent duplicates create exactly one execution
    results = await asyncio.gather(
        *(
            api.request("POST", f"/v1/cues/{cue['id']}/fire", key, json={"idempotency_key": "k2"})
            for _ in range(10)
        )
    )
    assert len({r.json()["id"] for r in results}) == 1
    total = (await api.request("GET", f"/v1/executions?cue_id={cue['id']}", key)).json()["total"]
    assert total == 2


async def test_send_at_delays_delivery(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url)
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    out = await fire(
        api, key, cue["id"], {"send_at": "2031-01-06T09:30:00+01:00"}
    )  # 08:30Z: in the past → now
    assert out["scheduled_for"] == "2031-01-06T08:59:30+00:00"
    later = await fire(api, key, cue["id"], {"send_at": "2031-01-06T10:00:00Z"})
    assert later["scheduled_for"] == "2031-01-06T10:00:00+00:00"
    assert await drain(dispatcher) == ["success"]
    clock.set(parse_datetime("2031-01-06T10:00:00Z"))
    await sched.tick()
    assert await drain(dispatcher) == ["success"]
    assert (await only_execution_by_id(api, key, later["id"]))["status"] == "success"


async def only_execution_by_id(api: Any, key: str, eid: str) -> dict[str, Any]:
    out: dict[str, Any] = (await api.request("GET", f"/v1/executions/{eid}", key)).json()
    return out


async def test_replay(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url, payload={"v": 1})
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    src = await fire(api, key, cue["id"], {"payload_override": {"v": 2}})
    assert_error(
        await api.request("POST", f"/v1/executions/{src['id']}/replay", key), 409, "execution_in_flight"
    )
    await drain(dispatcher)
    res = await api.request("POST", f"/v1/executions/{src['id']}/replay", key)
    assert res.status_code == 200
    rep = res.json()
    assert (
        rep["triggered_by"] == "replay" and rep["replayed_from"] == src["id"] and rep["status"] == "pending"
    )
    await drain(dispatcher)
    assert json.loads(receiver.requests[-1]["body"])["payload"] == {"v": 2}  # the source's payload
    other = await api.register()
    assert_error(
        await api.request("POST", f"/v1/executions/{src['id']}/replay", other), 404, "execution_not_found"
    )
    assert_error(await api.request("POST", "/v1/executions/nope/replay", key), 404, "execution_not_found")


async def test_delete_removes_executions(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url)
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    fired = [await fire(api, key, cue["id"]) for _ in range(3)]
    assert (await api.request("DELETE", f"/v1/cues/{cue['id']}", key)).status_code == 204
    for f in fired:
        assert_error(await api.request("GET", f"/v1/executions/{f['id']}", key), 404, "execution_not_found")
    assert (await api.request("GET", "/v1/executions", key)).json()["total"] == 0
    assert await drain(dispatcher) == [None, None, None]  # queued entries are dropped, nothing sent
    assert receiver.requests == []
