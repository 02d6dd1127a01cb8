"""PATCH /v1/cues/{id} (CONTRACT.md §7.7): merge rules, pause/resume, next_run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cuefast.config import Settings
from cuefast.ids import scheduled_execution_id
from cuefast.times import parse_datetime
from tests.api.test_cues import HOOK, create, future, webhook_cue
from tests.conftest import Api, assert_error


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def patch(api: Api, key: str, cue_id: str, body: dict[str, Any]) -> dict[str, Any]:
    res = await api.request("PATCH", f"/v1/cues/{cue_id}", key, json=body)
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    assert "executions" not in out
    return out


async def test_description_only_changes_description_and_updated_at(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue(callback={"url": HOOK, "method": "PUT", "headers": {"A": "1"}}))
    out = await patch(api, key, cue["id"], {"description": "x"})
    changed = {k for k in cue if cue[k] != out[k]}
    assert changed == {"description", "updated_at"}
    assert out["updated_at"] > cue["updated_at"]


async def test_empty_patch_bumps_updated_at(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue())
    out = await patch(api, key, cue["id"], {})
    assert {k for k in cue if cue[k] != out[k]} == {"updated_at"}
    # top-level null = not provided
    out2 = await patch(
        api, key, cue["id"], {"description": None, "name": None, "payload": None, "schedule": None}
    )
    assert out2["name"] == cue["name"] and out2["payload"] == cue["payload"]


async def test_callback_merge_keeps_method_and_headers(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue(callback={"url": HOOK, "method": "PUT", "headers": {"A": "1"}}))
    out = await patch(api, key, cue["id"], {"callback": {"url": "http://127.0.0.1:9/other"}})
    assert out["callback"] == {"url": "http://127.0.0.1:9/other", "method": "PUT", "headers": {"A": "1"}}
    out = await patch(api, key, cue["id"], {"callback": {"headers": {"B": "2"}}})
    assert out["callback"] == {"url": "http://127.0.0.1:9/other", "method": "PUT", "headers": {"B": "2"}}
    res = await api.request(
        "PATCH", f"/v1/cues/{cue['id']}", key, json={"callback": {"url": "http://169.254.169.254/"}}
    )
    assert_error(res, 400, "invalid_callback_url")
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"callback": {"url": None}})
    err = assert_error(res, 422, "validation_error")
    assert err["message"] == "body: Value error, callback.url is required for webhook transport"


async def test_schedule_merge_keeps_timezone_and_recomputes_next_run(api: Api) -> None:
    key = await api.register()
    cue = await create(
        api, key, webhook_cue(schedule={"type": "recurring", "cron": "0 9 * * *", "timezone": "Asia/Tokyo"})
    )
    out = await patch(api, key, cue["id"], {"schedule": {"type": "recurring", "cron": "30 10 * * *"}})
    assert out["schedule"] == {"type": "recurring", "timezone": "Asia/Tokyo", "cron": "30 10 * * *"}
    nr = datetime.fromisoformat(out["next_run"].replace("Z", "+00:00"))
    assert (nr.hour, nr.minute) == (1, 30)  # 10:30 JST
    out = await patch(api, key, cue["id"], {"schedule": {"timezone": "UTC"}})  # timezone-only
    assert out["schedule"]["cron"] == "30 10 * * *"
    assert out["next_run"].endswith("T10:30:00Z")
    out = await patch(api, key, cue["id"], {"schedule": {"cron": "*/5 * * * *"}})  # type omitted
    assert out["schedule"]["type"] == "recurring"


async def test_schedule_type_switch(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue())
    assert_error(
        await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"schedule": {"type": "once"}}),
        400,
        "invalid_schedule",
        "Timestamp is required for one-time schedules",
    )
    at = future(30)
    out = await patch(api, key, cue["id"], {"schedule": {"type": "once", "at": at}})
    assert out["schedule"] == {"type": "once", "timezone": "UTC", "at": at}
    assert out["next_run"] == at.replace("+00:00", "Z")
    assert_error(
        await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"schedule": {"type": "recurring"}}),
        400,
        "invalid_schedule",
        "Cron expression is required for recurring schedules",
    )
    assert_error(
        await api.request(
            "PATCH", f"/v1/cues/{cue['id']}", key, json={"schedule": {"at": "2001-01-01T00:00:00Z"}}
        ),
        400,
        "invalid_schedule",
        "Scheduled time must be in the future",
    )


async def test_retry_on_failure_delivery_alerts_merge(api: Api) -> None:
    key = await api.register()
    cue = await create(
        api,
        key,
        webhook_cue(
            retry={"max_attempts": 5, "backoff_minutes": [2]}, on_failure={"webhook": "http://127.0.0.1:9/f"}
        ),
    )
    out = await patch(api, key, cue["id"], {"retry": {"max_attempts": 2}})
    assert out["retry"] == {"max_attempts": 2, "backoff_minutes": [2]}
    out = await patch(api, key, cue["id"], {"on_failure": {"pause": True}})
    assert out["on_failure"] == {"email": True, "webhook": "http://127.0.0.1:9/f", "pause": True}
    out = await patch(api, key, cue["id"], {"on_failure": {"webhook": None}})
    assert out["on_failure"] == {"email": True, "webhook": None, "pause": True}
    out = await patch(api, key, cue["id"], {"delivery": {"timeout_seconds": 9}})
    assert out["delivery"] == {"timeout_seconds": 9, "outcome_deadline_seconds": 300}
    out = await patch(api, key, cue["id"], {"delivery": {"outcome_deadline_seconds": None}})
    assert out["delivery"] == {"timeout_seconds": 9, "outcome_deadline_seconds": None}
    out = await patch(api, key, cue["id"], {"alerts": {"missed_window_multiplier": 4}})
    assert out["alerts"] == {"consecutive_failures": 3, "missed_window_multiplier": 4}
    out = await patch(api, key, cue["id"], {"verification": {"mode": "manual"}, "catch_up": "none"})
    assert out["verification"] == {"mode": "manual"} and out["catch_up"] == "none"
    out = await patch(api, key, cue["id"], {"payload": {"b": 1, "a": 2}})
    assert list(out["payload"]) == ["b", "a"]
    assert_error(
        await api.request(
            "PATCH", f"/v1/cues/{cue['id']}", key, json={"on_failure": {"webhook": "http://169.254.169.254/"}}
        ),
        400,
        "invalid_callback_url",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"transport": "worker"}, "body.transport"),
        ({"bogus": 1}, "body.bogus"),
        ({"status": "completed"}, "body.status"),
        ({"name": ""}, "body.name"),
        ({"retry": {"max_attempts": 0}}, "body.retry.max_attempts"),
        ({"payload": [1]}, "body.payload"),
    ],
)
async def test_patch_validation(api: Api, body: dict[str, Any], field: str) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue())
    err = assert_error(
        await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json=body), 422, "validation_error"
    )
    assert err["details"][0]["field"] == field


async def test_patch_status_message(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue())
    err = assert_error(
        await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "nope"}),
        422,
        "validation_error",
    )
    assert err["message"] == "body.status: Value error, status must be 'active' or 'paused'"


async def test_rename(api: Api) -> None:
    key = await api.register()
    a = await create(api, key, webhook_cue("a"))
    await create(api, key, webhook_cue("b"))
    assert_error(
        await api.request("PATCH", f"/v1/cues/{a['id']}", key, json={"name": "b"}),
        409,
        "duplicate_cue_name",
        "A cue named 'b' already exists",
    )
    out = await patch(api, key, a["id"], {"name": "a"})  # same name is fine
    assert out["name"] == "a"
    out = await patch(api, key, a["id"], {"name": "c"})
    assert out["name"] == "c"
    await create(api, key, webhook_cue("a"))  # the old name is free
    assert_error(await api.request("POST", "/v1/cues", key, json=webhook_cue("c")), 409, "duplicate_cue_name")


async def test_pause_and_resume(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue(schedule={"type": "recurring", "cron": "*/5 * * * *"}))
    out = await patch(api, key, cue["id"], {"status": "paused"})
    assert out["status"] == "paused" and out["next_run"] is None
    p = api.rt.keys.cue_partition(cue["id"])
    assert await api.rt.store.redis.zscore(api.rt.keys.due(p), cue["id"]) is None
    # a schedule change while paused keeps next_run null
    out = await patch(api, key, cue["id"], {"schedule": {"cron": "*/10 * * * *"}})
    assert out["next_run"] is None and out["status"] == "paused"
    out = await patch(api, key, cue["id"], {"status": "active"})
    assert out["status"] == "active" and out["next_run"] is not None
    nr = parse_datetime(out["next_run"])
    assert nr > api.rt.clock.now_us()
    assert datetime.fromtimestamp(nr / 1e6, UTC).minute % 10 == 0
    assert await api.rt.store.redis.zscore(api.rt.keys.due(p), cue["id"]) == nr


async def test_resume_fired_one_time_cue_needs_new_at(api: Api) -> None:
    key = await api.register()
    at = future(10)
    cue = await create(api, key, {"name": "o", "transport": "worker", "schedule": {"type": "once", "at": at}})
    await patch(api, key, cue["id"], {"status": "paused"})
    # simulate that the scheduler already made the execution for `at`
    at_us = parse_datetime(at)
    p = api.rt.keys.cue_partition(cue["id"])
    exec_id = scheduled_execution_id(cue["id"], at_us, p)
    await api.rt.store.redis.hset(api.rt.keys.execution(p, exec_id), mapping={"cue": cue["id"]})
    assert_error(
        await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "active"}),
        400,
        "invalid_schedule",
        "One-time cue has already fired; set a new schedule.at",
    )
    new_at = future(20)
    out = await patch(api, key, cue["id"], {"status": "active", "schedule": {"at": new_at}})
    assert out["status"] == "active" and out["next_run"] == new_at.replace("+00:00", "Z")


async def test_resume_unfired_one_time_cue(api: Api) -> None:
    key = await api.register()
    at = future(10)
    cue = await create(api, key, {"name": "o", "transport": "worker", "schedule": {"type": "once", "at": at}})
    await patch(api, key, cue["id"], {"status": "paused"})
    out = await patch(api, key, cue["id"], {"status": "active"})
    assert out["next_run"] == at.replace("+00:00", "Z")


async def test_concurrent_patches_both_apply(api: Api) -> None:
    import asyncio

    key = await api.register()
    cue = await create(api, key, webhook_cue(retry={"max_attempts": 3, "backoff_minutes": [1]}))
    bodies = [
        {"retry": {"max_attempts": 7}},
        {"retry": {"backoff_minutes": [9]}},
        {"description": "d"},
        {"on_failure": {"pause": True}},
    ]
    results = await asyncio.gather(
        *(api.request("PATCH", f"/v1/cues/{cue['id']}", key, json=b) for b in bodies)
    )
    assert all(r.status_code == 200 for r in results)
    final = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert final["retry"] == {"max_attempts": 7, "backoff_minutes": [9]}
    assert final["description"] == "d" and final["on_failure"]["pause"] is True
