"""The scheduler's wake-up: a long-sleeping scheduler still fires a cue made due soon, on time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from cuefast.config import Settings
from cuefast.engine.scheduler import Scheduler
from cuefast.store.wake import HORIZON_US
from cuefast.times import parse_datetime
from tests.conftest import Api, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


LONG_SLEEP = 30.0
"""the scheduler's longest sleep in these tests: without a signal it would fire ~30 s late"""
BOUND_US = 5_000_000
"""lateness allowed: a sixth of LONG_SLEEP, so a fire within it proves the scheduler was woken
(asleep, it would be ~30 s late) while a loaded 2-core CI machine cannot fail it; how late a
woken scheduler actually is belongs to the benchmarks (``bench burst``), not to a timed test"""


class ShiftedClock:
    """The real clock moved to a chosen instant: it runs at real speed (sleeps are real), but
    ``at`` decides where it stands, so a test controls how far ahead of "now" a slot is."""

    def __init__(self) -> None:
        self.offset = 0

    def now_us(self) -> int:
        return time.time_ns() // 1000 + self.offset

    def at(self, instant_us: int) -> None:
        self.offset = instant_us - time.time_ns() // 1000


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Api, ShiftedClock, asyncio.Event]]:
    """An API and a running Scheduler (real Redis) that sleeps up to LONG_SLEEP between reads."""
    clock = ShiftedClock()
    clock.at(parse_datetime("2031-01-06T08:00:00Z"))
    api, rt = await make_api(settings, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(Scheduler(rt.store, clock).run(stop, max_sleep=LONG_SLEEP))
    try:
        await until(rt.store.system.poller, "the scheduler's first pass")
        yield api, clock, stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await api.client.aclose()
        await rt.close()


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return found


async def executions(api: Api, key: str, cue_id: str) -> list[dict[str, Any]]:
    res = await api.request("GET", f"/v1/executions?cue_id={cue_id}", key)
    assert res.status_code == 200, res.text
    items: list[dict[str, Any]] = res.json()["executions"]
    return items


async def test_new_cue_fires_on_time_while_the_scheduler_sleeps(
    env: tuple[Api, ShiftedClock, asyncio.Event],
) -> None:
    api, clock, _ = env
    key = await api.register()
    clock.at(parse_datetime("2031-01-06T08:59:59.4Z"))  # the next minute is 0.6 s away
    res = await api.request(
        "POST",
        "/v1/cues",
        key,
        json={
            "name": "soon",
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "* * * * *"},
        },
    )
    assert res.status_code == 201, res.text
    cue = res.json()
    assert cue["next_run"] == "2031-01-06T09:00:00Z"
    (ex,) = await until(lambda: executions(api, key, cue["id"]), "the first fire")
    late = parse_datetime(ex["created_at"]) - parse_datetime(ex["scheduled_for"])
    assert 0 <= late <= BOUND_US, f"fired {late / 1000:.0f} ms after its time"


async def test_resumed_cue_fires_on_time(env: tuple[Api, ShiftedClock, asyncio.Event]) -> None:
    api, clock, _ = env
    key = await api.register()
    body = {"name": "later", "transport": "worker", "schedule": {"type": "recurring", "cron": "* * * * *"}}
    res = await api.request("POST", "/v1/cues", key, json=body)
    assert res.status_code == 201, res.text
    cue_id = res.json()["id"]
    res = await api.request("PATCH", f"/v1/cues/{cue_id}", key, json={"status": "paused"})
    assert res.status_code == 200, res.text
    clock.at(parse_datetime("2031-01-06T08:59:59.4Z"))
    res = await api.request("PATCH", f"/v1/cues/{cue_id}", key, json={"status": "active"})
    assert res.status_code == 200, res.text
    assert res.json()["next_run"] == "2031-01-06T09:00:00Z"
    (ex,) = await until(lambda: executions(api, key, cue_id), "the first fire")
    late = parse_datetime(ex["created_at"]) - parse_datetime(ex["scheduled_for"])
    assert 0 <= late <= BOUND_US, f"fired {late / 1000:.0f} ms after its time"


async def test_send_at_fire_is_moved_on_time(env: tuple[Api, ShiftedClock, asyncio.Event]) -> None:
    api, clock, _ = env
    store = api.rt.store
    key = await api.register()
    res = await api.request(
        "POST",
        "/v1/cues",
        key,
        json={
            "name": "hook",
            "schedule": {"type": "once", "at": "2035-01-01T00:00:00Z"},
            "callback": {"url": "http://127.0.0.1:9/hook"},
        },
    )
    assert res.status_code == 201, res.text
    cue_id = res.json()["id"]
    assert await store.redis.xlen(store.keys.wake) == 0  # due in 2035: nobody is told
    send_at = parse_datetime("2031-01-06T08:30:00Z")
    clock.at(send_at - 600_000)
    res = await api.request("POST", f"/v1/cues/{cue_id}/fire", key, json={"send_at": "2031-01-06T08:30:00Z"})
    assert res.status_code == 200, res.text
    delayed = store.keys.delayed(store.keys.cue_partition(cue_id))
    assert await store.redis.zcard(delayed) == 1

    async def moved() -> int | None:
        return clock.now_us() if await store.redis.zcard(delayed) == 0 else None

    at = await until(moved, "the delayed fire's move to the outbox")
    assert 0 <= at - send_at <= BOUND_US, f"moved {(at - send_at) / 1000:.0f} ms after its time"


async def test_only_due_times_within_the_horizon_signal(env: tuple[Api, ShiftedClock, asyncio.Event]) -> None:
    api, clock, _ = env
    store = api.rt.store
    now = clock.now_us()
    await store.wake.due(now + HORIZON_US, now)
    assert await store.redis.xlen(store.keys.wake) == 0
    await store.wake.due(now + HORIZON_US - 1, now)
    assert await store.redis.xlen(store.keys.wake) == 1


async def test_wait_returns_the_entries_after_the_cursor(settings: Settings) -> None:
    api, rt = await make_api(settings)
    try:
        wake = rt.store.wake
        cursor = await wake.cursor()
        assert await wake.wait(cursor, 0.01) == cursor  # nothing new: a timeout
        waiting = asyncio.create_task(wake.wait(cursor, 5.0))
        now = rt.clock.now_us()
        await wake.due(now, now)
        new = await asyncio.wait_for(waiting, 5.0)
        assert new != cursor and new == await wake.cursor()
    finally:
        await api.client.aclose()
        await rt.close()


async def test_two_sleeping_schedulers_fire_a_new_cue_once_on_time(
    env: tuple[Api, ShiftedClock, asyncio.Event],
) -> None:
    api, clock, stop = env
    second = asyncio.create_task(Scheduler(api.rt.store, clock).run(stop, max_sleep=LONG_SLEEP))
    key = await api.register()
    body = {"name": "both", "transport": "worker", "schedule": {"type": "recurring", "cron": "* * * * *"}}
    clock.at(parse_datetime("2031-01-06T08:59:59.4Z"))
    res = await api.request("POST", "/v1/cues", key, json=body)
    assert res.status_code == 201, res.text
    cue_id = res.json()["id"]
    (ex,) = await until(lambda: executions(api, key, cue_id), "the first fire")
    late = parse_datetime(ex["created_at"]) - parse_datetime(ex["scheduled_for"])
    assert 0 <= late <= BOUND_US, f"fired {late / 1000:.0f} ms after its time"
    stop.set()  # both were woken by the one signal and both passed the slot
    await asyncio.wait_for(second, 10)
    assert len(await executions(api, key, cue_id)) == 1
