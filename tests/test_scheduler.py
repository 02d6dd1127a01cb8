"""Scheduler: due cues → executions, one per (cue, scheduled_for), with a frozen clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.engine.scheduler import PLAN_RETRY_US, Scheduler
from cuefast.ids import scheduled_execution_id
from cuefast.store.schedule import DueCue
from cuefast.times import parse_datetime
from tests.conftest import Api, assert_error, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


T0 = parse_datetime("2031-01-06T08:59:30Z")  # a Monday
MIN = 60_000_000


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Api, FrozenClock, Scheduler]]:
    clock = FrozenClock(T0)
    api, rt = await make_api(settings, clock)
    try:
        yield api, clock, Scheduler(rt.store, clock)
    finally:
        await api.client.aclose()
        await rt.close()


async def new_cue(api: Api, key: str, name: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "transport": "worker",
        "schedule": {"type": "recurring", "cron": "* * * * *"},
        "payload": {"task": name},
    }
    body.update(over)
    res = await api.request("POST", "/v1/cues", key, json=body)
    assert res.status_code == 201, res.text
    out: dict[str, Any] = res.json()
    return out


async def executions(api: Api, key: str, cue_id: str) -> list[dict[str, Any]]:
    res = await api.request("GET", f"/v1/executions?cue_id={cue_id}&limit=100", key)
    assert res.status_code == 200, res.text
    items: list[dict[str, Any]] = res.json()["executions"]
    return items


async def test_due_cue_becomes_one_execution(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "every-minute", payload={"task": "t", "n": 1})
    assert cue["next_run"] == "2031-01-06T09:00:00Z"
    assert await sched.tick() == 0  # not due yet
    clock.set(parse_datetime("2031-01-06T09:00:00.2Z"))
    assert await sched.tick() == 1
    assert await sched.tick() == 0  # re-processing never duplicates
    execs = await executions(api, key, cue["id"])
    assert len(execs) == 1
    e = execs[0]
    p = api.rt.keys.cue_byte(cue["id"])
    assert e["id"] == scheduled_execution_id(cue["id"], parse_datetime("2031-01-06T09:00:00Z"), p)
    assert e["scheduled_for"] == "2031-01-06T09:00:00Z" and e["status"] == "pending"
    assert e["triggered_by"] == "scheduled" and e["payload"] == {"task": "t", "n": 1} and e["attempts"] == 0
    assert e["outcome"] is None and e["replayed_from"] is None
    got = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert got["next_run"] == "2031-01-06T09:01:00Z" and got["fired_count"] == 1
    assert got["execution_total"] == 1 and got["executions"][0]["id"] == e["id"]
    one = await api.request("GET", f"/v1/executions/{e['id']}", key)
    assert one.status_code == 200 and one.json() == e


async def test_payload_is_copied_at_fire_time(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c", payload={"v": 1})
    clock.set(parse_datetime("2031-01-06T09:00:01Z"))
    await sched.tick()
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"payload": {"v": 2}})
    assert (await executions(api, key, cue["id"]))[0]["payload"] == {"v": 1}


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        ("latest", ["2031-01-06T09:05:00Z"]),
        ("all", [f"2031-01-06T09:0{m}:00Z" for m in range(5, -1, -1)]),
        ("none", []),
    ],
)
async def test_catch_up_after_downtime(
    env: tuple[Api, FrozenClock, Scheduler], catch_up: str, expected: list[str]
) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c", catch_up=catch_up)
    clock.set(parse_datetime("2031-01-06T09:05:30Z"))  # down across 6 slots (09:00 … 09:05)
    await sched.tick()
    got = [e["scheduled_for"] for e in await executions(api, key, cue["id"])]
    assert sorted(got, reverse=True) == expected
    detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["next_run"] == "2031-01-06T09:06:00Z"
    assert detail["fired_count"] == len(expected)


async def test_a_remembered_next_run_follows_a_patch_that_keeps_it(
    env: tuple[Api, FrozenClock, Scheduler],
) -> None:
    """The scheduler plans a cue it moved itself without reading it again; a PATCH since then
    that changes the schedule but not the next run (here catch_up latest → all) must still decide
    the plan: the script's version check skips the remembered plan, its read returns the cue as
    it is, and every missed slot fires."""
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c")
    clock.set(parse_datetime("2031-01-06T09:00:00.2Z"))
    assert await sched.tick() == 1  # remembers the cue at 09:01 with catch_up latest
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"catch_up": "all"})
    assert res.status_code == 200 and res.json()["next_run"] == "2031-01-06T09:01:00Z", res.text
    clock.set(parse_datetime("2031-01-06T09:03:30Z"))  # 09:01, 09:02, 09:03 due
    assert await sched.tick() == 3
    got = sorted(e["scheduled_for"] for e in await executions(api, key, cue["id"]))
    assert got == [f"2031-01-06T09:0{m}:00Z" for m in range(4)]


async def test_remembered_next_runs_of_moved_or_deleted_cues(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    """Remembered next runs that are stale — a cue PATCHed to an earlier time, one deleted, one
    paused — neither fire nor hide what is really due; a second scheduler that remembers nothing
    finds nothing left to do."""
    api, clock, sched = env
    key = await api.register()
    moved = await new_cue(api, key, "moved", schedule={"type": "recurring", "cron": "*/10 * * * *"})
    gone = await new_cue(api, key, "gone")
    paused = await new_cue(api, key, "paused")
    kept = await new_cue(api, key, "kept")
    clock.set(parse_datetime("2031-01-06T09:00:00.2Z"))
    assert await sched.tick() == 4  # remembers moved at 09:10, the others at 09:01
    res = await api.request("PATCH", f"/v1/cues/{moved['id']}", key, json={"schedule": {"cron": "* * * * *"}})
    assert res.status_code == 200 and res.json()["next_run"] == "2031-01-06T09:01:00Z", res.text
    assert (await api.request("DELETE", f"/v1/cues/{gone['id']}", key)).status_code == 204
    res = await api.request("PATCH", f"/v1/cues/{paused['id']}", key, json={"status": "paused"})
    assert res.status_code == 200, res.text
    clock.set(parse_datetime("2031-01-06T09:01:00.2Z"))
    assert await sched.tick() == 2  # moved (read: not remembered at 09:01) and kept
    assert len(await executions(api, key, moved["id"])) == 2
    assert len(await executions(api, key, paused["id"])) == 1
    assert len(await executions(api, key, kept["id"])) == 2
    assert await Scheduler(api.rt.store, clock).tick() == 0


def test_remembered_cues_come_due_by_next_run(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    """The remembered cues (bucketed by next run) come back once each, only when due, oldest run
    first; a cue remembered at two runs comes back as remembered last."""
    _, _, sched = env
    a10, b10, a20, c30 = (
        DueCue("a", 10, "s1", "acct"),
        DueCue("b", 10, "s1", "acct"),
        DueCue("a", 20, "s2", "acct"),
        DueCue("c", 30, "s1", "acct"),
    )
    for row in (c30, a10, b10, a20):
        sched._expect(3, row)
    assert sched._expected_n == 4
    assert sched._expected_due(3, 9) == [] and sched._expected_due(2, 30) == []
    assert sched._expected_due(3, 25) == [a20, b10]  # "a" once, as remembered at run 20
    assert sched._expected_n == 1
    assert sched._expected_due(3, 25) == []
    assert sched._expected_due(3, 30) == [c30]
    assert sched._expected_n == 0


async def test_cues_beyond_the_memory_cap_are_read(
    env: tuple[Api, FrozenClock, Scheduler], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room to remember one cue, the other is read when due: both fire every slot."""
    monkeypatch.setattr("cuefast.engine.scheduler.EXPECT_MAX", 1)
    api, clock, sched = env
    key = await api.register()
    cues = [await new_cue(api, key, f"c{i}") for i in range(2)]
    for minute in range(3):
        clock.set(parse_datetime(f"2031-01-06T09:0{minute}:00.2Z"))
        assert await sched.tick() == 2
    assert sched._expected_n == 1
    for cue in cues:
        assert len(await executions(api, key, cue["id"])) == 3


async def test_on_time_slot_fires_with_catch_up_none(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c", catch_up="none")
    clock.set(parse_datetime("2031-01-06T09:00:00.5Z"))
    assert await sched.tick() == 1
    assert (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()[
        "next_run"
    ] == "2031-01-06T09:01:00Z"


async def test_one_time_cue_fires_once(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "once", schedule={"type": "once", "at": "2031-01-06T10:00:00Z"})
    clock.set(parse_datetime("2031-01-06T12:00:00Z"))  # late: still fires, once
    assert await sched.tick() == 1
    clock.advance(3600)
    assert await sched.tick() == 0
    detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["next_run"] is None and detail["status"] == "active" and detail["fired_count"] == 1
    # re-arming needs a new `at`
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    assert res.status_code == 200
    assert_error(
        await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "active"}),
        400,
        "invalid_schedule",
        "One-time cue has already fired; set a new schedule.at",
    )


async def test_paused_cue_never_fires_and_resume_does_not_replay(
    env: tuple[Api, FrozenClock, Scheduler],
) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c")
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    clock.set(parse_datetime("2031-01-06T09:10:30Z"))
    assert await sched.tick() == 0
    res = (await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "active"})).json()
    assert res["next_run"] == "2031-01-06T09:11:00Z"
    assert await sched.tick() == 0
    clock.set(parse_datetime("2031-01-06T09:11:00Z"))
    assert await sched.tick() == 1


async def test_deleted_cue_drops_its_due_entry(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c")
    p = api.rt.keys.cue_partition(cue["id"])
    await api.rt.store.redis.delete(api.rt.keys.cue(cue["id"]))  # as if deleted mid-pass
    clock.set(parse_datetime("2031-01-06T09:00:01Z"))
    assert await sched.tick() == 0
    assert await api.rt.store.redis.zscore(api.rt.keys.due(p), cue["id"]) is None


async def test_stray_due_entry_of_a_paused_cue_is_dropped(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    api, clock, sched = env
    key = await api.register()
    cue = await new_cue(api, key, "c")
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    due_key = api.rt.keys.due(api.rt.keys.cue_partition(cue["id"]))
    await api.rt.store.redis.zadd(due_key, {cue["id"]: 1})  # an entry a paused cue must not have
    clock.set(parse_datetime("2031-01-06T09:00:01Z"))
    assert await sched.tick() == 0
    assert await api.rt.store.redis.zscore(due_key, cue["id"]) is None
    assert await executions(api, key, cue["id"]) == []


async def test_unplannable_cue_backs_off_and_others_fire(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    """A cue whose stored schedule cannot be planned (here: a corrupted summary) neither stops
    the pass nor is retried every pass: its due time moves a minute on."""
    api, clock, sched = env
    key = await api.register()
    bad, good = await new_cue(api, key, "bad"), await new_cue(api, key, "good")
    store, keys = api.rt.store, api.rt.keys
    await store.redis.hset(keys.cue(bad["id"]), "sch", "recurring|No/Such_Zone|latest||* * * * *")
    clock.set(parse_datetime("2031-01-06T09:00:01Z"))
    assert await sched.tick() == 1
    assert [e["cue_id"] for e in await executions(api, key, good["id"])] == [good["id"]]
    assert await executions(api, key, bad["id"]) == []
    due = await store.redis.zscore(keys.due(keys.cue_partition(bad["id"])), bad["id"])
    assert due == clock.now_us() + PLAN_RETRY_US
    assert await sched.tick() == 0  # not retried before then


@pytest.mark.slow
async def test_two_schedulers_hundreds_of_cues_each_slot_once(
    env: tuple[Api, FrozenClock, Scheduler],
) -> None:
    api, clock, sched = env
    other = Scheduler(api.rt.store, clock, batch=37)
    key = await api.register()
    cues = [
        await new_cue(api, key, f"c{i}", transport="webhook", callback={"url": "http://127.0.0.1:9/h"})
        for i in range(300)
    ]
    for minute in range(3):
        clock.set(parse_datetime(f"2031-01-06T09:0{minute}:00.1Z"))
        created = await asyncio.gather(sched.tick(), other.tick(), sched.tick())
        assert sum(created) == 300
    res = (await api.request("GET", "/v1/executions?limit=1", key)).json()
    assert res["total"] == 900 and res["has_more"] is True
    # each cue has exactly its three slots; the outbox got one entry per execution
    for cue in cues[:20]:
        slots = sorted(e["scheduled_for"] for e in await executions(api, key, cue["id"]))
        assert slots == [f"2031-01-06T09:0{m}:00Z" for m in range(3)]
    outbox = sum(
        [await api.rt.store.redis.xlen(api.rt.keys.outbox(p)) for p in range(api.rt.keys.partitions)]
    )
    assert outbox == 900


async def test_executions_list_filters_and_isolation(env: tuple[Api, FrozenClock, Scheduler]) -> None:
    api, clock, sched = env
    key = await api.register()
    other = await api.register()
    a = await new_cue(api, key, "a")
    b = await new_cue(api, key, "b")
    clock.set(parse_datetime("2031-01-06T09:00:01Z"))
    await sched.tick()
    everything = (await api.request("GET", "/v1/executions", key)).json()
    assert everything["total"] == 2 and everything["limit"] == 20 and everything["offset"] == 0
    assert everything["has_more"] is False and everything["oldest_claimed_at"] is None
    assert (await api.request("GET", f"/v1/executions?cue_id={a['id']}", key)).json()["total"] == 1
    assert (await api.request("GET", "/v1/executions?status=pending", key)).json()["total"] == 2
    assert (await api.request("GET", "/v1/executions?status__in=success,,failed", key)).json()["total"] == 0
    assert (await api.request("GET", "/v1/executions?status__in=pending,failed", key)).json()["total"] == 2
    assert (await api.request("GET", "/v1/executions?triggered_by=scheduled", key)).json()["total"] == 2
    assert (await api.request("GET", "/v1/executions?triggered_by=manual_fire", key)).json()["total"] == 0
    assert (await api.request("GET", "/v1/executions?worker_id=w1", key)).json()["total"] == 0
    page = (await api.request("GET", "/v1/executions?limit=1&offset=1", key)).json()
    assert len(page["executions"]) == 1 and page["has_more"] is False
    assert_error(
        await api.request("GET", "/v1/executions?status=pending&status__in=failed", key),
        400,
        "conflicting_filters",
        "Pass either `status` or `status__in`, not both.",
    )
    assert_error(
        await api.request("GET", "/v1/executions?status__in=,", key),
        400,
        "invalid_status_in",
        "`status__in` must contain at least one status.",
    )
    for q in ("limit=0", "limit=101", "offset=-1"):
        assert_error(await api.request("GET", f"/v1/executions?{q}", key), 422, "validation_error")
    # another account sees nothing and gets 404s
    assert (await api.request("GET", "/v1/executions", other)).json()["total"] == 0
    assert (await api.request("GET", f"/v1/executions?cue_id={b['id']}", other)).json()["total"] == 0
    eid = everything["executions"][0]["id"]
    assert_error(
        await api.request("GET", f"/v1/executions/{eid}", other),
        404,
        "execution_not_found",
        "Execution not found",
    )
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-0000000000ff", eid.upper(), "x" * 300):
        assert_error(await api.request("GET", f"/v1/executions/{bad}", key), 404, "execution_not_found")
