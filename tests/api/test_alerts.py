"""GET /v1/alerts: filters, pagination, ordering and every error envelope (CONTRACT.md §12.5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from tests.conftest import Api, assert_error, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


T0 = 1_795_434_122_000_000
TYPES_MSG = "alert_type must be one of: consecutive_failures, outcome_timeout, verification_failed"


@pytest.fixture
async def fenv(settings: Settings) -> AsyncIterator[tuple[Api, FrozenClock]]:
    clock = FrozenClock(T0)
    api, rt = await make_api(settings, clock)
    try:
        yield api, clock
    finally:
        await api.client.aclose()
        await rt.close()


async def cue(api: Api, key: str, name: str, **over: Any) -> str:
    body = {
        "name": name,
        "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
        "callback": {"url": "http://127.0.0.1:9/hook"},
        **over,
    }
    res = await api.request("POST", "/v1/cues", key, json=body)
    assert res.status_code == 201, res.text
    return str(res.json()["id"])


async def raise_alert(api: Api, key: str, cue_id: str, success: bool) -> str:
    """Fire the (never delivered) cue and report an outcome that raises an alert."""
    res = await api.request("POST", f"/v1/cues/{cue_id}/fire", key, json={})
    eid = str(res.json()["id"])
    res = await api.request("POST", f"/v1/executions/{eid}/outcome", key, json={"success": success})
    assert res.status_code == 200, res.text
    return eid


async def page(api: Api, key: str, query: str = "") -> dict[str, Any]:
    res = await api.request("GET", f"/v1/alerts{query}", key)
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    return out


async def test_list_filters_order_and_pagination(fenv: tuple[Api, FrozenClock]) -> None:
    api, clock = fenv
    key = await api.register()
    assert await page(api, key) == {"alerts": [], "total": 0, "limit": 20, "offset": 0}
    verify = await cue(api, key, "v", verification={"mode": "require_external_id"})
    streak = await cue(api, key, "s", alerts={"consecutive_failures": 1})
    made: list[tuple[str, str]] = []  # (alert type, execution id), oldest first, 1 s apart
    for i in range(7):
        clock.advance(1)
        if i % 3 == 2:
            made.append(("consecutive_failures", await raise_alert(api, key, streak, False)))
            await raise_alert(api, key, streak, True)  # reset: the next failure alerts again
        else:
            made.append(("verification_failed", await raise_alert(api, key, verify, True)))
    newest_first = list(reversed(made))
    full = await page(api, key)
    assert (
        full["total"] == 7 and [(a["alert_type"], a["execution_id"]) for a in full["alerts"]] == newest_first
    )
    created = [a["created_at"] for a in full["alerts"]]
    assert created == sorted(created, reverse=True) and created[0] == "2026-11-23T11:42:09Z"
    # pages never overlap and cover everything
    seen: list[str] = []
    for offset in range(0, 7, 3):
        got = await page(api, key, f"?limit=3&offset={offset}")
        assert got["limit"] == 3 and got["offset"] == offset and got["total"] == 7
        seen += [a["execution_id"] for a in got["alerts"]]
    assert seen == [eid for _, eid in newest_first]
    # alert_type, since (inclusive) and the filtered total
    vf = await page(api, key, "?alert_type=verification_failed&limit=2")
    assert vf["total"] == 5 and all(a["alert_type"] == "verification_failed" for a in vf["alerts"])
    assert len(vf["alerts"]) == 2
    since = full["alerts"][2]["created_at"]
    recent = await page(api, key, f"?since={since}")
    assert recent["total"] == 3 and [a["created_at"] for a in recent["alerts"]] == created[:3]
    both = await page(api, key, f"?since={since}&alert_type=consecutive_failures")
    assert both["total"] == 1 and both["alerts"][0]["execution_id"] == made[5][1]
    offset_form = since.replace("Z", "+00:00")
    assert (await page(api, key, f"?since={offset_form}"))["total"] == 3  # "+" sent unencoded
    assert (await page(api, key, "?since=2099-01-01T00:00:00Z"))["total"] == 0
    # another account sees none of them
    other = await api.register()
    assert (await page(api, other))["total"] == 0


async def test_list_errors_use_the_envelope(fenv: tuple[Api, FrozenClock]) -> None:
    api, _ = fenv
    key = await api.register()
    assert_error(
        await api.request("GET", "/v1/alerts?alert_type=nope", key), 400, "invalid_filter", TYPES_MSG
    )
    assert_error(await api.request("GET", "/v1/alerts?alert_type=", key), 400, "invalid_filter", TYPES_MSG)
    cases = {
        "limit=0": "query.limit: Input should be greater than or equal to 1",
        "limit=101": "query.limit: Input should be less than or equal to 100",
        "limit=x": "query.limit: Input should be a valid integer, unable to parse string as an integer",
        "offset=-1": "query.offset: Input should be greater than or equal to 0",
        "since=yesterday": "query.since: Input should be a valid datetime",
    }
    for query, message in cases.items():
        err = assert_error(
            await api.request("GET", f"/v1/alerts?{query}", key), 422, "validation_error", message
        )
        assert err["details"][0]["field"] == message.split(":")[0]
    assert_error(await api.request("GET", "/v1/alerts"), 401, "invalid_api_key")
    assert_error(await api.request("GET", "/v1/alerts", "cue_sk_" + "0" * 32), 401, "invalid_api_key")
    assert_error(await api.request("POST", "/v1/alerts", key), 405, "http_error")
