"""The overlap policy (lib/overlap.lua) in the scripts that decide and settle it, one by one against
real Redis under the frozen NOW: schedule_materialize (the decision), and the scripts that end a
running execution. Arrange keys → call → assert the answer and the state."""

from __future__ import annotations

import pytest

from cuefast.ids import scheduled_execution_id
from cuefast.store import Status, Store
from cuefast.store.delivery import Finished
from cuefast.store.outcomes import Outcome
from cuefast.store.schedule import Materialized
from tests.lua.indexes import listed
from tests.lua.seed import ACCT, CUE, NOW, S, dirty, put_cue, put_execution, stream_ids
from tests.lua.test_deliver_scripts import arrange, lease_of, result, start
from tests.lua.test_outcome_scripts import claimed_worker_execution
from tests.lua.test_schedule_scripts import ONCE, line

MIN = 60 * S
SKIPPED = "Skipped: the previous execution was still running (overlap: skip)"


async def claimable(store: Store, p: int) -> list[str]:
    return [str(m) for m in await store.redis.zrange(store.keys.work(p, ACCT), 0, -1)]


# ---- schedule_materialize: skip -----------------------------------------------------------------
@pytest.mark.parametrize("tr", ["webhook", "worker"])
async def test_skip_while_the_previous_runs_records_a_skipped_execution(store: Store, tr: str) -> None:
    """The previous execution ('rx') is delivering: the new slot is created skipped — indexed
    (filterable by status), not queued, not claimable — and 'rx' stays the running one."""
    k = store.keys
    p, prev = await put_execution(store, tr=tr, st="delivering")
    await put_cue(store, nr=NOW, tr=tr, ov="skip", rx=prev, fc=1)
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert res == Materialized(1, 0, {})
    eid = scheduled_execution_id(CUE, NOW, p)
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["st"], h["em"], h["ua"], h["sf"]) == ("skipped", SKIPPED, str(NOW), str(NOW))
    assert await listed(store, ACCT, eid, CUE) == NOW
    assert await store.redis.hget(k.ix_cue(CUE), "skipped||") == "1"  # counted, no scan
    assert await store.redis.xlen(k.outbox(p)) == 0
    assert await claimable(store, p) == []
    assert await store.redis.zcard(k.unclaimed(p)) == 0
    cue = await store.redis.hgetall(k.cue(CUE))
    assert (cue["rx"], cue["fc"], cue["nr"]) == (prev, "2", str(NOW + MIN))


@pytest.mark.parametrize("final", ["success", "failed", "missed", "outcome_timeout", "skipped", "cancelled"])
async def test_skip_after_a_final_execution_runs_the_slot(store: Store, final: str) -> None:
    k = store.keys
    p, prev = await put_execution(store, st=final)
    await put_cue(store, nr=NOW, ov="skip", rx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    eid = scheduled_execution_id(CUE, NOW, p)
    assert await store.redis.hget(k.execution(p, eid), "st") == "pending"
    assert await stream_ids(store, k.outbox(p)) == [eid]
    assert await store.redis.hget(k.cue(CUE), "rx") == eid


@pytest.mark.parametrize("running", ["pending", "delivering", "retrying", "retry_ready", "pending_outcome"])
async def test_skip_counts_every_unfinished_status_as_running(store: Store, running: str) -> None:
    """pending_outcome (a webhook delivered with an armed outcome deadline) still runs: its
    outcome is expected."""
    k = store.keys
    p, prev = await put_execution(store, st=running)
    await put_cue(store, nr=NOW, ov="skip", rx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert await store.redis.hget(k.execution(p, scheduled_execution_id(CUE, NOW, p)), "st") == "skipped"


async def test_skip_when_the_previous_execution_is_gone_runs_the_slot(store: Store) -> None:
    """An 'rx' trimmed from Redis by retention was final."""
    k = store.keys
    p = await put_cue(store, nr=NOW, ov="skip", rx="00000000-0000-4000-8000-000000000000")
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert await store.redis.hget(k.execution(p, scheduled_execution_id(CUE, NOW, p)), "st") == "pending"


@pytest.mark.parametrize("tr", ["webhook", "worker"])
async def test_skip_catch_up_runs_only_the_first_of_a_pass(store: Store, tr: str) -> None:
    """catch_up all under skip: three slots in one pass — the first runs, the others find it
    running and are skipped."""
    k = store.keys
    p = await put_cue(store, nr=NOW - 2 * MIN, tr=tr, ov="skip")
    slots = [NOW - 2 * MIN, NOW - MIN, NOW]
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW - 2 * MIN, NOW + MIN, slots)])
    assert res == Materialized(3, 0, {})
    ids = [scheduled_execution_id(CUE, s, p) for s in slots]
    sts = [await store.redis.hget(k.execution(p, e), "st") for e in ids]
    assert sts == ["pending", "skipped", "skipped"]
    if tr == "webhook":
        assert await stream_ids(store, k.outbox(p)) == ids[:1]
    else:
        assert await claimable(store, p) == ids[:1]
    assert await store.redis.hget(k.cue(CUE), "rx") == ids[0]


async def test_allow_keeps_todays_behaviour(store: Store) -> None:
    """No policy (absent or "allow"): every slot runs and the cue gets no 'rx'."""
    k = store.keys
    p, prev = await put_execution(store, st="delivering")
    await put_cue(store, nr=NOW, ov="allow", rx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    eid = scheduled_execution_id(CUE, NOW, p)
    assert await store.redis.hget(k.execution(p, eid), "st") == "pending"
    assert await store.redis.hget(k.cue(CUE), "rx") == prev


async def test_skip_of_a_one_time_slot_fails_the_cue(store: Store) -> None:
    """A re-armed one-time cue whose slot comes due while its previous run runs: the slot is
    skipped and the cue, left without a run, becomes failed."""
    k = store.keys
    p, prev = await put_execution(store, st="delivering")
    await put_cue(store, nr=NOW, sch=ONCE, ov="skip", rx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, None, [NOW], sch=ONCE)])
    assert await store.redis.hget(k.execution(p, scheduled_execution_id(CUE, NOW, p)), "st") == "skipped"
    assert await store.redis.hget(k.cue(CUE), "status") == "failed"


async def test_skip_does_not_apply_to_blocked_slots(store: Store) -> None:
    """Past the monthly limit the slot is created failed as today (already final)."""
    k = store.keys
    p, prev = await put_execution(store, st="delivering")
    await put_cue(store, nr=NOW, ov="skip", rx=prev)
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW], blocked=True)])
    assert res == Materialized(1, 0, {ACCT: 1})
    assert await store.redis.hget(k.execution(p, scheduled_execution_id(CUE, NOW, p)), "st") == "failed"


# ---- schedule_materialize: cancel_previous ------------------------------------------------------
CANCELLED = "Cancelled: a later slot came due (overlap: cancel_previous)"


async def test_cancel_previous_ends_a_claimed_worker_execution_and_runs_the_slot(store: Store) -> None:
    """The claimed one becomes cancelled (final; out of the deadline zset; its claim lease left
    for the holder's fenced calls), the new slot is claimable and becomes 'rx'."""
    k = store.keys
    p, prev = await claimed_worker_execution(store)
    await put_cue(store, nr=NOW, tr="worker", ov="cancel_previous", rx=prev)
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert res == Materialized(1, 0, {})
    h = await store.redis.hgetall(k.execution(p, prev))
    assert (h["st"], h["em"], h["ua"], h["cw"]) == ("cancelled", CANCELLED, str(NOW), "w1")
    assert await store.redis.zscore(k.deadlines(p), prev) is None
    assert await store.redis.hget(k.ix_cue(CUE), "cancelled||") == "1"
    eid = scheduled_execution_id(CUE, NOW, p)
    assert await store.redis.hget(k.execution(p, eid), "st") == "pending"
    assert await claimable(store, p) == [eid]
    assert await store.redis.hget(k.cue(CUE), "rx") == eid
    assert f"exec:{prev}" in await dirty(store, k.part(p))


async def test_cancel_previous_takes_a_waiting_worker_execution_off_the_claimable_indexes(
    store: Store,
) -> None:
    k = store.keys
    p, prev = await put_execution(store, tr="worker", st="pending", tk="t")
    for key in (k.work(p, ACCT), k.work_filtered(p, ACCT, "t", None), k.unclaimed(p)):
        await store.redis.zadd(key, {prev: NOW - MIN})
    await put_cue(store, nr=NOW, tr="worker", ov="cancel_previous", rx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert await store.redis.hget(k.execution(p, prev), "st") == "cancelled"
    assert await store.redis.zscore(k.work_filtered(p, ACCT, "t", None), prev) is None
    assert await store.redis.zscore(k.unclaimed(p), prev) is None
    assert await claimable(store, p) == [scheduled_execution_id(CUE, NOW, p)]


async def test_cancel_previous_takes_a_retrying_webhook_off_the_retry_zset(store: Store) -> None:
    k = store.keys
    p, prev = await put_execution(store, st="retrying", nxr=NOW + MIN)
    await store.redis.zadd(k.retries(p), {prev: NOW + MIN})
    await put_cue(store, nr=NOW, ov="cancel_previous", rx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    h = await store.redis.hgetall(k.execution(p, prev))
    assert h["st"] == "cancelled" and "nxr" not in h
    assert await store.redis.zcard(k.retries(p)) == 0
    assert await stream_ids(store, k.outbox(p)) == [scheduled_execution_id(CUE, NOW, p)]


async def test_cancel_previous_leaves_a_final_execution_alone(store: Store) -> None:
    k = store.keys
    p, prev = await put_execution(store, st="success")
    await put_cue(store, nr=NOW, ov="cancel_previous", rx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert await store.redis.hget(k.execution(p, prev), "st") == "success"


@pytest.mark.parametrize("tr", ["webhook", "worker"])
async def test_cancel_previous_catch_up_runs_only_the_last_of_a_pass(store: Store, tr: str) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW - 2 * MIN, tr=tr, ov="cancel_previous")
    slots = [NOW - 2 * MIN, NOW - MIN, NOW]
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW - 2 * MIN, NOW + MIN, slots)])
    ids = [scheduled_execution_id(CUE, s, p) for s in slots]
    assert [await store.redis.hget(k.execution(p, e), "st") for e in ids] == [
        "cancelled",
        "cancelled",
        "pending",
    ]
    if tr == "webhook":
        assert await stream_ids(store, k.outbox(p)) == ids[2:]
    else:
        assert await claimable(store, p) == ids[2:]
    assert await store.redis.hget(k.cue(CUE), "rx") == ids[2]


# ---- the scripts a cancelled execution meets afterwards -----------------------------------------
async def test_claims_heartbeat_tells_the_holder_of_a_cancelled_execution(store: Store) -> None:
    k = store.keys
    p, eid = await claimed_worker_execution(store)
    await store.redis.hset(k.execution(p, eid), "st", "cancelled")
    await store.executions.reindex([eid])
    (beat,) = await store.claims.heartbeat(p, ACCT, "w1", 60 * S, now_us=NOW, ids=[eid])
    assert (beat.status, beat.lease_until, beat.cancelled) == (Status.WRONG_STATE, None, True)
    await store.redis.hset(k.execution(p, eid), "st", "success")
    await store.executions.reindex([eid])
    (beat,) = await store.claims.heartbeat(p, ACCT, "w1", 60 * S, now_us=NOW, ids=[eid])
    assert (beat.status, beat.cancelled) == (Status.WRONG_STATE, False)


async def test_outcomes_record_on_a_cancelled_execution_is_stored_late(store: Store) -> None:
    """An outcome reported after the cancel is stored (write-once) but the status stays."""
    k = store.keys
    await put_cue(store, tr="worker")
    p, eid = await claimed_worker_execution(store)
    await put_cue(store, nr=NOW, tr="worker", ov="cancel_previous", rx=eid)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    got = await store.outcomes.record(Outcome(eid, '{"success":true}', True, "reported_success", ""), NOW + S)
    assert got.status is Status.OK
    h = await store.redis.hgetall(k.execution(p, eid))
    assert h["st"] == "cancelled" and h["os"] == "reported_success"


async def test_delivery_finish_of_a_cancelled_attempt_changes_nothing(store: Store) -> None:
    """A webhook attempt in flight when its execution was cancelled: its result is not
    recorded (WRONG_STATE) and the lease and stream entry are cleared; delivery_start drops a
    cancelled execution still in the outbox."""
    k = store.keys
    p, eid, entry = await arrange(store, "{}")
    lease = await lease_of(store, p, eid, NOW)
    await store.redis.hset(k.execution(p, eid), "st", "cancelled")
    await store.executions.reindex([eid])
    res = await store.delivery.finish({p: [result(eid, entry, lease.lease_until)]}, NOW + S)
    assert res == {p: [Finished(Status.WRONG_STATE, "", False)]}
    assert await store.redis.hget(k.execution(p, eid), "st") == "cancelled"
    assert await store.redis.zscore(k.leases(p), eid) is None
    assert await store.redis.xlen(k.outbox(p)) == 0
    assert await start(store, p, eid, NOW + 2 * S) is Status.NOT_FOUND
