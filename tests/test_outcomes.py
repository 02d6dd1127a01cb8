"""Outcomes, evidence, verification (CONTRACT.md §8.5–§8.9)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from cuefast.config import Settings
from tests.conftest import assert_error
from tests.test_dispatcher import drain, env, webhook_cue  # noqa: F401  (fixture)
from tests.test_fire import fire


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def setup(api: Any, key: str, url: str, **over: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    cue = await webhook_cue(api, key, url, **over)
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    return cue, await fire(api, key, cue["id"])


async def report(api: Any, key: str, eid: str, body: dict[str, Any]) -> Any:
    return await api.request("POST", f"/v1/executions/{eid}/outcome", key, json=body)


async def test_outcome_is_write_once(env: Any) -> None:
    api, _, sched, dispatcher, receiver = env
    key = await api.register()
    _, ex = await setup(api, key, receiver.url)
    await drain(dispatcher)
    res = await report(
        api,
        key,
        ex["id"],
        {"success": True, "result": "r" * 4096, "metadata": {"k": "v"}, "external_id": "ch_1"},
    )
    assert res.status_code == 200
    assert res.json() == {
        "execution_id": ex["id"],
        "outcome_recorded": True,
        "outcome_state": "reported_success",
        "reason": None,
    }
    again = await report(api, key, ex["id"], {"success": False, "error": "late"})
    assert_error(
        again, 409, "outcome_already_recorded", "Outcome has already been recorded for this execution"
    )
    got = (await api.request("GET", f"/v1/executions/{ex['id']}", key)).json()
    o = got["outcome"]
    assert (
        o["success"] is True
        and o["result"] == "r" * 4096
        and o["metadata"] == {"k": "v"}
        and o["external_id"] == "ch_1"
    )
    assert set(o) == {
        "success",
        "result",
        "error",
        "metadata",
        "recorded_at",
        "external_id",
        "result_url",
        "result_ref",
        "result_type",
        "summary",
        "artifacts",
    }
    assert got["status"] == "success" and got["outcome_state"] == "reported_success"
    assert o["error"] is None and o["summary"] is None and o["artifacts"] is None
    # stored without its null members (they were ~100 bytes of every hash with an outcome)
    stored = await sched.store.executions.get(ex["id"])
    assert set(msgspec.json.decode(stored["oc"])) == {
        "success",
        "result",
        "metadata",
        "recorded_at",
        "external_id",
    }


async def test_concurrent_reports_one_wins(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    _, ex = await setup(api, key, receiver.url)
    results = await asyncio.gather(*(report(api, key, ex["id"], {"success": i % 2 == 0}) for i in range(10)))
    assert sorted(r.status_code for r in results) == [200] + [409] * 9


async def test_long_text_truncated_and_limits(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    _, ex = await setup(api, key, receiver.url)
    assert_error(
        await report(api, key, ex["id"], {"success": True, "metadata": {"x": "y" * 33000}}),
        400,
        "metadata_too_large",
        "Outcome metadata must be under 32KB",
    )
    for body, field in (
        ({}, "body.success"),
        ({"success": "maybe"}, "body.success"),
        ({"success": True, "external_id": "x" * 501}, "body.external_id"),
        ({"success": True, "result_url": "ftp://x"}, "body.result_url"),
        ({"success": True, "result_type": "x" * 101}, "body.result_type"),
        ({"success": True, "artifacts": "no"}, "body.artifacts"),
        ({"success": True, "result": 5}, "body.result"),
    ):
        err = assert_error(await report(api, key, ex["id"], body), 422, "validation_error")
        assert err["details"][0]["field"] == field
    assert (await report(api, key, ex["id"], {"success": True, "result": "z" * 20000})).status_code == 200
    got = (await api.request("GET", f"/v1/executions/{ex['id']}", key)).json()
    assert len(got["outcome"]["result"]) == 16384


@pytest.mark.parametrize(
    ("mode", "body", "state"),
    [
        (None, {"success": False}, "reported_failure"),
        ("none", {"success": True}, "reported_success"),
        ("manual", {"success": True}, "verification_pending"),
        ("require_external_id", {"success": True, "external_id": "x"}, "verified_success"),
        ("require_external_id", {"success": True, "external_id": ""}, "verification_failed"),
        ("require_result_url", {"success": True, "result_url": "https://r.example/1"}, "verified_success"),
        ("require_result_url", {"success": True}, "verification_failed"),
        ("require_artifacts", {"success": True, "artifacts": [1]}, "verified_success"),
        ("require_artifacts", {"success": True, "artifacts": []}, "verification_failed"),
        ("require_artifacts", {"success": False}, "reported_failure"),
    ],
)
async def test_outcome_states(env: Any, mode: str | None, body: dict[str, Any], state: str) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    over = {} if mode is None else {"verification": {"mode": mode}}
    _, ex = await setup(api, key, receiver.url, **over)
    res = await report(api, key, ex["id"], body)
    assert res.json()["outcome_state"] == state


async def test_webhook_status_rules(env: Any) -> None:
    api, _, _, dispatcher, receiver = env
    key = await api.register()
    # armed deadline: pending_outcome → failed by a failure outcome, error copied
    _, ex = await setup(api, key, receiver.url, delivery={"outcome_deadline_seconds": 60})
    await drain(dispatcher)
    await report(api, key, ex["id"], {"success": False, "error": "bad data"})
    got = (await api.request("GET", f"/v1/executions/{ex['id']}", key)).json()
    assert (
        got["status"] == "failed"
        and got["error_message"] == "bad data"
        and got["outcome_deadline_at"] is None
    )
    # no deadline: the delivery status stays
    _, ex2 = await setup(api, key, receiver.url, name="other")
    await drain(dispatcher)
    await report(api, key, ex2["id"], {"success": False, "error": "x"})
    assert (await api.request("GET", f"/v1/executions/{ex2['id']}", key)).json()["status"] == "success"


async def test_worker_outcome_finishes_execution(env: Any) -> None:
    api, _, _, _, _ = env
    key = await api.register()
    res = await api.request(
        "POST",
        "/v1/cues",
        key,
        json={
            "name": "w",
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "0 0 * * *"},
            "payload": {"task": "t"},
        },
    )
    cue = res.json()
    ex = await fire(api, key, cue["id"])
    await report(api, key, ex["id"], {"success": False, "error": "boom"})
    got = (await api.request("GET", f"/v1/executions/{ex['id']}", key)).json()
    assert got["status"] == "failed" and got["error_message"] == "boom" and got["outcome"]["error"] == "boom"
    detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["run_count"] == 1 and detail["last_run"] is not None


async def test_evidence_verify_and_pending(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    _, ex = await setup(api, key, receiver.url, verification={"mode": "manual"})
    eid = ex["id"]
    assert_error(
        await api.request("PATCH", f"/v1/executions/{eid}/evidence", key, json={"summary": "s"}),
        409,
        "no_outcome",
        "Report outcome first before appending evidence",
    )
    assert_error(
        await api.request("POST", f"/v1/executions/{eid}/verification-pending", key),
        409,
        "no_outcome",
        "No outcome recorded yet",
    )
    assert_error(
        await api.request("POST", f"/v1/executions/{eid}/verify", key),
        409,
        "invalid_state",
        "Cannot verify from state 'None'",
    )
    await report(api, key, eid, {"success": True, "metadata": {"m": 1}, "summary": "first"})
    res = await api.request(
        "PATCH",
        f"/v1/executions/{eid}/evidence",
        key,
        json={"external_id": "ext", "summary": "", "metadata": {"e": 2}, "junk": 1},
    )
    assert res.json() == {
        "execution_id": eid,
        "outcome_state": "verification_pending",
        "evidence_updated": True,
    }
    o = (await api.request("GET", f"/v1/executions/{eid}", key)).json()["outcome"]
    assert o["external_id"] == "ext" and o["summary"] == "first" and o["metadata"] == {"m": 1}
    res = await api.request(
        "POST", f"/v1/executions/{eid}/verify", key, json={"valid": False, "reason": "invoice mismatch"}
    )
    assert res.json() == {
        "execution_id": eid,
        "outcome_state": "verification_failed",
        "valid": False,
        "reason": "invoice mismatch",
    }
    o = (await api.request("GET", f"/v1/executions/{eid}", key)).json()["outcome"]
    assert o["summary"] == "first | verification rejected: invoice mismatch"
    assert_error(
        await api.request("POST", f"/v1/executions/{eid}/verify", key),
        409,
        "invalid_state",
        "Cannot verify from state 'verification_failed'",
    )
    res = await api.request("POST", f"/v1/executions/{eid}/verification-pending", key)
    assert res.json() == {"execution_id": eid, "outcome_state": "verification_pending"}
    res = await api.request("POST", f"/v1/executions/{eid}/verify", key, json={})
    assert res.json()["outcome_state"] == "verified_success" and res.json()["valid"] is True


async def test_foreign_and_malformed_ids(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    other = await api.register()
    _, ex = await setup(api, key, receiver.url)
    for path, method in (
        ("outcome", "POST"),
        ("verify", "POST"),
        ("verification-pending", "POST"),
        ("evidence", "PATCH"),
    ):
        for eid, who in ((ex["id"], other), ("not-a-uuid", key)):
            res = await api.request(method, f"/v1/executions/{eid}/{path}", who, json={"success": True})
            assert_error(res, 404, "execution_not_found")
