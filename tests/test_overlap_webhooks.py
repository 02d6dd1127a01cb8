"""The overlap policy with real webhook deliveries: the in-process scheduler and dispatcher on a
frozen clock and a real receiver (tests/test_dispatcher.py's), on one server and the Cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cuefast.config import Settings
from cuefast.times import parse_datetime
from tests.conftest import Api, wait_for
from tests.test_dispatcher import Env, dispatch_env, drain, webhook_cue


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    return settings_on


async def statuses(api: Api, key: str, cue_id: str) -> dict[str, str]:
    rows = (await api.request("GET", f"/v1/executions?cue_id={cue_id}&limit=100", key)).json()["executions"]
    return {e["scheduled_for"][11:16]: e["status"] for e in rows}


async def _delivering(api: Api, key: str, cue_id: str) -> bool:
    return "delivering" in (await statuses(api, key, cue_id)).values()


async def run(env: Env, policy: str) -> tuple[Api, str, dict[str, Any], asyncio.Task[Any]]:
    """A webhook cue under ``policy`` whose 09:00 execution is being delivered to a receiver that
    holds the request open: (api, key, cue, the delivering task)."""
    api, clock, sched, dispatcher, receiver = env
    receiver.mode = "block"
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url, overlap=policy)
    clock.set(parse_datetime("2031-01-06T09:00:00.1Z"))
    await sched.tick()
    task = asyncio.create_task(drain(dispatcher))
    await wait_for(lambda: _delivering(api, key, cue["id"]), what="the 09:00 attempt in flight")
    return api, key, cue, task


async def test_buffer_one_delivers_the_waiting_slot_after_the_running_one(settings: Settings) -> None:
    async with dispatch_env(settings) as env:
        api, key, cue, task = await run(env, "buffer_one")
        _, clock, sched, dispatcher, receiver = env
        for at in ("09:01", "09:02"):
            clock.set(parse_datetime(f"2031-01-06T{at}:00.1Z"))
            await sched.tick()
        assert await statuses(api, key, cue["id"]) == {
            "09:00": "delivering",
            "09:01": "pending",
            "09:02": "skipped",
        }
        assert await drain(dispatcher) == []  # the waiting one is not in the outbox
        receiver.mode = "ok"
        receiver.unblock.set()
        assert await task == ["success"]  # the 09:00 delivery ends: 09:01 is released
        assert await drain(dispatcher) == ["success"]
        assert await statuses(api, key, cue["id"]) == {
            "09:00": "success",
            "09:01": "success",
            "09:02": "skipped",
        }
        assert len(receiver.requests) == 2


async def test_cancel_previous_an_attempt_in_flight_no_longer_changes_the_status(settings: Settings) -> None:
    async with dispatch_env(settings) as env:
        api, key, cue, task = await run(env, "cancel_previous")
        _, clock, sched, dispatcher, receiver = env
        clock.set(parse_datetime("2031-01-06T09:01:00.1Z"))
        await sched.tick()
        assert await statuses(api, key, cue["id"]) == {"09:00": "cancelled", "09:01": "pending"}
        receiver.mode = "ok"
        receiver.unblock.set()
        await task  # the 2xx of the cancelled attempt arrives: nothing recorded
        assert await drain(dispatcher) == ["success"]
        got = await statuses(api, key, cue["id"])
        assert got == {"09:00": "cancelled", "09:01": "success"}
        assert len(receiver.requests) == 2  # the request in flight was not recalled
        first = (await api.request("GET", f"/v1/executions?cue_id={cue['id']}&status=cancelled", key)).json()
        e = first["executions"][0]
        assert e["http_status"] is None and e["delivered_at"] is None and e["attempts"] == 0


async def test_skip_runs_again_once_the_delivery_succeeded(settings: Settings) -> None:
    async with dispatch_env(settings) as env:
        api, key, cue, task = await run(env, "skip")
        _, clock, sched, dispatcher, receiver = env
        clock.set(parse_datetime("2031-01-06T09:01:00.1Z"))
        await sched.tick()
        receiver.mode = "ok"
        receiver.unblock.set()
        assert await task == ["success"]
        clock.set(parse_datetime("2031-01-06T09:02:00.1Z"))
        await sched.tick()
        assert await drain(dispatcher) == ["success"]
        assert await statuses(api, key, cue["id"]) == {
            "09:00": "success",
            "09:01": "skipped",
            "09:02": "success",
        }


async def test_skip_counts_a_delivered_execution_awaiting_its_outcome_as_running(settings: Settings) -> None:
    """The issue's "delivered-but-no-outcome counts as running when an outcome is expected", with
    real deliveries: under an armed ``outcome_deadline_seconds`` the 2xx leaves 09:00
    ``pending_outcome`` and 09:01 is skipped; its outcome ends it and 09:02 runs. Without a
    deadline (no outcome expected) the delivered 09:00 is final and 09:01 runs."""
    async with dispatch_env(settings) as env:
        api, clock, sched, dispatcher, receiver = env
        key = await api.register()
        waits = await webhook_cue(
            api, key, receiver.url, name="waits", overlap="skip", delivery={"outcome_deadline_seconds": 3600}
        )
        plain = await webhook_cue(api, key, receiver.url, name="plain", overlap="skip")
        clock.set(parse_datetime("2031-01-06T09:00:00.1Z"))
        await sched.tick()
        assert sorted(await drain(dispatcher)) == ["pending_outcome", "success"]
        clock.set(parse_datetime("2031-01-06T09:01:00.1Z"))
        await sched.tick()
        assert await drain(dispatcher) == ["success"]  # plain's 09:01; waits' 09:01 is skipped
        assert await statuses(api, key, waits["id"]) == {"09:00": "pending_outcome", "09:01": "skipped"}
        assert await statuses(api, key, plain["id"]) == {"09:00": "success", "09:01": "success"}
        first = (
            await api.request("GET", f"/v1/executions?cue_id={waits['id']}&status=pending_outcome", key)
        ).json()
        eid = first["executions"][0]["id"]
        res = await api.request("POST", f"/v1/executions/{eid}/outcome", key, json={"success": True})
        assert res.status_code == 200, res.text
        clock.set(parse_datetime("2031-01-06T09:02:00.1Z"))
        await sched.tick()
        assert sorted(await drain(dispatcher)) == ["pending_outcome", "success"]
        assert await statuses(api, key, waits["id"]) == {
            "09:00": "success",
            "09:01": "skipped",
            "09:02": "pending_outcome",
        }
