"""The overlap policy (lib/overlap.lua) in the scripts that decide and settle it, one by one against
real Redis under the frozen NOW: schedule_materialize (the decision), and the scripts that end a
running execution. Arrange keys → call → assert the answer and the state."""

from __future__ import annotations

import json

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
    for the holder's fenced calls; named in the reply, for its task cap permit to be given back),
    the new slot is claimable and becomes 'rx'."""
    k = store.keys
    p, prev = await claimed_worker_execution(store)
    await put_cue(store, nr=NOW, tr="worker", ov="cancel_previous", rx=prev)
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert res == Materialized(1, 0, {}, ended=((ACCT, prev),))
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


# ---- buffer_one: materialise holds one back, every finalisation path releases it --------------
WAITING = "Skipped: an execution was already waiting (overlap: buffer_one)"


async def buffered(
    store: Store, tr: str, prev_st: str = "delivering", **prev: object
) -> tuple[int, str, str]:
    """A buffer_one cue whose running execution ``prev`` (status ``prev_st``) has one slot waiting
    behind it, materialised: (partition, running id, waiting id)."""
    p, run = await put_execution(store, tr=tr, st=prev_st, **prev)
    await put_cue(store, nr=NOW, tr=tr, ov="buffer_one", rx=run, pl='{"task":"t"}')
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    return p, run, scheduled_execution_id(CUE, NOW, p)


async def queued(store: Store, p: int, eid: str) -> bool:
    """Queued for delivery (outbox) or claimable (work index and unclaimed window)."""
    k = store.keys
    in_outbox = eid in await stream_ids(store, k.outbox(p))
    claimable_now = (
        eid in await claimable(store, p) and await store.redis.zscore(k.unclaimed(p), eid) is not None
    )
    return in_outbox or claimable_now


@pytest.mark.parametrize("tr", ["webhook", "worker"])
async def test_buffer_one_holds_one_slot_back_and_skips_the_next(store: Store, tr: str) -> None:
    k = store.keys
    p, run, wait = await buffered(store, tr)
    h = await store.redis.hgetall(k.execution(p, wait))
    assert h["st"] == "pending" and not await queued(store, p, wait)
    cue = await store.redis.hgetall(k.cue(CUE))
    assert (cue["rx"], cue["bw"]) == (run, wait)
    await store.redis.hset(k.cue(CUE), "nr", NOW + MIN)
    await store.schedule.materialize(p, NOW + MIN, [line(CUE, p, NOW + MIN, NOW + 2 * MIN, [NOW + MIN])])
    later = await store.redis.hgetall(k.execution(p, scheduled_execution_id(CUE, NOW + MIN, p)))
    assert (later["st"], later["em"]) == ("skipped", WAITING)
    assert await store.redis.hget(k.cue(CUE), "bw") == wait


@pytest.mark.parametrize("tr", ["webhook", "worker"])
async def test_buffer_one_catch_up_runs_one_buffers_one_skips_the_rest(store: Store, tr: str) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW - 3 * MIN, tr=tr, ov="buffer_one")
    slots = [NOW - 3 * MIN, NOW - 2 * MIN, NOW - MIN, NOW]
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW - 3 * MIN, NOW + MIN, slots)])
    ids = [scheduled_execution_id(CUE, s, p) for s in slots]
    assert [await store.redis.hget(k.execution(p, e), "st") for e in ids] == [
        "pending",
        "pending",
        "skipped",
        "skipped",
    ]
    assert [await queued(store, p, e) for e in ids[:2]] == [True, False]
    cue = await store.redis.hgetall(k.cue(CUE))
    assert (cue["rx"], cue["bw"]) == (ids[0], ids[1])


async def test_buffer_one_released_by_an_outcome(store: Store) -> None:
    """outcomes_record ends the running worker execution: the waiting one becomes claimable
    (its unclaimed window from now) and the cue's 'rx'; 'bw' is cleared."""
    k = store.keys
    p, run, wait = await buffered(store, "worker", cw="w1", cla=NOW - S)
    got = await store.outcomes.record(Outcome(run, '{"success":true}', True, "reported_success", ""), NOW + S)
    assert got.status is Status.OK
    assert await queued(store, p, wait)
    assert await store.redis.zscore(k.unclaimed(p), wait) == NOW + S
    assert await store.redis.hget(k.execution(p, wait), "tk") == "t"
    cue = await store.redis.hgetall(k.cue(CUE))
    assert cue["rx"] == wait and "bw" not in cue


async def test_buffer_one_released_by_a_batch_of_outcomes(store: Store) -> None:
    p, run, wait = await buffered(store, "worker", cw="w1", cla=NOW - S)
    (got,) = await store.outcomes.record_many(
        ACCT, [Outcome(run, '{"success":false}', False, "reported_failure", "x")], NOW + S
    )
    assert got.status is Status.OK
    assert await queued(store, p, wait)


@pytest.mark.parametrize("ok", [True, False])
async def test_buffer_one_released_by_delivery_finish(store: Store, ok: bool) -> None:
    """A webhook attempt ends success, or failed with no attempts left: the waiting one is
    queued to the outbox. A failure with attempts left (retrying) releases nothing."""
    k = store.keys
    p, run, entry = await arrange(store, "{}")
    await store.redis.hset(k.cue(CUE), mapping={"ov": "buffer_one", "rx": run, "nr": NOW, "tr": "webhook"})
    lease = await lease_of(store, p, run, NOW)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    wait = scheduled_execution_id(CUE, NOW, p)
    assert not await queued(store, p, wait)
    await store.delivery.finish({p: [result(run, entry, lease.lease_until, ok=ok)]}, NOW + S)
    assert await store.redis.hget(k.execution(p, run), "st") == ("success" if ok else "failed")
    assert await queued(store, p, wait)
    assert await store.redis.hget(k.cue(CUE), "rx") == wait


async def test_buffer_one_not_released_while_the_running_one_retries(store: Store) -> None:
    k = store.keys
    p, run, entry = await arrange(store, "{}")
    await store.redis.hset(k.cue(CUE), mapping={"ov": "buffer_one", "rx": run, "nr": NOW, "tr": "webhook"})
    lease = await lease_of(store, p, run, NOW)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    wait = scheduled_execution_id(CUE, NOW, p)
    row = result(run, entry, lease.lease_until, ok=False)._replace(next_retry_us=NOW + MIN)
    await store.delivery.finish({p: [row]}, NOW + S)
    assert await store.redis.hget(k.execution(p, run), "st") == "retrying"
    assert not await queued(store, p, wait)


async def test_buffer_one_released_by_a_lease_reaped_to_failed(store: Store) -> None:
    k = store.keys
    p, run, wait = await buffered(store, "worker", cw="w1", cla=NOW - 9 * S, lx=NOW - S, att=3)
    await store.redis.zadd(k.claims(p), {run: NOW - S})
    assert await store.claims.reap_leases(p, [(run, str(NOW - S), "fail")], NOW) == ["failed"]
    assert await queued(store, p, wait)


async def test_buffer_one_released_by_an_unclaimed_execution_missed(store: Store) -> None:
    k = store.keys
    p, run, wait = await buffered(store, "worker", prev_st="pending")
    await store.redis.zadd(k.unclaimed(p), {run: NOW - 9 * MIN})
    taken, missed = await store.claims.expire_unclaimed(p, NOW - MIN, 10, NOW)
    assert [m.execution_id for m in missed] == [run]
    assert await store.redis.hget(k.execution(p, run), "st") == "missed"
    assert await queued(store, p, wait)


async def test_buffer_one_released_by_an_outcome_deadline(store: Store) -> None:
    k = store.keys
    p, run, wait = await buffered(store, "webhook", prev_st="pending_outcome", od=NOW - S, da=NOW - MIN)
    await store.redis.zadd(k.deadlines(p), {run: NOW - S})
    assert await store.schedule.expire_deadlines(p, NOW, 10) == [run]
    assert await queued(store, p, wait)


async def test_buffer_one_a_manual_fire_ending_releases_nothing(store: Store) -> None:
    """Only the cue's 'rx' ending releases: another of its executions ending (a manual fire
    reporting its outcome) leaves the waiting one waiting."""
    p, run, wait = await buffered(store, "worker", cw="w1", cla=NOW - S)
    _, fire = await put_execution(store, tr="worker", st="delivering", tb="manual_fire", cw="w1", cla=NOW - S)
    await store.outcomes.record(Outcome(fire, '{"success":true}', True, "reported_success", ""), NOW + S)
    assert not await queued(store, p, wait)


async def test_restore_executions_keeps_a_buffered_execution_unqueued(store: Store) -> None:
    """After a restore the cue (restored first) still names its waiting execution ('bw'):
    restore_executions lists it but queues only the running one."""
    k = store.keys
    p = k.cue_partition(CUE)
    run, wait = scheduled_execution_id(CUE, NOW - MIN, p), scheduled_execution_id(CUE, NOW, p)
    await put_cue(store, nr=NOW + MIN, ov="buffer_one", rx=run, bw=wait)
    docs = [
        {"id": e, "cue": CUE, "acct": ACCT, "tr": "webhook", "st": "pending", "sf": str(sf), "ca": str(NOW)}
        for e, sf in ((run, NOW - MIN), (wait, NOW))
    ]
    assert await store.restore.executions([(p, [json.dumps(d) for d in docs])], NOW) == 2
    assert await stream_ids(store, k.outbox(p)) == [run]
    assert await listed(store, ACCT, wait, CUE) == NOW


# ---- with jitter (a fire_at per slot, 'ft') -----------------------------------------------------
async def test_skip_with_jitter_the_skipped_slot_waits_nowhere(store: Store) -> None:
    k = store.keys
    p, prev = await put_execution(store, st="delivering")
    await put_cue(store, nr=NOW, ov="skip", rx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW], fire=[NOW + 9 * S])])
    eid = scheduled_execution_id(CUE, NOW, p)
    assert await store.redis.hget(k.execution(p, eid), "st") == "skipped"
    assert await store.redis.zcard(k.delayed(p)) == 0 and await store.redis.xlen(k.outbox(p)) == 0


async def test_cancel_previous_takes_a_jittered_webhook_off_the_delayed_zset(store: Store) -> None:
    k = store.keys
    p, prev = await put_execution(store, st="pending", ft=NOW + 30 * S)
    await store.redis.zadd(k.delayed(p), {prev: NOW + 30 * S})
    await put_cue(store, nr=NOW, ov="cancel_previous", rx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW], fire=[NOW + 9 * S])])
    assert await store.redis.hget(k.execution(p, prev), "st") == "cancelled"
    eid = scheduled_execution_id(CUE, NOW, p)
    assert await store.redis.zrange(k.delayed(p), 0, -1, withscores=True) == [(eid, NOW + 9 * S)]


@pytest.mark.parametrize("tr", ["webhook", "worker"])
async def test_buffer_one_releases_a_jittered_slot_not_before_its_fire_at(store: Store, tr: str) -> None:
    """The waiting slot's fire_at is still ahead when the running one ends (webhook: its outcome
    deadline passes; worker: its outcome): a webhook one goes to the delayed zset, a worker one
    into the work indexes scored (and its unclaimed window starting) at fire_at."""
    k = store.keys
    if tr == "webhook":
        p, run = await put_execution(store, st="pending_outcome", od=NOW, da=NOW - MIN)
        await store.redis.zadd(k.deadlines(p), {run: NOW})
    else:
        p, run = await put_execution(store, tr=tr, st="delivering", cw="w1", cla=NOW - S)
    await put_cue(store, nr=NOW, tr=tr, ov="buffer_one", rx=run)
    fire = NOW + 30 * S
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW], fire=[fire])])
    wait = scheduled_execution_id(CUE, NOW, p)
    assert await store.redis.zcard(k.delayed(p)) == 0 and await claimable(store, p) == []
    if tr == "webhook":
        assert await store.schedule.expire_deadlines(p, NOW + S, 10) == [run]
        assert await store.redis.zrange(k.delayed(p), 0, -1, withscores=True) == [(wait, fire)]
        assert await store.redis.xlen(k.outbox(p)) == 0
    else:
        await store.outcomes.record(Outcome(run, '{"success":true}', True, "reported_success", ""), NOW + S)
        assert await store.redis.zscore(k.work(p, ACCT), wait) == fire
        assert await store.redis.zscore(k.unclaimed(p), wait) == fire
