"""The overlap policy (lib/overlap.lua) in the scripts that decide and settle it, one by one against
real Redis under the frozen NOW: schedule_materialize (the decision), and the scripts that end a
running execution. Arrange keys → call → assert the answer and the state."""

from __future__ import annotations

import pytest

from cuefast.ids import scheduled_execution_id
from cuefast.store import Store
from cuefast.store.schedule import Materialized
from tests.lua.indexes import listed
from tests.lua.seed import ACCT, CUE, NOW, S, put_cue, put_execution, stream_ids
from tests.lua.test_schedule_scripts import ONCE, line

MIN = 60 * S
SKIPPED = "Skipped: the previous execution was still running (overlap: skip)"


async def claimable(store: Store, p: int) -> list[str]:
    return [str(m) for m in await store.redis.zrange(store.keys.work(p, ACCT), 0, -1)]


# ---- schedule_materialize: skip -----------------------------------------------------------------
@pytest.mark.parametrize("tr", ["webhook", "worker"])
async def test_skip_while_the_previous_runs_records_a_skipped_execution(store: Store, tr: str) -> None:
    """The previous execution ('lx') is delivering: the new slot is created skipped — indexed
    (filterable by status), not queued, not claimable — and 'lx' stays the running one."""
    k = store.keys
    p, prev = await put_execution(store, tr=tr, st="delivering")
    await put_cue(store, nr=NOW, tr=tr, ov="skip", lx=prev, fc=1)
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
    assert (cue["lx"], cue["fc"], cue["nr"]) == (prev, "2", str(NOW + MIN))


@pytest.mark.parametrize("final", ["success", "failed", "missed", "outcome_timeout", "skipped", "cancelled"])
async def test_skip_after_a_final_execution_runs_the_slot(store: Store, final: str) -> None:
    k = store.keys
    p, prev = await put_execution(store, st=final)
    await put_cue(store, nr=NOW, ov="skip", lx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    eid = scheduled_execution_id(CUE, NOW, p)
    assert await store.redis.hget(k.execution(p, eid), "st") == "pending"
    assert await stream_ids(store, k.outbox(p)) == [eid]
    assert await store.redis.hget(k.cue(CUE), "lx") == eid


@pytest.mark.parametrize("running", ["pending", "delivering", "retrying", "retry_ready", "pending_outcome"])
async def test_skip_counts_every_unfinished_status_as_running(store: Store, running: str) -> None:
    """pending_outcome (a webhook delivered with an armed outcome deadline) still runs: its
    outcome is expected."""
    k = store.keys
    p, prev = await put_execution(store, st=running)
    await put_cue(store, nr=NOW, ov="skip", lx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    assert await store.redis.hget(k.execution(p, scheduled_execution_id(CUE, NOW, p)), "st") == "skipped"


async def test_skip_when_the_previous_execution_is_gone_runs_the_slot(store: Store) -> None:
    """An 'lx' trimmed from Redis by retention was final."""
    k = store.keys
    p = await put_cue(store, nr=NOW, ov="skip", lx="00000000-0000-4000-8000-000000000000")
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
    assert await store.redis.hget(k.cue(CUE), "lx") == ids[0]


async def test_allow_keeps_todays_behaviour(store: Store) -> None:
    """No policy (absent or "allow"): every slot runs and the cue gets no 'lx'."""
    k = store.keys
    p, prev = await put_execution(store, st="delivering")
    await put_cue(store, nr=NOW, ov="allow", lx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW])])
    eid = scheduled_execution_id(CUE, NOW, p)
    assert await store.redis.hget(k.execution(p, eid), "st") == "pending"
    assert await store.redis.hget(k.cue(CUE), "lx") == prev


async def test_skip_of_a_one_time_slot_fails_the_cue(store: Store) -> None:
    """A re-armed one-time cue whose slot comes due while its previous run runs: the slot is
    skipped and the cue, left without a run, becomes failed."""
    k = store.keys
    p, prev = await put_execution(store, st="delivering")
    await put_cue(store, nr=NOW, sch=ONCE, ov="skip", lx=prev)
    await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, None, [NOW], sch=ONCE)])
    assert await store.redis.hget(k.execution(p, scheduled_execution_id(CUE, NOW, p)), "st") == "skipped"
    assert await store.redis.hget(k.cue(CUE), "status") == "failed"


async def test_skip_does_not_apply_to_blocked_slots(store: Store) -> None:
    """Past the monthly limit the slot is created failed as today (already final)."""
    k = store.keys
    p, prev = await put_execution(store, st="delivering")
    await put_cue(store, nr=NOW, ov="skip", lx=prev)
    res = await store.schedule.materialize(p, NOW, [line(CUE, p, NOW, NOW + MIN, [NOW], blocked=True)])
    assert res == Materialized(1, 0, {ACCT: 1})
    assert await store.redis.hget(k.execution(p, scheduled_execution_id(CUE, NOW, p)), "st") == "failed"
