"""Input limits (README "Input limits"): every bound refuses just above it and accepts at it,
with the contract's envelope; stored values that cannot be rendered never fail a listing."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.conftest import Api, assert_error

MAX_AT = "2199-12-31T23:59:59.999999Z"


def cue_body(name: str = "c", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "transport": "worker",
        "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
        "payload": {"task": "t"},
    }
    body.update(over)
    return body


async def post_json(api: Api, path: str, key: str, body: Any, method: str = "POST") -> Any:
    """Send ``body`` as ASCII JSON (lone surrogates travel as ``\\udXXX`` escapes)."""
    return await api.request(method, path, key, content=json.dumps(body).encode())


async def make_cue(api: Api, key: str, name: str = "c", **over: Any) -> dict[str, Any]:
    res = await post_json(api, "/v1/cues", key, cue_body(name, **over))
    assert res.status_code == 201, res.text
    out: dict[str, Any] = res.json()
    return out


# ---- A3: instants are bounded, rendering is total ------------------------------------------


async def test_schedule_at_is_bounded(api: Api) -> None:
    key = await api.register()
    once = {"type": "once", "at": MAX_AT}
    cue = await make_cue(api, key, "at-max", schedule=once)
    assert cue["schedule"]["at"] == "2199-12-31T23:59:59.999999+00:00"
    assert cue["next_run"] == MAX_AT
    for at, tz in (
        ("2200-01-01T00:00:00Z", "UTC"),
        ("9999-12-31T23:00:00-10:00", "UTC"),  # the value: was a 500 and a poisoned listing
        ("9999-12-31T23:59:59", "Pacific/Kiritimati"),
        ("2199-12-31T23:30:00", "America/New_York"),  # in range as UTC, past the bound in its zone
    ):
        res = await post_json(
            api, "/v1/cues", key, cue_body("late", schedule={"type": "once", "at": at, "timezone": tz})
        )
        assert_error(res, 400, "invalid_schedule", f"Scheduled time must not be after {MAX_AT}")
    res = await post_json(
        api, "/v1/cues", key, cue_body("early", schedule={"type": "once", "at": "1969-12-31T23:59:59Z"})
    )
    assert_error(res, 400, "invalid_schedule", "Scheduled time must be in the future")
    res = await post_json(
        api, f"/v1/cues/{cue['id']}", key, {"schedule": {"at": "2200-01-01T00:00:00Z"}}, "PATCH"
    )
    assert_error(res, 400, "invalid_schedule")
    res = await api.request("GET", "/v1/cues", key)
    assert res.status_code == 200, res.text
    assert [c["id"] for c in res.json()["cues"]] == [cue["id"]]
    assert res.json()["cues"][0]["schedule"]["at"] == "2199-12-31T23:59:59.999999+00:00"


async def test_send_at_is_bounded(api: Api) -> None:
    key = await api.register()
    cue = await make_cue(api, key)
    for send_at in ("9999-12-31T23:00:00-10:00", "2200-01-01T00:00:00Z", "1969-12-31T23:59:59Z"):
        res = await post_json(api, f"/v1/cues/{cue['id']}/fire", key, {"send_at": send_at})
        assert_error(
            res, 400, "invalid_schedule", f"send_at must be between 1970-01-01T00:00:00Z and {MAX_AT}"
        )
    res = await api.request("GET", "/v1/executions", key)
    assert res.status_code == 200 and res.json()["total"] == 0  # nothing written
    res = await post_json(api, f"/v1/cues/{cue['id']}/fire", key, {"send_at": MAX_AT})
    assert res.status_code == 200, res.text
    assert res.json()["scheduled_for"] == "2199-12-31T23:59:59.999999+00:00"
    res = await api.request("GET", "/v1/executions", key)
    assert res.status_code == 200 and res.json()["executions"][0]["scheduled_for"] == MAX_AT


async def test_alert_since_is_bounded(api: Api) -> None:
    key = await api.register()
    res = await api.request("GET", "/v1/alerts", key, params={"since": MAX_AT})
    assert res.status_code == 200, res.text
    for since in ("2200-01-01T00:00:00Z", "9999-12-31T23:00:00-10:00", "0001-01-01T00:00:00Z"):
        res = await api.request("GET", "/v1/alerts", key, params={"since": since})
        err = assert_error(res, 422, "validation_error")
        assert err["details"][0]["field"] == "query.since"


async def test_bad_stored_values_never_fail_a_listing(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    key = await api.register()
    good = await make_cue(api, key, "good")
    bad = await make_cue(api, key, "bad")
    broken = await make_cue(api, key, "broken")
    res = await post_json(api, f"/v1/cues/{bad['id']}/fire", key, {})
    eid = res.json()["id"]
    r, k = api.rt.store.redis, api.rt.keys
    await r.hset(
        k.cue(bad["id"]),
        mapping={
            "nr": "99999999999999999999",
            "lr": "abc",
            "rc": "x",
            "sch": "once|UTC|latest|-99999999999999999999|",
        },
    )
    await r.hset(k.cue(broken["id"]), "sch", "garbage")  # no config can be read at all
    p = k.execution_partition(eid)
    assert p is not None
    await r.hset(
        k.execution(p, eid),
        mapping={"sf": "99999999999999999999", "la": "x", "att": "?", "pl": '{"bad', "oc": "["},
    )
    caplog.set_level(logging.ERROR, logger="cuefast.data")
    res = await api.request("GET", "/v1/cues", key)
    assert res.status_code == 200, res.text
    by_id = {c["id"]: c for c in res.json()["cues"]}
    assert set(by_id) == {good["id"], bad["id"]}  # the unreadable one is left out, not a 500
    c = by_id[bad["id"]]
    assert c["next_run"] is None and c["last_run"] is None and c["run_count"] == 0
    assert c["schedule"] == {"type": "once", "timezone": "UTC"}
    assert by_id[good["id"]]["next_run"] is not None
    res = await api.request("GET", f"/v1/cues/{bad['id']}", key)
    assert res.status_code == 200, res.text
    [e] = res.json()["executions"]
    assert e["scheduled_for"] is None and e["last_attempt_at"] is None and e["attempts"] == 0
    assert e["payload"] == {} and e["outcome"] is None and e["created_at"] is not None
    for path in ("/v1/executions", f"/v1/executions?cue_id={bad['id']}", "/v1/executions?status=pending"):
        res = await api.request("GET", path, key)
        assert res.status_code == 200, (path, res.text)
        assert res.json()["executions"][0]["scheduled_for"] is None
    res = await api.request("GET", f"/v1/executions/{eid}", key)
    assert res.status_code == 200 and res.json()["payload"] == {}
    logged = " ".join(rec.getMessage() for rec in caplog.records if rec.name == "cuefast.data")
    for needle in (bad["id"], broken["id"], eid, "next_run", "scheduled_for", "payload"):
        assert needle in logged
    assert "99999999999999999999" not in logged  # values are never logged
