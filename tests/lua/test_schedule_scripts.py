"""The scheduler's scripts one by one against real Redis (schedule_materialize and its due read,
schedule_move_retries, schedule_move_delayed, schedule_expire_deadlines): arrange keys → call →
assert the answer and the state (executions, due entries, outbox and work indexes, alerts, dirty
marks)."""

from __future__ import annotations

from cuefast.ids import scheduled_execution_id
from cuefast.store import Store
from cuefast.store.executions import index_member, index_members
from cuefast.store.schedule import DueCue, Materialized
from tests.lua.indexes import listed
from tests.lua.seed import (
    ACCT,
    CREATED,
    CUE,
    NOW,
    RECURRING,
    SIBLING,
    S,
    dirty,
    put_cue,
    put_execution,
    stream_ids,
)

ONCE = f"once|UTC|latest|{NOW}|"
MIN = 60 * S


def line(
    cue_id: str,
    p: int,
    expected: int,
    new: int | None,
    slots: list[int],
    blocked: bool = False,
    sch: str = RECURRING,
    fire: list[int] | None = None,
) -> list[str]:
    """One cue's plan words as the scheduler writes them (``sch``: the schedule planned with;
    ``fire``: jitter, each slot's fire_at)."""
    count = f"{len(slots)}{'b' if blocked else ''}{'j' if fire is not None else ''}"
    words = [cue_id, str(expected), sch, "-" if new is None else str(new), count]
    for i, slot in enumerate(slots):
        words += [str(slot), scheduled_execution_id(cue_id, slot, p)]
        if fire is not None:
            words.append(str(fire[i]))
    return words


# ---- the due read ---------------------------------------------------------------------------------
async def test_due_cues_reads_the_due_head_with_schedule_and_account(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW - MIN)
    await store.redis.zadd(k.due(p), {"cue_gone": NOW - 2 * MIN, "cue_later": NOW + 1, "cue_now": NOW})
    rows = await store.schedule.due_cues(p, NOW, 10)
    assert rows == [
        DueCue("cue_gone", NOW - 2 * MIN, "", ""),  # gone: the scheduler plans it away
        DueCue(CUE, NOW - MIN, RECURRING, ACCT),
        DueCue("cue_now", NOW, "", ""),
    ]
    assert [r.cue_id for r in await store.schedule.due_cues(p, NOW, 1)] == ["cue_gone"]
    assert await store.redis.zcard(k.due(p)) == 4  # read only


# ---- schedule_materialize ------------------------------------------------------------------------
async def test_materialize_webhook_slots_become_queued_executions(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW - MIN, pl='{"a":1}', fc=5)
    slots = [NOW - MIN, NOW]
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW - MIN, NOW + MIN, slots)])
    assert res == Materialized(2, 0, {})
    ids = [scheduled_execution_id(CUE, s, p) for s in slots]
    for eid, slot in zip(ids, slots, strict=True):
        assert await store.redis.hgetall(k.execution(p, eid)) == {
            "cue": CUE,
            "acct": ACCT,
            "tr": "webhook",
            "sf": str(slot),
            "st": "pending",
            "ca": str(NOW),
            "pl": '{"a":1}',
            "ix": "pending||||",
        }
        assert await listed(store, ACCT, eid, CUE) == NOW
        assert await listed(store, ACCT, eid) == NOW
    assert await stream_ids(store, k.outbox(p)) == ids
    h = await store.redis.hgetall(k.cue(CUE))
    assert (h["nr"], h["fc"]) == (str(NOW + MIN), "7")
    assert await store.redis.zscore(k.due(p), CUE) == NOW + MIN
    assert await dirty(store, k.part(p)) == {f"cue:{CUE}", *(f"exec:{e}" for e in ids)}


async def test_materialize_indexes_a_cue_with_one_slot_and_a_cue_with_several(store: Store) -> None:
    """A cue's one new execution goes into its cue registry at once, several are collected and
    written after the plan: both end up counted and listed the same (also with an execution the
    cue had before, and in the account's registry)."""
    k = store.keys
    p = await put_cue(store, nr=NOW - MIN)
    assert await put_cue(store, SIBLING, nr=NOW) == p
    _, old = await put_execution(store, SIBLING, st="success")
    plan = [line(CUE, p, NOW - MIN, NOW + MIN, [NOW - MIN, NOW]), line(SIBLING, p, NOW, NOW + MIN, [NOW])]
    assert await store.schedule.materialize(p, NOW, plan) == Materialized(3, 0, {})
    assert await store.redis.hgetall(k.ix_cue(CUE)) == {"pending||": "2"}
    assert await store.redis.hgetall(k.ix_cue(SIBLING)) == {"pending||": "1", "success||": "1"}
    assert await store.redis.hgetall(k.ix_account(p, ACCT)) == {"pending||": "3", "success||": "1"}
    for cue_id, slot in ((CUE, NOW - MIN), (CUE, NOW), (SIBLING, NOW)):
        eid = scheduled_execution_id(cue_id, slot, p)
        assert await listed(store, ACCT, eid, cue_id) == NOW
    assert await listed(store, ACCT, old, SIBLING) is not None


async def test_materialize_a_slot_already_materialized_is_not_created_twice(store: Store) -> None:
    """A second scheduler (or a retried pass) planning the same slot finds its execution: the
    cue's next run still advances, nothing is created or queued again."""
    k = store.keys
    p = await put_cue(store, nr=NOW)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    eid = scheduled_execution_id(CUE, NOW, p)
    await store.redis.hset(k.execution(p, eid), "st", "success")
    await store.executions.reindex([eid])
    res = await store.schedule.materialize(p, NOW + 1, [line(CUE, p, NOW + MIN, NOW + 2 * MIN, [NOW])])
    assert res == Materialized(0, 0, {})
    assert await store.redis.hget(k.execution(p, eid), "st") == "success"
    assert await store.redis.xlen(k.outbox(p)) == 1
    h = await store.redis.hgetall(k.cue(CUE))
    assert (h["nr"], h["fc"]) == (str(NOW + 2 * MIN), "1")


async def test_materialize_checks_each_slot_when_any_execution_exists(store: Store) -> None:
    """The plan's execution keys are checked at once; when one exists, each slot is checked on its
    own (only the new one is created), and a slot listed twice in one plan is created once."""
    k = store.keys
    p = await put_cue(store, nr=NOW)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    await store.redis.hset(k.cue(CUE), "nr", NOW)
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW, NOW + S])])
    assert res == Materialized(1, 0, {})
    await put_cue(store, SIBLING, nr=NOW)
    res = await store.schedule.materialize(p, NOW, [line(SIBLING, p, NOW, NOW + MIN, [NOW, NOW])])
    assert res == Materialized(1, 0, {})
    ids = [scheduled_execution_id(c, s, p) for c, s in [(CUE, NOW), (CUE, NOW + S), (SIBLING, NOW)]]
    assert await stream_ids(store, k.outbox(p)) == ids


async def test_materialize_skips_a_moved_gone_or_inactive_cue(store: Store) -> None:
    """A next run moved since the plan: skipped, its due entry kept. A gone or non-active cue:
    skipped and its (stray) due entry dropped."""
    k = store.keys
    p = await put_cue(store, nr=NOW + MIN)
    await put_cue(store, SIBLING, status="paused")
    await store.redis.zadd(k.due(p), {SIBLING: NOW, "cue_gone": NOW})
    plan = [
        line(CUE, p, NOW, NOW + MIN, [NOW]),
        line(SIBLING, p, NOW, NOW + MIN, [NOW]),
        line("cue_gone", p, NOW, NOW + MIN, [NOW]),
    ]
    assert await store.schedule.materialize(p, NOW, plan) == Materialized(0, 3, {})
    assert await store.redis.zrange(k.due(p), 0, -1, withscores=True) == [(CUE, NOW + MIN)]
    assert await store.redis.exists(k.execution(p, scheduled_execution_id(CUE, NOW, p))) == 0
    assert await store.redis.xlen(k.outbox(p)) == 0
    assert await store.redis.hget(k.cue(CUE), "fc") is None


async def test_materialize_skips_a_cue_whose_schedule_changed_since_the_plan(store: Store) -> None:
    """A PATCH that changed the schedule but not the next run (e.g. catch_up): the plan was made
    from the old schedule, so it is skipped and the cue stays due; the same call's read returns it
    with its schedule as it is now."""
    k = store.keys
    p = await put_cue(store, nr=NOW, sch=RECURRING.replace("latest", "all"))
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])], read=10)
    assert res == Materialized(0, 1, {}, (DueCue(CUE, NOW, RECURRING.replace("latest", "all"), ACCT),))
    assert await store.redis.exists(k.execution(p, scheduled_execution_id(CUE, NOW, p))) == 0
    assert await store.redis.hget(k.cue(CUE), "nr") == str(NOW)


async def test_materialize_reads_the_next_due_batch_after_its_plan(store: Store) -> None:
    """The due read runs after the plan: a cue just materialised is no longer due, the others
    are returned oldest first, at most ``read`` of them."""
    p = await put_cue(store, nr=NOW)
    await put_cue(store, SIBLING, nr=NOW - MIN)
    assert store.keys.cue_partition(SIBLING) == p
    await store.redis.zadd(store.keys.due(p), {"cue_gone": NOW - 2 * MIN})
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])], read=1)
    assert res == Materialized(1, 0, {}, (DueCue("cue_gone", NOW - 2 * MIN, "", ""),))
    res = await store.schedule.materialize(p, NOW, [], read=10)
    assert res.due == (DueCue("cue_gone", NOW - 2 * MIN, "", ""), DueCue(SIBLING, NOW - MIN, RECURRING, ACCT))


async def test_materialize_takes_the_index_members_the_scheduler_sends(store: Store) -> None:
    """``members`` holds every plan slot's 16-byte member in plan order, a skipped cue's too: the
    next cue's executions are indexed under their own ids."""
    k = store.keys
    p = await put_cue(store, nr=NOW + MIN)  # moved: its two slots are skipped
    await put_cue(store, SIBLING, nr=NOW)
    assert k.cue_partition(SIBLING) == p
    plan = [line(CUE, p, NOW, NOW + MIN, [NOW - MIN, NOW]), line(SIBLING, p, NOW, NOW + MIN, [NOW])]
    ids = [scheduled_execution_id(CUE, NOW - MIN, p), scheduled_execution_id(CUE, NOW, p)]
    sibling = scheduled_execution_id(SIBLING, NOW, p)
    members = b"".join(index_member(e) for e in [*ids, sibling])
    assert await store.schedule.materialize(p, NOW, plan, members) == Materialized(1, 1, {})
    assert await listed(store, ACCT, sibling, SIBLING) == NOW
    assert await listed(store, ACCT, sibling) == NOW
    assert await index_members(store.redis, f"{k.ix_cue(SIBLING)}|z|pending||") == [(sibling, NOW)]


async def test_materialize_a_one_time_cue_records_the_fired_slot(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW, sch=ONCE)
    assert await store.schedule.materialize(
        p, NOW, [line(CUE, p, NOW, None, [NOW], sch=ONCE)]
    ) == Materialized(1, 0, {})
    h = await store.redis.hgetall(k.cue(CUE))
    assert (h["nr"], h["fa"], h["fc"], h["status"]) == ("", str(NOW), "1", "active")
    assert await store.redis.zscore(k.due(p), CUE) is None


async def test_materialize_worker_slots_are_claimable_with_task_and_agent(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW, tr="worker", pl='{"task":"sum","agent":"bot"}')
    await store.schedule.materialize(p, NOW + 5, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    eid = scheduled_execution_id(CUE, NOW, p)
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["tr"], h["st"], h["tk"], h["ag"]) == ("worker", "pending", "sum", "bot")
    for key in (
        k.work(p, ACCT),
        k.work_filtered(p, ACCT, "sum", None),
        k.work_filtered(p, ACCT, None, "bot"),
        k.work_filtered(p, ACCT, "sum", "bot"),
        k.unclaimed(p),
    ):
        assert await store.redis.zscore(key, eid) == NOW, key
    assert await store.redis.xlen(k.outbox(p)) == 0
    assert [f for _, f in await store.redis.xrange(k.work_signal(p))] == [{"a": ACCT}]


async def test_materialize_reads_a_long_payload_from_the_config_string(store: Store) -> None:
    k = store.keys
    payload = '{"text":"' + "x" * 80 + '"}'
    p = await put_cue(store, nr=NOW, cfg="{}\n" + payload)
    await store.redis.hdel(k.cue(CUE), "pl")
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert await store.redis.hget(k.execution(p, scheduled_execution_id(CUE, NOW, p)), "pl") == payload


async def test_materialize_blocked_by_the_monthly_limit_creates_failed_executions(store: Store) -> None:
    """Past the limit's grace ("b"): executions created failed, listed but neither queued nor
    claimable; counted per account; a one-time cue becomes failed."""
    k = store.keys
    p = await put_cue(store, nr=NOW, sch=ONCE)
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, None, [NOW], blocked=True, sch=ONCE)])
    assert res == Materialized(1, 0, {ACCT: 1})
    eid = scheduled_execution_id(CUE, NOW, p)
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["st"], h["em"], h["ua"]) == ("failed", "Monthly execution limit reached", str(NOW))
    assert await listed(store, ACCT, eid) == NOW
    assert await store.redis.xlen(k.outbox(p)) == 0
    c = await store.redis.hgetall(k.cue(CUE))
    assert (c["status"], c["lr"], c["fa"]) == ("failed", str(NOW), str(NOW))
    assert await store.redis.zscore(k.cue_index(p, ACCT, "failed"), CUE) == CREATED
    assert await store.redis.zscore(k.cue_index(p, ACCT, "active"), CUE) is None


# ---- jitter ("j": a fire_at per slot) --------------------------------------------------------------
JITTERED = RECURRING + "|60"


async def test_materialize_jitter_webhook_waits_in_delayed_until_fire_at(store: Store) -> None:
    """A slot whose fire_at is ahead: executed as pending with 'ft', in the delayed zset (not the
    outbox); one whose fire_at has passed is queued at once; schedule_move_delayed queues the
    waiting one at its fire_at."""
    k = store.keys
    p = await put_cue(store, nr=NOW - MIN, sch=JITTERED)
    slots, fire = [NOW - MIN, NOW], [NOW - MIN + 7 * S, NOW + 30 * S]
    res = await store.schedule.materialize(
        p, NOW, [line(CUE, p, NOW - MIN, NOW + MIN, slots, sch=JITTERED, fire=fire)]
    )
    assert res == Materialized(2, 0, {})
    late, ahead = (scheduled_execution_id(CUE, s, p) for s in slots)
    for eid, slot, at in ((late, slots[0], fire[0]), (ahead, slots[1], fire[1])):
        h = await store.redis.hgetall(k.execution(p, eid))
        assert (h["st"], h["sf"], h["ft"]) == ("pending", str(slot), str(at))
    assert await stream_ids(store, k.outbox(p)) == [late]
    assert await store.redis.zrange(k.delayed(p), 0, -1, withscores=True) == [(ahead, NOW + 30 * S)]
    assert await store.schedule.move_delayed(p, NOW + 30 * S - 1, 10) == 0
    assert await store.schedule.move_delayed(p, NOW + 30 * S, 10) == 1
    assert await stream_ids(store, k.outbox(p)) == [late, ahead]


async def test_materialize_jitter_worker_is_listed_from_fire_at(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW, tr="worker", sch=JITTERED, pl='{"task":"sum"}')
    await store.schedule.materialize(
        p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW], sch=JITTERED, fire=[NOW + 9 * S])]
    )
    eid = scheduled_execution_id(CUE, NOW, p)
    assert await store.redis.hget(k.execution(p, eid), "ft") == str(NOW + 9 * S)
    for key in (k.work(p, ACCT), k.work_filtered(p, ACCT, "sum", None), k.unclaimed(p)):
        assert await store.redis.zscore(key, eid) == NOW + 9 * S, key
    assert await store.redis.zcard(k.delayed(p)) == 0 and await store.redis.xlen(k.outbox(p)) == 0


async def test_materialize_jitter_with_the_monthly_limit_flag(store: Store) -> None:
    """ "bj": blocked and jittered — created failed with its fire_at, never queued."""
    k = store.keys
    p = await put_cue(store, nr=NOW, sch=JITTERED)
    plan = [line(CUE, p, NOW, NOW + MIN, [NOW], blocked=True, sch=JITTERED, fire=[NOW + S])]
    assert await store.schedule.materialize(p, NOW, plan) == Materialized(1, 0, {ACCT: 1})
    h = await store.redis.hgetall(k.execution(p, scheduled_execution_id(CUE, NOW, p)))
    assert (h["st"], h["ft"]) == ("failed", str(NOW + S))
    assert await store.redis.zcard(k.delayed(p)) == 0 and await store.redis.xlen(k.outbox(p)) == 0


async def test_materialize_without_jitter_writes_no_fire_at(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert await store.redis.hget(k.execution(p, scheduled_execution_id(CUE, NOW, p)), "ft") is None


# ---- schedule_move_retries -----------------------------------------------------------------------
async def test_move_retries_requeues_due_retrying_executions(store: Store) -> None:
    k = store.keys
    p, due = await put_execution(store, st="retrying", nxr=NOW - S)
    _, later = await put_execution(store, st="retrying", nxr=NOW + S)
    _, moved_on = await put_execution(store, st="success")  # finished meanwhile: a stale entry
    await store.redis.zadd(k.retries(p), {due: NOW - S, later: NOW + S, moved_on: NOW - 2 * S})
    assert await store.schedule.move_retries(p, NOW, 10) == 1
    h = await store.redis.hgetall(k.execution(p, due))
    assert (h["st"], h["nxr"], h["ua"]) == ("retry_ready", "", str(NOW))
    assert await stream_ids(store, k.outbox(p)) == [due]
    assert await store.redis.zrange(k.retries(p), 0, -1) == [later]
    assert await store.redis.hget(k.execution(p, moved_on), "st") == "success"
    assert await dirty(store, k.part(p)) == {f"exec:{due}"}


async def test_move_retries_takes_a_bounded_batch(store: Store) -> None:
    k = store.keys
    ids = [(await put_execution(store, st="retrying"))[1] for _ in range(3)]
    p = k.cue_partition(CUE)
    await store.redis.zadd(k.retries(p), {eid: NOW - 10 + i for i, eid in enumerate(ids)})
    assert await store.schedule.move_retries(p, NOW, 2) == 2
    assert await stream_ids(store, k.outbox(p)) == ids[:2]
    assert await store.schedule.move_retries(p, NOW, 2) == 1


# ---- schedule_move_delayed -----------------------------------------------------------------------
async def test_move_delayed_queues_what_is_due_in_bounded_batches(store: Store) -> None:
    k = store.keys
    p = 2
    await store.redis.zadd(k.delayed(p), {"e1": NOW - 2, "e2": NOW - 1, "e3": NOW, "later": NOW + 1})
    assert await store.schedule.move_delayed(p, NOW, 2) == 2
    assert await stream_ids(store, k.outbox(p)) == ["e1", "e2"]
    assert await store.schedule.move_delayed(p, NOW, 2) == 1
    assert await stream_ids(store, k.outbox(p)) == ["e1", "e2", "e3"]
    assert await store.redis.zrange(k.delayed(p), 0, -1) == ["later"]
    assert await store.schedule.move_delayed(p, NOW, 2) == 0


# ---- schedule_expire_deadlines -------------------------------------------------------------------
async def test_expire_deadlines_times_out_a_webhook_execution_and_alerts(store: Store) -> None:
    k = store.keys
    p = await put_cue(store)
    od = NOW - S
    _, eid = await put_execution(store, st="pending_outcome", da=od - 300 * S, od=od)
    await store.redis.zadd(k.deadlines(p), {eid: od})
    assert await store.schedule.expire_deadlines(p, NOW, 10) == [eid]
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["st"], h["ua"], h["em"], h["vd"]) == (
        "outcome_timeout",
        str(NOW),
        "Outcome not reported within 300s",
        "1",
    )
    assert await store.redis.zcard(k.deadlines(p)) == 0
    assert await store.redis.hget(k.cue(CUE), "fs") == "1"  # the cue's failure streak
    (alert_id,) = await store.redis.zrange(k.alert_index(p, ACCT, "outcome_timeout"), 0, -1)
    a = await store.redis.hgetall(k.alert(p, alert_id))
    assert (a["type"], a["eid"], a["cue"], a["acct"], a["ca"]) == (
        "outcome_timeout",
        eid,
        CUE,
        ACCT,
        str(NOW),
    )
    assert a["md"] == '{"outcome_deadline_seconds":300,"transport":"webhook"}'
    assert [f for _, f in await store.redis.xrange(k.notices(p))] == [{"k": "a", "i": alert_id, "n": "1"}]
    assert await dirty(store, k.part(p)) == {f"exec:{eid}", f"cue:{CUE}", f"alert:{alert_id}"}


async def test_expire_deadlines_a_worker_deadline_counts_from_the_claim(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, tr="worker")
    _, eid = await put_execution(store, tr="worker", st="delivering", cla=NOW - 61 * S, od=NOW - S)
    await store.redis.zadd(k.deadlines(p), {eid: NOW - S})
    assert await store.schedule.expire_deadlines(p, NOW, 10) == [eid]
    assert await store.redis.hget(k.execution(p, eid), "em") == "Outcome not reported within 60s"
    (alert_id,) = await store.redis.zrange(k.alert_index(p, ACCT, "outcome_timeout"), 0, -1)
    md = await store.redis.hget(k.alert(p, alert_id), "md")
    assert md == '{"outcome_deadline_seconds":60,"transport":"worker"}'


async def test_expire_deadlines_leaves_reported_finished_and_future_ones(store: Store) -> None:
    k = store.keys
    p = await put_cue(store)
    _, reported = await put_execution(store, st="pending_outcome", da=NOW - 9 * S, od=NOW - S, oc="{}")
    _, finished = await put_execution(store, st="failed", da=NOW - 9 * S, od=NOW - S)
    _, future = await put_execution(store, st="pending_outcome", da=NOW - 9 * S, od=NOW + S)
    await store.redis.zadd(
        k.deadlines(p), {reported: NOW - S, finished: NOW - S, "gone": NOW - S, future: NOW + S}
    )
    assert await store.schedule.expire_deadlines(p, NOW, 10) == []
    assert await store.redis.zrange(k.deadlines(p), 0, -1) == [future]  # the passed ones are dropped
    assert await store.redis.hget(k.execution(p, reported), "st") == "pending_outcome"
    assert await store.redis.hget(k.execution(p, finished), "st") == "failed"
    assert await store.redis.exists(k.alert_index(p, ACCT, "outcome_timeout")) == 0


async def test_expire_deadlines_fails_the_one_time_cue_its_execution_decides(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, sch=ONCE)
    _, scheduled = await put_execution(store, st="pending_outcome", da=NOW - 9 * S, od=NOW)
    await store.redis.zadd(k.deadlines(p), {scheduled: NOW})
    assert await store.schedule.expire_deadlines(p, NOW, 10) == [scheduled]
    assert await store.redis.hget(k.cue(CUE), "status") == "failed"
    assert await store.redis.zscore(k.cue_index(p, ACCT, "failed"), CUE) == CREATED


async def test_expire_deadlines_a_manual_fire_does_not_decide_a_one_time_cue(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, sch=ONCE)
    _, manual = await put_execution(store, st="pending_outcome", da=NOW - 9 * S, od=NOW, tb="manual")
    await store.redis.zadd(k.deadlines(p), {manual: NOW})
    assert await store.schedule.expire_deadlines(p, NOW, 10) == [manual]
    assert await store.redis.hget(k.cue(CUE), "status") == "active"


async def test_expire_deadlines_a_reoffered_worker_execution(store: Store) -> None:
    """A worker execution claimed once (its deadline armed at that claim), whose lease expired and
    which was re-offered (claims_reap_leases: 'cla' = "", the deadline stays armed) and not
    claimed again before the deadline. Regression: the script computed the deadline's length
    from ``da or cla or od``; "" is true in Lua, tonumber("") is nil, and the script failed — for
    the whole partition's batch, on every pass. The length now comes from the cue's config, and
    the execution leaves the claimable indexes it was re-offered on."""
    k = store.keys
    cfg = '{"transport":"worker","delivery":{"outcome_deadline_seconds":120}}'
    p = await put_cue(store, tr="worker", cfg=cfg)
    _, eid = await put_execution(
        store, tr="worker", st="retry_ready", att=1, cla="", od=NOW - S, tk="summarize"
    )
    work = [k.work(p, ACCT), k.work(p, ACCT) + ":t:summarize", k.unclaimed(p)]
    for key in work:
        await store.redis.zadd(key, {eid: NOW - 60 * S})
    await store.redis.zadd(k.deadlines(p), {eid: NOW - S})
    assert await store.schedule.expire_deadlines(p, NOW, 10) == [eid]
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["st"], h["em"]) == ("outcome_timeout", "Outcome not reported within 120s")
    for key in work:
        assert await store.redis.zscore(key, eid) is None, key
    alert_ids = await store.redis.zrange(k.alert_index(p, ACCT, "outcome_timeout"), 0, -1)
    assert len(alert_ids) == 1
