"""GET /v1/usage (CONTRACT.md §13.1) against real Redis with a frozen clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.ids import key_sha
from cuefast.models import Account
from cuefast.months import month_of
from cuefast.services.usage import count_executions, usage_report
from cuefast.times import from_datetime, parse_datetime
from tests.conftest import Api, assert_error, make_api
from tests.test_dispatcher import drain
from tests.test_dispatcher import env as env_dispatch  # noqa: F401  (fixture)
from tests.test_dispatcher import webhook_cue as dispatch_cue


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


T0 = 1_795_434_122_000_000  # 2026-11-23T11:42:02Z


def at(*args: int) -> int:
    return from_datetime(datetime(*args, tzinfo=UTC))  # type: ignore[misc]


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Api, FrozenClock]]:
    clock = FrozenClock(T0)
    api, rt = await make_api(settings, clock)
    try:
        yield api, clock
    finally:
        await api.client.aclose()
        await rt.close()


async def account_id(api: Api, key: str) -> str:
    res = await api.rt.store.accounts.authenticate(key_sha(key), count=False, now_us=0)
    assert res.account is not None
    return res.account.id


def worker_cue(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "transport": "worker",
        "schedule": {"type": "recurring", "cron": "0 9 * * *"},
        "payload": {"task": "t"},
    }


async def new_cue(api: Api, key: str, name: str, *, paused: bool = False) -> str:
    res = await api.request("POST", "/v1/cues", key, json=worker_cue(name))
    assert res.status_code == 201, res.text
    cue_id: str = res.json()["id"]
    if paused:
        res = await api.request("PATCH", f"/v1/cues/{cue_id}", key, json={"status": "paused"})
        assert res.status_code == 200
    return cue_id


async def test_fresh_account(env: tuple[Api, FrozenClock]) -> None:
    api, _ = env
    key = await api.register()
    res = await api.request("GET", "/v1/usage", key)
    assert res.status_code == 200
    assert res.json() == {
        "plan": "free",
        "billing_period": {"start": "2026-11-01", "end": "2026-11-30", "days_remaining": 7},
        "period": {"start": "2026-11-01", "end": "2026-11-30"},
        "cues": {"used": 0, "active": 0, "limit": 1_000_000, "remaining": 1_000_000, "percent_used": 0},
        "executions": {
            "used": 0,
            "limit": 1_000_000_000,
            "remaining": 1_000_000_000,
            "percent_used": 0,
            "percentage": 0.0,
            "projected_month_end": 0,
            "will_exceed_limit": False,
        },
        "outcomes": {"reported": 0, "succeeded": 0, "failed": 0},
        "rate_limit": {"requests_per_minute": 60_000, "limit": 60_000, "current_usage": 1},
        "upgrade_url": None,
    }
    assert res.headers["x-ratelimit-remaining"] == "59999"


async def test_counts_limits_and_arithmetic(env: tuple[Api, FrozenClock]) -> None:
    api, _ = env
    key = await api.register()
    acct = await account_id(api, key)
    await api.rt.store.accounts.set_fields(acct, {"cue_limit": 10, "exec_limit": 300, "rate_limit": 60})
    for i in range(4):
        await new_cue(api, key, f"a{i}")
    for i in range(2):
        await new_cue(api, key, f"p{i}", paused=True)
    await count_executions(api.rt.store, {(acct, month_of(T0)): 8})
    await count_executions(api.rt.store, {(acct, "2026-10"): 500})  # another month: not this one
    body = (await api.request("GET", "/v1/usage", key)).json()
    assert body["cues"] == {"used": 6, "active": 4, "limit": 10, "remaining": 4, "percent_used": 60}
    assert body["executions"] == {
        "used": 8,
        "limit": 300,
        "remaining": 292,
        "percent_used": 3,
        "percentage": 2.7,
        "projected_month_end": 10,  # round(8 / 23 × 30) = round(10.43)
        "will_exceed_limit": False,
    }
    # 4 + 4 cue requests (create, create + PATCH) and this one were counted in the window
    assert body["rate_limit"] == {"requests_per_minute": 60, "limit": 60, "current_usage": 4 + 4 + 1}
    me = (await api.request("GET", "/v1/auth/me", key)).json()
    assert me["executions_this_month"] == 8 and me["active_cues"] == 4


async def test_cli_fields(env: tuple[Api, FrozenClock]) -> None:
    """The CLI's `usage` reads plan, cues.active, cues.limit, executions.used/limit, rate_limit.limit."""
    api, _ = env
    key = await api.register()
    body = (await api.request("GET", "/v1/usage", key)).json()
    assert isinstance(body["plan"], str)
    for section, field in [("cues", "active"), ("cues", "limit"), ("executions", "used")]:
        assert isinstance(body[section][field], int)
    assert isinstance(body["executions"]["limit"], int) and isinstance(body["rate_limit"]["limit"], int)


async def test_needs_a_key(env: tuple[Api, FrozenClock]) -> None:
    api, _ = env
    assert_error(await api.client.get("/v1/usage"), 401, "invalid_api_key")


async def test_outcome_counters(env: tuple[Api, FrozenClock]) -> None:
    api, clock = env
    key = await api.register()
    cue_id = await new_cue(api, key, "w")
    eids = []
    for _ in range(3):
        res = await api.request("POST", f"/v1/cues/{cue_id}/fire", key, json={})
        assert res.status_code == 200
        eids.append(res.json()["id"])
    ok = {"success": True, "result": "fine"}
    assert (await api.request("POST", f"/v1/executions/{eids[0]}/outcome", key, json=ok)).status_code == 200
    bad = {"success": False, "error": "boom"}
    assert (await api.request("POST", f"/v1/executions/{eids[1]}/outcome", key, json=bad)).status_code == 200
    again = await api.request("POST", f"/v1/executions/{eids[1]}/outcome", key, json=ok)
    assert again.status_code == 409  # a refused second report is not counted
    body = (await api.request("GET", "/v1/usage", key)).json()
    assert body["outcomes"] == {"reported": 2, "succeeded": 1, "failed": 1}
    # an execution created in November whose outcome arrives in December counts for November
    clock.set(at(2026, 12, 1, 0, 0, 1))
    assert (await api.request("POST", f"/v1/executions/{eids[2]}/outcome", key, json=ok)).status_code == 200
    december = (await api.request("GET", "/v1/usage", key)).json()
    assert december["outcomes"] == {"reported": 0, "succeeded": 0, "failed": 0}
    assert december["billing_period"] == {"start": "2026-12-01", "end": "2026-12-31", "days_remaining": 30}
    _, _, november = await api.rt.store.usage.counts(await account_id(api, key), "2026-11")
    assert november == {"reported": 3, "succeeded": 2, "failed": 1}


def account(**over: Any) -> Account:
    fields: dict[str, Any] = {
        "id": "a",
        "email": "a@example.com",
        "email_lc": "a@example.com",
        "plan": "pro",
        "cue_limit": 10,
        "exec_limit": 300,
        "rate_limit": 60,
        "wh_secret": "",
        "alert_secret": "",
        "key_sha": "",
        "key_prefix": "",
        "created": 0,
        "updated": 0,
    }
    fields.update(over)
    return Account(**fields)


def report(now_us: int, used: int = 0, cues: int = 0, **over: Any) -> dict[str, Any]:
    return usage_report(
        account(**over),
        active=cues,
        paused=0,
        counters={"executions": used},
        window_count=0,
        now_us=now_us,
    )


@pytest.mark.parametrize(
    ("now", "start", "end", "days_remaining"),
    [
        (at(2026, 11, 30, 23, 59, 59), "2026-11-01", "2026-11-30", 0),
        (at(2026, 11, 1, 0, 0, 0), "2026-11-01", "2026-11-30", 29),
        (at(2028, 2, 10, 12, 0, 0), "2028-02-01", "2028-02-29", 19),
        (at(2027, 2, 28, 12, 0, 0), "2027-02-01", "2027-02-28", 0),
        (at(2026, 12, 31, 23, 59, 59), "2026-12-01", "2026-12-31", 0),
    ],
)
def test_calendar_month(now: int, start: str, end: str, days_remaining: int) -> None:
    r = report(now)
    assert r["billing_period"] == {"start": start, "end": end, "days_remaining": days_remaining}
    assert r["period"] == {"start": start, "end": end}


@pytest.mark.parametrize(
    ("now", "used", "limit", "percent", "percentage", "projected", "exceed"),
    [
        (at(2026, 11, 1, 8, 0, 0), 10, 300, 3, 3.3, 300, True),  # day 1: used × days in month
        (at(2026, 11, 15, 8, 0, 0), 1, 200, 0, 0.5, 2, False),  # 0.5 % rounds half to even → 0
        (at(2026, 11, 15, 8, 0, 0), 3, 200, 2, 1.5, 6, False),  # 1.5 % → 2
        (at(2026, 11, 20, 8, 0, 0), 200, 300, 67, 66.7, 300, True),  # projected == limit
        (at(2026, 11, 30, 8, 0, 0), 400, 300, 133, 133.3, 400, True),  # over: remaining 0
        (at(2026, 11, 12, 8, 0, 0), 5, 0, 0, 0.0, 12, True),  # limit 0 → percent 0
        (at(2026, 11, 8, 8, 0, 0), 1, 1000, 0, 0.1, 4, False),  # 3.75 → 4
    ],
)
def test_execution_arithmetic(
    now: int, used: int, limit: int, percent: int, percentage: float, projected: int, exceed: bool
) -> None:
    ex = report(now, used, exec_limit=limit)["executions"]
    assert ex == {
        "used": used,
        "limit": limit,
        "remaining": max(0, limit - used),
        "percent_used": percent,
        "percentage": percentage,
        "projected_month_end": projected,
        "will_exceed_limit": exceed,
    }


def test_cue_arithmetic() -> None:
    assert report(T0, cues=12, cue_limit=10)["cues"] == {
        "used": 12,
        "active": 12,
        "limit": 10,
        "remaining": 0,
        "percent_used": 120,
    }
    assert report(T0, cues=3, cue_limit=0)["cues"]["percent_used"] == 0
    assert report(T0, cues=1, cue_limit=8)["cues"]["percent_used"] == 12  # 12.5 → 12


async def test_deliveries_count_executions_and_final_failures(env_dispatch: Any) -> None:
    """Real scheduler and dispatcher: a delivered webhook counts an execution (and feeds the
    usage warning); a final delivery failure and an outcome timeout, both without an outcome,
    count as `outcomes.failed`."""
    api, clock, sched, dispatcher, receiver = env_dispatch
    key = await api.register()
    acct = await account_id(api, key)
    await api.rt.store.accounts.set_fields(acct, {"exec_limit": 2})
    await dispatch_cue(api, key, receiver.url, name="ok")
    await dispatch_cue(api, key, "http://127.0.0.1:1/nothing", name="refused", retry={"max_attempts": 1})
    await dispatch_cue(api, key, receiver.url, name="late", delivery={"outcome_deadline_seconds": 60})
    clock.set(parse_datetime("2031-01-06T09:00:01Z"))
    await sched.tick()
    assert sorted(str(s) for s in await drain(dispatcher)) == ["failed", "pending_outcome", "success"]
    await dispatcher.flush_usage()
    res = await api.request("GET", "/v1/usage", key)
    body = res.json()
    assert body["executions"]["used"] == 2
    assert body["outcomes"] == {"reported": 0, "succeeded": 0, "failed": 1}
    assert res.headers["x-cueapi-usage-warning"] == "approaching_limit"
    clock.set(parse_datetime("2031-01-06T09:01:30Z"))  # the outcome deadline has passed
    await sched.tick()
    body = (await api.request("GET", "/v1/usage", key)).json()
    assert body["outcomes"] == {"reported": 0, "succeeded": 0, "failed": 2}


async def test_batch_outcomes_are_counted_by_creation_month(env: tuple[Api, FrozenClock]) -> None:
    """Outcomes reported through the batch door (POST /v1/worker/outcomes, what `cuefast worker`
    uses) move the same monthly counters, in the execution's creation month."""
    api, clock = env
    key = await api.register()
    cue_id = await new_cue(api, key, "w")
    for _ in range(3):
        assert (await api.request("POST", f"/v1/cues/{cue_id}/fire", key, json={})).status_code == 200
    claim = {"worker_id": "w1", "max": 10}
    res = await api.request("POST", "/v1/worker/claim", key, json=claim)
    eids = [e["execution_id"] for e in res.json()["executions"]]
    assert len(eids) == 3
    clock.set(at(2026, 12, 1, 0, 0, 1))  # reported in December, created in November
    outcomes = [
        {"execution_id": eids[0], "success": True},
        {"execution_id": eids[1], "success": False, "error": "boom"},
        {"execution_id": eids[2], "success": True},
        {"execution_id": eids[2], "success": True},  # a repeat: refused, not counted
    ]
    res = await api.request(
        "POST", "/v1/worker/outcomes", key, json={"worker_id": "w1", "outcomes": outcomes}
    )
    assert res.status_code == 200, res.text
    assert [r["outcome_recorded"] for r in res.json()["results"]] == [True, True, True, False]
    _, _, november = await api.rt.store.usage.counts(await account_id(api, key), "2026-11")
    # (claims count as executions: §13.2)
    assert november == {"executions": 3, "reported": 3, "succeeded": 2, "failed": 1}
