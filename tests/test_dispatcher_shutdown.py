"""Graceful shutdown: leased attempts not yet sent are released at once (no attempt
counted, immediately available to another dispatcher); requests already sent may finish
within the grace period, then they are cut off and released too."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import Any

import pytest
from redis.crc import key_slot

from cuefast.clock import SystemClock
from cuefast.config import Settings
from cuefast.engine.dispatcher import QUEUED, Dispatcher
from cuefast.engine.scheduler import Scheduler
from cuefast.store import Store
from cuefast.store.delivery import Lease, ReleasedAttempt
from cuefast.store.scripts import Script, Scripts
from cuefast.times import parse_datetime
from tests.conftest import Api
from tests.procs import ROOT, process_env
from tests.test_dispatcher import Receiver, drain, env, only_execution, webhook_cue
from tests.test_dispatcher_hosts import statuses, until


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


__all__ = ["env"]


async def test_release_restores_status_and_only_for_the_lease_holder(
    env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, clock, sched, dispatcher, receiver = env
    store: Store = api.rt.store
    keys = api.rt.keys
    calls: list[list[str]] = []
    original = Scripts.run

    async def spy(self: Scripts, script: Script, ks: Any, args: Any) -> Any:
        if script.name == "delivery_release":
            calls.append(list(ks))
        return await original(self, script, ks, args)

    monkeypatch.setattr(Scripts, "run", spy)
    key = await api.register()
    receiver.mode = "500"
    first = await webhook_cue(api, key, receiver.url, name="first")
    retried = await webhook_cue(api, key, receiver.url, name="retried")
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    for cue in (first, retried):
        await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    # "retried" has one failed attempt behind it and is due again (retry_ready)
    retried_eid = (await only_execution(api, key, retried["id"]))["id"]
    entries = await store.delivery.read("c1", 10, 50)
    (p, entry, eid) = next(e for e in entries if e[2] == retried_eid)
    assert (await dispatcher.deliver(p, entry, eid)) == "retrying"
    clock.advance(60)
    await sched.tick()
    entries = [e for e in entries if e[2] != retried_eid] + await store.delivery.read("c1", 10, 50)
    assert len(entries) == 2
    lease = 300_000_000  # max(CUEFAST_WEBHOOK_STALE_SECONDS = 300 s, 30 s + 60 s)
    now = clock.now_us()
    leased = {}
    for p, entry, eid in entries:
        (row,) = (await store.delivery.start({p: [eid]}, now, timeout_s=30, stale_s=300))[p]
        assert isinstance(row, Lease) and row.lease_until == now + lease
        leased[eid] = (p, entry)
    before = {e["id"]: e for e in await statuses(api, key, {first["id"], retried["id"]})}
    assert {e["status"] for e in before.values()} == {"delivering"}
    # a release that does not hold the lease (another dispatcher took it over) changes nothing
    for eid, (p, entry) in leased.items():
        assert await store.delivery.release(p, [ReleasedAttempt(eid, entry, now + lease - 1, 0)], now) == [
            None
        ]
    assert {e["status"] for e in await statuses(api, key, {first["id"], retried["id"]})} == {"delivering"}
    clock.advance(1)
    for eid, (p, entry) in leased.items():
        assert await store.delivery.release(
            p, [ReleasedAttempt(eid, entry, now + lease, 0)], clock.now_us()
        ) in (
            ["pending"],
            ["retry_ready"],
        )
    after = {e["id"]: e for e in await statuses(api, key, {first["id"], retried["id"]})}
    e_first = next(e for e in after.values() if e["cue_id"] == first["id"])
    e_retried = next(e for e in after.values() if e["cue_id"] == retried["id"])
    assert e_first["status"] == "pending" and e_first["attempts"] == 0
    assert e_first["started_at"] is None and e_first["last_attempt_at"] is None
    assert e_retried["status"] == "retry_ready" and e_retried["attempts"] == 1
    assert e_retried["started_at"] == before[e_retried["id"]]["started_at"]
    assert e_first["error_message"] is None
    for q in range(keys.partitions):
        assert await store.redis.zcard(keys.leases(q)) == 0
    # the old entries are gone, fresh ones are there for any consumer at once
    receiver.mode = "ok"
    assert await drain(dispatcher) == ["success", "success"]
    res = {e["cue_id"]: e for e in await statuses(api, key, {first["id"], retried["id"]})}
    assert res[first["id"]]["status"] == "success" and res[first["id"]]["attempts"] == 1
    assert res[retried["id"]]["status"] == "success" and res[retried["id"]]["attempts"] == 2
    assert calls and all(len({key_slot(k.encode()) for k in ks}) == 1 for ks in calls)


@pytest.mark.slow
async def test_stop_releases_queued_and_waiting_attempts_and_awaits_sent_ones(env: Any) -> None:
    api, clock, sched, _, _ = env
    slow = [Receiver("127.0.0.2"), Receiver("127.0.0.3")]
    for r in slow:
        r.mode = "block"
        await r.start()
    settings = api.rt.settings.replace(delivery_shutdown_grace_seconds=30)
    first = Dispatcher(api.rt.store, settings, clock, api.rt.webhooks, concurrency=8, per_host=2)
    first.host_wait_s = 60  # nothing is handed back during the test: all of it is released by stop
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        key = await api.register()
        ids = set()
        for r in slow:
            ids |= {(await webhook_cue(api, key, r.url, name=f"{r.host}-{i}"))["id"] for i in range(8)}
        clock.set(parse_datetime("2031-01-06T09:00:00Z"))
        assert await sched.tick() == 16
        task = asyncio.create_task(first.run(stop, block_ms=50))

        async def saturated() -> bool:  # in memory: about `concurrency` attempts, no more
            return sum(len(r.requests) for r in slow) == 4 and first._room_left() < first._low_water()

        await until(saturated, 10, "4 requests in flight and the rest of the room queued")
        queued = first._parked
        assert len(first._tasks) == 4 and 1 <= queued <= 12
        assert all(a.phase == QUEUED for h in first._hosts.values() for a in h.queue)
        stop.set()

        async def released() -> bool:
            rows = await statuses(api, key, ids)
            return sum(e["status"] == "pending" for e in rows) == 12

        await until(released, 5, "the queued attempts to be released (the others were never read)")
        rows = await statuses(api, key, ids)
        assert sorted(e["status"] for e in rows) == ["delivering"] * 4 + ["pending"] * 12
        assert all(e["attempts"] == 0 for e in rows)
        keys = api.rt.keys
        leases = sum([await api.rt.store.redis.zcard(keys.leases(p)) for p in range(keys.partitions)])
        assert leases == 4
        assert not task.done()  # still waiting for the 4 sent requests (grace 30 s)
        # another dispatcher takes the released work at once (no stale window, no XAUTOCLAIM)
        for r in slow:
            r.mode = "ok"
        second = Dispatcher(api.rt.store, api.rt.settings, clock, api.rt.webhooks)
        await second.start()
        try:
            got = await drain(second)
        finally:
            await second.close()
        assert got == ["success"] * 12
        # the sent requests finish within the grace period and are recorded normally
        for r in slow:
            r.unblock.set()
        await asyncio.wait_for(task, 10)
    finally:
        stop.set()
        for r in slow:
            r.unblock.set()
        if task is not None:
            await asyncio.wait_for(task, 35)
        for r in slow:
            assert r.runner is not None
            await r.runner.cleanup()
    rows = await statuses(api, key, ids)
    assert [e["status"] for e in rows] == ["success"] * 16
    assert all(e["attempts"] == 1 for e in rows)
    assert sum(len(r.requests) for r in slow) == 16  # nothing was sent twice


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_sigterm_releases_work_to_another_dispatcher_process(api: Api, settings: Settings) -> None:
    """A real ``cuefast dispatcher`` gets SIGTERM while a slow host holds its attempts: the
    unsent ones are released at once, the sent ones after the grace period, and a second
    process delivers everything long before the stale window (330 s) would."""
    receiver = Receiver("127.0.0.2")
    receiver.mode = "block"
    await receiver.start()
    env = process_env(settings, CUEFAST_DELIVERY_PER_HOST="2", CUEFAST_DELIVERY_SHUTDOWN_GRACE_SECONDS="1")
    stop = asyncio.Event()
    scheduler = asyncio.create_task(Scheduler(api.rt.store, SystemClock()).run(stop))  # moves hand-backs
    first = subprocess.Popen([sys.executable, "-m", "cuefast", "dispatcher"], env=env, cwd=ROOT)
    second: subprocess.Popen[bytes] | None = None
    try:
        key = await api.register()
        cue_ids, eids = set(), []
        for i in range(10):
            cue = await webhook_cue(
                api, key, receiver.url, name=f"c{i}", schedule={"type": "recurring", "cron": "0 0 1 1 *"}
            )
            cue_ids.add(cue["id"])
            eids.append((await api.request("POST", f"/v1/cues/{cue['id']}/fire", key, json={})).json()["id"])

        async def two_in_flight() -> bool:
            return len(receiver.requests) == 2

        await until(two_in_flight, 30, "the first dispatcher to have 2 requests in flight")
        first.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, first.wait, 20) == 0
        rows = await statuses(api, key, cue_ids)
        assert all(e["status"] == "pending" and e["attempts"] == 0 for e in rows), rows
        receiver.mode = "ok"
        receiver.unblock.set()
        second = subprocess.Popen([sys.executable, "-m", "cuefast", "dispatcher"], env=env, cwd=ROOT)

        async def all_delivered() -> bool:
            rows = await statuses(api, key, cue_ids)
            return all(e["status"] == "success" for e in rows)

        await until(all_delivered, 30, "the second dispatcher to deliver everything")
        rows = await statuses(api, key, cue_ids)
        assert all(e["attempts"] == 1 and e["error_message"] is None for e in rows)
        bodies = [json.loads(r["body"]) for r in receiver.requests]
        assert {b["execution_id"] for b in bodies} == set(eids)
        assert all(b["attempt"] == 1 for b in bodies)
        assert len(bodies) == 12  # the 2 cut off were sent again (at least once), the rest once
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        stop.set()
        await scheduler
        receiver.unblock.set()
        assert receiver.runner is not None
        await receiver.runner.cleanup()
