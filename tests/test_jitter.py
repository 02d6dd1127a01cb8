"""Jitter (issue 17 item 2): ``schedule.jitter_seconds`` spreads a cue's fires by a deterministic
offset per (cue, slot); ``scheduled_for`` stays the slot, the execution's ``fire_at`` is when it
is delivered (webhook) or claimable (worker). Real Redis (one server and the Redis Cluster,
marker ``cluster``), a real webhook receiver, the real claim API, a frozen clock."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cuefast import cron
from cuefast import metrics as m
from cuefast.api import create_app
from cuefast.api.app import create_litestar
from cuefast.config import Settings, load_settings
from cuefast.dashboard import words
from cuefast.engine.scheduler import Scheduler
from cuefast.models import CueConfig, Schedule, schedule_summary, summary_schedule
from cuefast.runtime import Runtime
from cuefast.times import fmt_z, parse_datetime
from tests.api.test_dashboard import sign_in
from tests.api.worker_helpers import make_env
from tests.conftest import assert_error
from tests.test_dispatcher import T0, drain, env, only_execution, webhook_cue  # noqa: F401  (fixture)

SLOT = parse_datetime("2031-01-06T09:00:00Z")  # the first slot of "* * * * *" after T0
LATENESS_SUM = m.LATENESS.name + "\t{}\ts"


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


# ---- the offset: a pure function, uniform over the span -----------------------------------


def chi_square(values: list[int], span: int, buckets: int) -> float:
    counts = [0] * buckets
    for v in values:
        counts[v * buckets // span] += 1
    expected = len(values) / buckets
    return sum((c - expected) ** 2 / expected for c in counts)


CHI2_20_BUCKETS_P001 = 43.82  # χ² critical value, 19 degrees of freedom, p = 0.001


def test_offset_is_uniform_over_the_span_across_slots() -> None:
    """10,000 slots of one cue (every minute from a fixed instant): the offsets stay inside
    [0, span) and fill 20 equal buckets as a uniform draw would (χ², p = 0.001)."""
    span = 60 * 1_000_000
    values = [cron.jitter_offset_us("cue_pbafy2oo0jo9", SLOT + i * 60_000_000, 60) for i in range(10_000)]
    assert all(0 <= v < span for v in values)
    assert chi_square(values, span, 20) < CHI2_20_BUCKETS_P001
    assert len(set(values)) > 9_990  # µs resolution: almost no two fires share an instant


def test_offset_is_uniform_across_cues_of_one_slot() -> None:
    """The burst case: 10,000 cues on one slot spread over the span (χ², p = 0.001), and no
    100-ms window of a 60-s span holds more than 3× its share."""
    span = 60 * 1_000_000
    values = [cron.jitter_offset_us(f"cue_burst{i:07d}", SLOT, 60) for i in range(10_000)]
    assert all(0 <= v < span for v in values)
    assert chi_square(values, span, 20) < CHI2_20_BUCKETS_P001
    per_100ms = [0] * 600
    for v in values:
        per_100ms[v // 100_000] += 1
    assert max(per_100ms) <= 3 * 10_000 // 600


def test_offset_is_stable_and_pure() -> None:
    """The same inputs give the same offset in any process (a known answer: BLAKE2b, not
    Python's randomised ``hash``), and each input matters."""
    first = cron.jitter_offset_us("cue_pbafy2oo0jo9", SLOT, 3600)
    assert first == cron.jitter_offset_us("cue_pbafy2oo0jo9", SLOT, 3600) == KNOWN_OFFSET
    assert cron.jitter_offset_us("cue_pbafy2oo0jo8", SLOT, 3600) != first
    assert cron.jitter_offset_us("cue_pbafy2oo0jo9", SLOT + 60_000_000, 3600) != first
    assert cron.jitter_offset_us("cue_pbafy2oo0jo9", SLOT, 0) == 0
    assert 0 <= cron.jitter_offset_us("cue_pbafy2oo0jo9", SLOT, 1) < 1_000_000


KNOWN_OFFSET = 1_447_864_879  # a change of the function is a change of every fire


def test_summary_carries_jitter_only_when_on() -> None:
    """A cue without jitter keeps its five-part ``sch``; jitter adds a sixth part, read back."""
    off = CueConfig(schedule=Schedule(type="recurring", cron="0 9 * * *"))
    assert schedule_summary(off) == "recurring|UTC|latest||0 9 * * *"
    on = CueConfig(schedule=Schedule(type="recurring", cron="0 9 * * *", jitter_seconds=60))
    assert schedule_summary(on) == "recurring|UTC|latest||0 9 * * *|60"
    assert summary_schedule(schedule_summary(on))[0].jitter_seconds == 60
    assert summary_schedule(schedule_summary(off))[0].jitter_seconds == 0


# ---- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "msg"),
    [
        (-1, "Input should be greater than or equal to 0"),
        (3601, "Input should be less than or equal to 3600"),
        ("60", "Input should be a valid integer"),
        (1.5, "Input should be a valid integer"),
        (True, "Input should be a valid integer"),
        ([60], "Input should be a valid integer"),
    ],
)
async def test_jitter_out_of_range_or_wrong_type_is_422(env: Any, value: Any, msg: str) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    body = {"name": "j", "schedule": {"type": "recurring", "cron": "* * * * *", "jitter_seconds": value},
            "callback": {"url": receiver.url}}  # fmt: skip
    err = assert_error(await api.request("POST", "/v1/cues", key, json=body), 422, "validation_error")
    assert err["details"][0]["field"] == "body.schedule.jitter_seconds", err
    assert err["message"] == f"body.schedule.jitter_seconds: {msg}"
    assert (await api.request("GET", "/v1/cues", key)).json()["total"] == 0  # nothing written
    cue = await webhook_cue(api, key, receiver.url)
    patch = {"schedule": {"jitter_seconds": value}}
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json=patch)
    assert assert_error(res, 422, "validation_error")["details"][0]["field"] == "body.schedule.jitter_seconds"


async def test_jitter_on_the_cue_create_patch_and_clear(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    plain = await webhook_cue(api, key, receiver.url, name="plain")
    assert "jitter_seconds" not in plain["schedule"]  # not sent: the cue object as before
    sched = {"type": "recurring", "cron": "* * * * *", "jitter_seconds": 3600}
    cue = await webhook_cue(api, key, receiver.url, name="spread", schedule=sched)
    assert cue["schedule"] == dict(sched, timezone="UTC")
    assert cue["next_run"] == "2031-01-06T09:00:00Z"  # next_run is the slot, not its fire time
    path = f"/v1/cues/{cue['id']}"
    res = await api.request("PATCH", path, key, json={"schedule": {"timezone": "Europe/Paris"}})
    assert res.status_code == 200 and res.json()["schedule"]["jitter_seconds"] == 3600  # kept
    res = await api.request("PATCH", path, key, json={"schedule": {"jitter_seconds": None}})
    assert res.json()["schedule"]["jitter_seconds"] == 3600  # null: not sent
    res = await api.request("PATCH", path, key, json={"schedule": {"jitter_seconds": 0}})
    assert res.status_code == 200 and "jitter_seconds" not in res.json()["schedule"]
    got = (await api.request("GET", path, key)).json()
    assert "jitter_seconds" not in got["schedule"]
    res = await api.request("PATCH", path, key, json={"schedule": {"jitter_seconds": 5}})
    assert (await api.request("GET", path, key)).json()["schedule"]["jitter_seconds"] == 5


# ---- webhook: not sent before fire_at ------------------------------------------------------


async def test_webhook_waits_for_fire_at(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    sch = {"type": "recurring", "cron": "* * * * *", "jitter_seconds": 60}
    cue = await webhook_cue(api, key, receiver.url, schedule=sch)
    plain = await webhook_cue(api, key, receiver.url, name="plain")
    offset = cron.jitter_offset_us(cue["id"], SLOT, 60)
    assert offset > 0
    fire_at = SLOT + offset
    clock.set(SLOT)
    assert await sched.tick() == 2
    e = await only_execution(api, key, cue["id"])
    assert e["scheduled_for"] == "2031-01-06T09:00:00Z" and e["fire_at"] == fmt_z(fire_at)
    assert e["status"] == "pending"
    assert "fire_at" not in await only_execution(api, key, plain["id"])  # no jitter: no key
    assert await drain(dispatcher) == ["success"]  # only the plain cue's
    assert len(receiver.requests) == 1
    dispatcher.metrics.take()
    clock.set(fire_at - 1)
    await sched.tick()
    assert await drain(dispatcher) == []
    clock.set(fire_at)
    await sched.tick()
    assert await drain(dispatcher) == ["success"]
    req = receiver.requests[-1]
    assert json.loads(req["body"])["execution_id"] == e["id"]
    assert req["headers"]["X-CueAPI-Scheduled-For"] == "2031-01-06T09:00:00+00:00"  # the slot
    done = await only_execution(api, key, cue["id"])
    assert done["status"] == "success" and done["fire_at"] == fmt_z(fire_at)


async def test_webhook_lateness_is_measured_from_fire_at(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    sch = {"type": "recurring", "cron": "* * * * *", "jitter_seconds": 60}
    cue = await webhook_cue(api, key, receiver.url, schedule=sch)
    fire_at = SLOT + cron.jitter_offset_us(cue["id"], SLOT, 60)
    clock.set(SLOT)
    await sched.tick()
    clock.set(fire_at + 250_000)  # delivered 0.25 s after its fire time
    await sched.tick()
    dispatcher.metrics.take()
    assert await drain(dispatcher) == ["success"]
    assert dispatcher.metrics.take()[LATENESS_SUM.format("webhook")] == 250_000


async def test_manual_fire_is_not_jittered(env: Any) -> None:
    api, _, _, dispatcher, receiver = env
    key = await api.register()
    sch = {"type": "recurring", "cron": "* * * * *", "jitter_seconds": 3600}
    cue = await webhook_cue(api, key, receiver.url, schedule=sch)
    res = await api.request("POST", f"/v1/cues/{cue['id']}/fire", key, json={})
    assert res.status_code == 200, res.text
    assert await drain(dispatcher) == ["success"]  # at once
    e = await only_execution(api, key, cue["id"])
    assert e["triggered_by"] == "manual_fire" and "fire_at" not in e


async def test_a_second_scheduler_plans_the_same_fire_at(env: Any) -> None:
    """Two schedulers (a restart, or another process) give a slot one execution and one
    fire_at: the offset is a function of (cue, slot, jitter), not of who planned it."""
    api, clock, sched, _, receiver = env
    key = await api.register()
    sch = {"type": "recurring", "cron": "* * * * *", "jitter_seconds": 600}
    cue = await webhook_cue(api, key, receiver.url, schedule=sch)
    clock.set(SLOT)
    other = Scheduler(sched.store, clock)
    assert await other.tick() + await sched.tick() == 1
    e = await only_execution(api, key, cue["id"])
    assert e["fire_at"] == fmt_z(SLOT + cron.jitter_offset_us(cue["id"], SLOT, 600))


# ---- worker: not claimable before fire_at --------------------------------------------------


async def test_worker_cannot_claim_before_fire_at(settings: Settings) -> None:
    async with make_env(settings) as w:
        key = await w.api.register()
        t0 = w.clock.now_us()
        slot = (t0 // 60_000_000 + 1) * 60_000_000
        sch = {"type": "recurring", "cron": "* * * * *", "jitter_seconds": 120}
        cue = await w.cue(key, "jw", schedule=sch)
        fire_at = slot + cron.jitter_offset_us(cue["id"], slot, 120)
        w.clock.set(slot)
        await w.sched.tick()
        items = (await w.api.request("GET", f"/v1/executions?cue_id={cue['id']}", key)).json()["executions"]
        assert len(items) == 1
        eid = items[0]["id"]
        assert items[0]["scheduled_for"] == fmt_z(slot) and items[0]["fire_at"] == fmt_z(fire_at)
        assert await w.claimable(key) == []
        assert_error(await w.claim(key, eid), 409, "claim_failed")  # by id
        assert_error(
            await w.post(key, "/v1/executions/claim", {"worker_id": "w1"}), 409, "claim_failed"
        )  # next
        batch = await w.post(key, "/v1/worker/claim", {"worker_id": "w1"})
        assert batch.status_code == 200 and batch.json()["executions"] == []  # batch pull
        w.clock.set(fire_at - 1)
        assert await w.claimable(key) == []
        w.clock.set(fire_at)
        listed = await w.claimable(key)
        assert [x["execution_id"] for x in listed] == [eid]
        w.rt.metrics.take()
        w.clock.set(fire_at + 100_000)
        res = await w.claim(key, eid)
        assert res.status_code == 200, res.text
        assert w.rt.metrics.take()[LATENESS_SUM.format("worker")] == 100_000
        assert (await w.get(key, eid))["status"] == "delivering"


# ---- dashboard -----------------------------------------------------------------------------


async def test_dashboard_shows_the_jitter_and_fire_at(env: Any) -> None:
    api, clock, sched, _, receiver = env
    key = await api.register()
    sch = {"type": "recurring", "cron": "* * * * *", "jitter_seconds": 45}
    cue = await webhook_cue(api, key, receiver.url, schedule=sch)
    plain = await webhook_cue(api, key, receiver.url, name="plain")
    clock.set(SLOT)
    await sched.tick()
    e = await only_execution(api, key, cue["id"])
    p = await only_execution(api, key, plain["id"])
    transport = httpx.ASGITransport(app=create_app(api.rt, manage_runtime=False))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://cuefast.test") as web:
        assert (await sign_in(web, key)).status_code == 303
        page = (await web.get(f"/dashboard/cues/{cue['id']}")).text
        assert "<dt>Jitter</dt><dd>each fire up to 45 s after its slot" in page
        assert "<dt>Jitter</dt>" not in (await web.get(f"/dashboard/cues/{plain['id']}")).text
        page = (await web.get(f"/dashboard/executions/{e['id']}")).text
        at = words.in_zone(e["fire_at"], "UTC")
        assert f"<dt>Fires at</dt><dd>{at} (jitter)</dd>" in page
        assert "<dt>Fires at</dt>" not in (await web.get(f"/dashboard/executions/{p['id']}")).text


def test_openapi_declares_jitter_and_fire_at() -> None:
    rt = Runtime(load_settings({}, redis_url="redis://127.0.0.1:1/0", database_url="x"))
    schemas = create_litestar(rt, manage_runtime=False).openapi_schema.to_schema()["components"]["schemas"]
    assert schemas["ScheduleInput"]["properties"]["jitter_seconds"]["maximum"] == 3600
    assert "jitter_seconds" in schemas["ScheduleChange"]["properties"]
    assert "jitter_seconds" in schemas["Schedule"]["properties"]
    assert "fire_at" in schemas["Execution"]["properties"]
    assert "fire_at" not in schemas["Execution"].get("required", [])
