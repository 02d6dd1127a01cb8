"""Monthly execution limit (CONTRACT.md §13.2): scheduler-created executions of an account at
its limit proceed for a 24-hour grace period, then are created directly as failed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from cuefast.config import Settings
from cuefast.engine.dispatcher import Dispatcher
from cuefast.engine.scheduler import Scheduler
from cuefast.months import month_of
from cuefast.services.usage import count_executions
from cuefast.times import parse_datetime
from tests.conftest import Api
from tests.test_dispatcher import Env, dispatch_env, webhook_cue
from tests.test_dispatcher import drain as drain_outbox


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


T0 = parse_datetime("2031-01-06T08:59:30Z")
BLOCKED = "Monthly execution limit reached"


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    async with dispatch_env(msgspec.structs.replace(settings, default_monthly_execution_limit=1)) as e:
        yield e


async def drain(dispatcher: Dispatcher) -> list[str | None]:
    """Deliver the outbox, then write the monthly counters (the dispatcher aggregates them)."""
    out = await drain_outbox(dispatcher)
    await dispatcher.flush_usage()
    return out


async def executions(api: Api, key: str, cue_id: str) -> list[dict[str, Any]]:
    """The cue's executions, newest first."""
    res = await api.request("GET", f"/v1/executions?cue_id={cue_id}&limit=100", key)
    assert res.status_code == 200, res.text
    items: list[dict[str, Any]] = res.json()["executions"]
    return items


async def account_of(api: Api, cue_id: str) -> str:
    return str(await api.rt.store.redis.hget(api.rt.keys.cue(cue_id), "acct"))


async def at_limit(api: Api, cue_id: str, now_us: int) -> str:
    """Count one execution this month for the cue's account (its limit is 1)."""
    acct = await account_of(api, cue_id)
    await count_executions(api.rt.store, {(acct, month_of(now_us)): 1})
    return acct


async def stream_total(api: Api, name: str) -> int:
    keys = api.rt.keys
    key_of = keys.outbox if name == "outbox" else keys.notices
    return sum([int(await api.rt.store.redis.xlen(key_of(p))) for p in range(keys.partitions)])


async def claimable(api: Api, key: str) -> list[str]:
    res = await api.request("GET", "/v1/executions/claimable", key)
    assert res.status_code == 200, res.text
    return [e["execution_id"] for e in res.json()["executions"]]


async def test_below_the_limit_nothing_changes(env: Env) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url)
    clock.set(parse_datetime("2031-01-06T09:00:00.2Z"))
    assert await sched.tick() == 1
    assert await drain(dispatcher) == ["success"]
    acct = await account_of(api, cue["id"])
    fields = await api.rt.store.redis.hgetall(api.rt.keys.account(acct))
    assert "qg:2031-01" not in fields  # one execution counted is the limit only after it was created
    me = (await api.request("GET", "/v1/auth/me", key)).json()
    assert me["executions_this_month"] == 1 and me["monthly_execution_limit"] == 1


async def test_webhook_grace_then_blocked_then_next_month(env: Env) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url)
    clock.set(parse_datetime("2031-01-06T09:00:00.2Z"))
    assert await sched.tick() == 1
    assert await drain(dispatcher) == ["success"]  # the counter reaches the limit (1)
    acct = await account_of(api, cue["id"])
    grace_start = parse_datetime("2031-01-06T09:01:00.2Z")
    clock.set(grace_start)
    assert await sched.tick() == 1  # at the limit: the grace period starts, delivery proceeds
    account_key = api.rt.keys.account(acct)
    assert await api.rt.store.redis.hget(account_key, "qg:2031-01") == str(grace_start)
    assert await drain(dispatcher) == ["success"]
    clock.set(parse_datetime("2031-01-07T09:01:00.1Z"))  # 23:59:59.9 into the grace period
    assert await sched.tick() == 1
    assert await drain(dispatcher) == ["success"]
    assert await api.rt.store.redis.hget(account_key, "qg:2031-01") == str(grace_start)  # not restarted
    delivered = len(receiver.requests)

    clock.set(parse_datetime("2031-01-07T09:02:00.2Z"))  # grace over
    assert await sched.tick() == 1
    assert await stream_total(api, "outbox") == 0 and await drain(dispatcher) == []
    blocked = (await executions(api, key, cue["id"]))[0]
    assert blocked["scheduled_for"] == "2031-01-07T09:02:00Z"
    assert blocked["status"] == "failed" and blocked["error_message"] == BLOCKED
    assert blocked["attempts"] == 0 and blocked["triggered_by"] == "scheduled"
    assert blocked["updated_at"].startswith("2031-01-07T09:02:00")
    detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["status"] == "active" and detail["next_run"] == "2031-01-07T09:03:00Z"
    # no on_failure (e-mail notice, webhook), no alert, no retry
    assert await stream_total(api, "notices") == 0
    assert (await api.request("GET", "/v1/alerts", key)).json()["alerts"] == []
    assert len(receiver.requests) == delivered
    assert await api.rt.store.redis.hget(api.rt.keys.cue(cue["id"]), "fs") is None
    retries = [await api.rt.store.redis.zcard(api.rt.keys.retries(p)) for p in range(api.rt.keys.partitions)]
    assert sum(retries) == 0
    usage = (await api.request("GET", "/v1/usage", key)).json()
    assert usage["outcomes"]["failed"] == 1 and usage["executions"]["used"] == 3

    # re-processing the same pass never duplicates; the next slot is blocked too
    assert await sched.tick() == 0
    clock.set(parse_datetime("2031-01-07T09:03:00.2Z"))
    assert await sched.tick() == 1
    assert [e["status"] for e in await executions(api, key, cue["id"])][:2] == ["failed", "failed"]

    # manual fires and replays are never blocked
    res = await api.request("POST", f"/v1/cues/{cue['id']}/fire", key)
    assert res.status_code == 200 and res.json()["status"] == "pending", res.text
    res = await api.request("POST", f"/v1/executions/{blocked['id']}/replay", key)
    assert res.status_code == 200 and res.json()["status"] == "pending", res.text
    assert await drain(dispatcher) == ["success", "success"]

    # the next month's counter starts at 0: scheduled executions proceed again
    clock.set(parse_datetime("2031-02-01T00:00:00.3Z"))
    assert await sched.tick() == 1
    newest = (await executions(api, key, cue["id"]))[0]
    assert newest["scheduled_for"] == "2031-02-01T00:00:00Z" and newest["status"] == "pending"
    assert await drain(dispatcher) == ["success"]


async def test_worker_and_one_time_cues_after_grace(env: Env) -> None:
    api, clock, sched, _, _ = env
    key = await api.register()
    body = {"transport": "worker", "schedule": {"type": "recurring", "cron": "* * * * *"}}
    worker = await api.request("POST", "/v1/cues", key, json={**body, "name": "w", "payload": {"task": "t"}})
    assert worker.status_code == 201, worker.text
    wid = worker.json()["id"]
    once_body = {
        "name": "once",
        "transport": "worker",
        "schedule": {"type": "once", "at": "2031-01-07T10:00:00Z"},
    }
    once = await api.request("POST", "/v1/cues", key, json=once_body)
    assert once.status_code == 201, once.text
    oid = once.json()["id"]
    await at_limit(api, wid, T0)

    clock.set(parse_datetime("2031-01-06T09:00:00.2Z"))
    assert await sched.tick() == 1  # grace starts: claimable as usual
    first = (await executions(api, key, wid))[0]
    assert first["status"] == "pending" and await claimable(api, key) == [first["id"]]

    clock.set(parse_datetime("2031-01-07T10:00:00.5Z"))  # grace over: both cues due
    assert await sched.tick() == 2
    (blocked_once,) = await executions(api, key, oid)
    blocked = (await executions(api, key, wid))[0]
    for e in (blocked, blocked_once):
        assert e["status"] == "failed" and e["error_message"] == BLOCKED and e["claimed_by_worker"] is None
    assert await claimable(api, key) == [first["id"]]
    res = await api.request("POST", "/v1/executions/claim", key, json={"worker_id": "w1", "task": "t"})
    assert res.status_code == 200, res.text
    unclaimed = [
        await api.rt.store.redis.zcard(api.rt.keys.unclaimed(p)) for p in range(api.rt.keys.partitions)
    ]
    assert sum(unclaimed) == 0  # the claimed one left; the blocked ones never entered
    once_detail = (await api.request("GET", f"/v1/cues/{oid}", key)).json()
    assert once_detail["status"] == "failed" and once_detail["next_run"] is None
    assert (await api.request("GET", f"/v1/cues/{wid}", key)).json()["status"] == "active"
    assert await stream_total(api, "notices") == 0
    assert (await api.request("GET", "/v1/alerts", key)).json()["alerts"] == []
    listed = (await api.request("GET", "/v1/executions?status=failed", key)).json()
    assert {e["id"] for e in listed["executions"]} == {blocked["id"], blocked_once["id"]}
    usage = (await api.request("GET", "/v1/usage", key)).json()
    assert usage["outcomes"]["failed"] == 2


async def test_other_accounts_are_not_blocked(env: Env) -> None:
    api, clock, sched, dispatcher, receiver = env
    full, other = await api.register(), await api.register()
    a = await webhook_cue(api, full, receiver.url)
    b = await webhook_cue(api, other, receiver.url)
    await at_limit(api, a["id"], T0)
    clock.set(parse_datetime("2031-01-06T09:00:00.2Z"))
    assert await sched.tick() == 2
    clock.set(parse_datetime("2031-01-07T09:00:00.2Z"))
    assert await sched.tick() == 2
    assert (await executions(api, full, a["id"]))[0]["status"] == "failed"
    assert (await executions(api, other, b["id"]))[0]["status"] == "pending"


async def test_enforce_quotas_false_disables_it(env: Env) -> None:
    api, clock, _, dispatcher, receiver = env
    sched = Scheduler(api.rt.store, clock, enforce_quotas=False)
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url)
    acct = await at_limit(api, cue["id"], T0)
    for at in ("2031-01-06T09:00:00.2Z", "2031-01-08T09:00:00.2Z"):
        clock.set(parse_datetime(at))
        assert await sched.tick() == 1
        assert await drain(dispatcher) == ["success"]
    assert all(e["status"] == "success" for e in await executions(api, key, cue["id"]))
    assert await api.rt.store.redis.hget(api.rt.keys.account(acct), "qg:2031-01") is None
