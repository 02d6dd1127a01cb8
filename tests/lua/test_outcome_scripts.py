"""The outcome script against real Redis (outcomes_record: one outcome, a turn's, a batch's): an outcome is
written once, atomically with its status effect (indexes, the cue's run count, a one-time cue's
end, the verdict and its alerts); a second one answers EXISTS and changes nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.exceptions import ResponseError

from cuefast.months import month_of
from cuefast.store import Status, Store
from cuefast.store.executions import index_member
from cuefast.store.outcomes import Outcome, Recorded, Reported
from cuefast.store.usage import USAGE_TTL_S
from cuefast.times import from_datetime
from tests.conftest import Backend
from tests.lua.indexes import unindex
from tests.lua.seed import ACCT, CREATED, CUE, NOW, SIBLING, S, dirty, put_cue, put_execution
from tests.lua.test_listing_work import Monitor

ONCE = f"once|UTC|latest|{NOW}|"
WIN = '{"success":true}'
LOSS = '{"success":false}'


def won(eid: str, state: str = "reported_success") -> Outcome:
    return Outcome(eid, WIN, True, state, "")


def lost(eid: str, error: str = "boom") -> Outcome:
    return Outcome(eid, LOSS, False, "reported_failure", error)


async def claimed_worker_execution(store: Store, cue_id: str = CUE) -> tuple[int, str]:
    """A worker execution claimed by "w1", with its lease and armed outcome deadline."""
    k = store.keys
    p, eid = await put_execution(
        store, cue_id, tr="worker", st="delivering", tk="t", cw="w1", cla=NOW - S, lx=NOW + 99 * S, od=NOW + S
    )
    await store.redis.zadd(k.claims(p), {eid: NOW + 99 * S})
    await store.redis.zadd(k.deadlines(p), {eid: NOW + S})
    return p, eid


# ---- outcomes_record -----------------------------------------------------------------------------
async def test_record_success_ends_a_claimed_worker_execution(store: Store) -> None:
    k = store.keys
    await put_cue(store, tr="worker", fs=2)
    p, eid = await claimed_worker_execution(store)
    await store.redis.zadd(k.work_filtered(p, ACCT, "t", None), {eid: 1})  # a stale index entry goes too
    assert await store.outcomes.record(won(eid), NOW) == Recorded(Status.OK, "success")
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["st"], h["oc"], h["os"], h["ua"], h["da"], h["em"], h["od"], h["lx"], h["vd"]) == (
        "success",
        WIN,
        "reported_success",
        str(NOW),
        str(NOW),
        "",
        "",
        "",
        "1",
    )
    for key in (
        k.claims(p),
        k.deadlines(p),
        k.work(p, ACCT),
        k.work_filtered(p, ACCT, "t", None),
        k.unclaimed(p),
    ):
        assert await store.redis.zscore(key, eid) is None, key
    c = await store.redis.hgetall(k.cue(CUE))
    assert (c["rc"], c["lr"], c["fs"], c["fsa"]) == ("1", str(NOW), "0", "")  # a success resets the streak
    assert await dirty(store, k.part(p)) == {f"exec:{eid}", f"cue:{CUE}"}


async def test_record_failure_of_a_webhook_awaiting_its_outcome(store: Store) -> None:
    """pending_outcome → failed with the error; a webhook's run count is the dispatcher's, not the
    outcome's."""
    k = store.keys
    await put_cue(store)
    p, eid = await put_execution(store, st="pending_outcome", da=NOW - S, od=NOW + S)
    await store.redis.zadd(k.deadlines(p), {eid: NOW + S})
    assert await store.outcomes.record(lost(eid), NOW) == Recorded(Status.OK, "failed")
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["st"], h["em"], h["oc"], h["os"], h["da"]) == (
        "failed",
        "boom",
        LOSS,
        "reported_failure",
        str(NOW - S),
    )
    assert await store.redis.zscore(k.deadlines(p), eid) is None
    c = await store.redis.hgetall(k.cue(CUE))
    assert c["fs"] == "1" and "rc" not in c and "lr" not in c


async def test_record_on_a_finished_webhook_execution_keeps_its_status(store: Store) -> None:
    """A delivered webhook (no deadline) reporting later: the outcome is stored, the status stays."""
    k = store.keys
    await put_cue(store)
    p, eid = await put_execution(store, st="success", da=NOW - S)
    assert await store.outcomes.record(lost(eid), NOW) == Recorded(Status.OK, "success")
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["st"], h["oc"], h["os"], h["ua"]) == ("success", LOSS, "reported_failure", str(NOW))
    assert "em" not in h


async def test_record_an_outcome_already_recorded_answers_exists_and_changes_nothing(store: Store) -> None:
    k = store.keys
    await put_cue(store, tr="worker")
    p, eid = await claimed_worker_execution(store)
    await store.outcomes.record(won(eid), NOW)
    await store.redis.delete(k.dirty(k.part(p)))
    before = (await store.redis.hgetall(k.execution(p, eid)), await store.redis.hgetall(k.cue(CUE)))
    assert await store.outcomes.record(lost(eid), NOW + S) == Recorded(Status.EXISTS, "")
    assert await store.outcomes.record(won(eid), NOW + S) == Recorded(Status.EXISTS, "")
    assert (await store.redis.hgetall(k.execution(p, eid)), await store.redis.hgetall(k.cue(CUE))) == before
    assert await dirty(store, k.part(p)) == set()


STATES = {
    "none": "reported_success",
    "manual": "verification_pending",
    "require_external_id": "verified_success",
}


async def test_report_picks_the_state_of_the_cues_verification_mode(store: Store) -> None:
    """With ``states`` the script reads the cue's config (beside the payload) for its verification
    mode and records that mode's state; it answers the state and the execution's created_at."""
    k = store.keys
    for cfg, expected in (
        ('{"verification":{"mode":"manual"}}\n{"big":"payload"}', "verification_pending"),
        ('{"verification":{}}', "reported_success"),
        ('{"verification":null}', "reported_success"),
        ('{"verification":{"mode":"require_external_id"}}', "verified_success"),
        ('{"verification":{"mode":"require_artifacts"}}', "verification_failed"),  # not in states
    ):
        await put_cue(store, cfg=cfg)
        p, eid = await put_execution(store, st="pending_outcome", da=NOW - S)
        got = await store.outcomes.report(
            Outcome(eid, WIN, True, "verification_failed", ""), NOW, account_id=ACCT, states=STATES
        )
        assert got == Reported(Status.OK, "success", expected, CREATED), cfg
        assert await store.redis.hget(k.execution(p, eid), "os") == expected


async def test_report_without_the_cue_uses_the_state_of_mode_none(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, cfg='{"verification":{"mode":"manual"}}')
    _, eid = await put_execution(store, st="pending_outcome")
    await store.redis.delete(k.cue(CUE), k.cue_config(CUE))
    got = await store.outcomes.report(won(eid, "x"), NOW, account_id=ACCT, states=STATES)
    assert (got.status, got.state) == (Status.OK, "reported_success")
    assert await store.redis.hget(k.execution(p, eid), "os") == "reported_success"


async def test_report_of_another_accounts_execution_is_not_found(store: Store) -> None:
    k = store.keys
    p = await put_cue(store)
    _, eid = await put_execution(store, st="pending_outcome")
    got = await store.outcomes.report(won(eid), NOW, account_id="acct_other", states=STATES)
    assert got == Reported(Status.NOT_FOUND, "", "", None)
    assert await store.redis.hget(k.execution(p, eid), "oc") is None


async def test_record_an_unknown_execution_is_not_found(store: Store) -> None:
    k = store.keys
    p = await put_cue(store)
    _, eid = await put_execution(store)
    await unindex(store, eid)
    await store.redis.delete(k.execution(p, eid))
    assert await store.outcomes.record(won(eid), NOW) == Recorded(Status.NOT_FOUND, "")
    assert await store.redis.exists(k.execution(p, eid)) == 0
    assert await store.outcomes.record(won("not-an-id"), NOW) == Recorded(Status.NOT_FOUND, "")


async def test_record_the_scheduled_execution_decides_a_one_time_cue(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, sch=ONCE, tr="worker")
    _, manual = await claimed_worker_execution(store)
    await store.redis.hset(k.execution(p, manual), "tb", "manual")
    await store.executions.reindex([manual])
    assert await store.outcomes.record(won(manual), NOW) == Recorded(Status.OK, "success")
    assert await store.redis.hget(k.cue(CUE), "status") == "active"  # a manual fire decides nothing
    _, scheduled = await claimed_worker_execution(store)
    assert await store.outcomes.record(won(scheduled), NOW) == Recorded(Status.OK, "success")
    assert await store.redis.hget(k.cue(CUE), "status") == "completed"
    assert await store.redis.zscore(k.cue_index(p, ACCT, "completed"), CUE) == CREATED
    assert await store.redis.zscore(k.cue_index(p, ACCT, "active"), CUE) is None


async def test_record_verification_failed_raises_its_alert(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, tr="worker")
    _, eid = await claimed_worker_execution(store)
    assert await store.outcomes.record(
        Outcome(eid, LOSS, False, "verification_failed", "no evidence"), NOW
    ) == (Recorded(Status.OK, "failed"))
    (alert_id,) = await store.redis.zrange(k.alert_index(p, ACCT, "verification_failed"), 0, -1)
    a = await store.redis.hgetall(k.alert(p, alert_id))
    assert (a["eid"], a["md"]) == (eid, '{"outcome_state":"verification_failed","transport":"worker"}')
    assert await store.redis.zscore(k.alert_index(p, ACCT), alert_id) == NOW
    assert [f for _, f in await store.redis.xrange(k.notices(p))] == [{"k": "a", "i": alert_id, "n": "1"}]


async def test_record_consecutive_failures_alert_once_per_streak(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, tr="worker", cfg='{"alerts":{"consecutive_failures":2}}')
    ids = [(await claimed_worker_execution(store))[1] for _ in range(3)]
    for eid in ids:
        assert await store.outcomes.record(lost(eid), NOW) == Recorded(Status.OK, "failed")
    c = await store.redis.hgetall(k.cue(CUE))
    assert (c["fs"], c["fsa"], c["rc"]) == ("3", "1", "3")
    (alert_id,) = await store.redis.zrange(k.alert_index(p, ACCT, "consecutive_failures"), 0, -1)
    a = await store.redis.hgetall(k.alert(p, alert_id))
    assert (a["eid"], a["md"]) == (ids[1], '{"consecutive_failures":2}')  # raised by the second


# ---- many outcomes in one call (record_many: a worker's batch) -----------------------------------
async def test_record_many_answers_per_outcome_and_counts_runs_per_cue(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, tr="worker", rc=4)
    await put_cue(store, SIBLING, tr="worker")
    _, a = await claimed_worker_execution(store)
    _, b = await claimed_worker_execution(store)
    _, c = await claimed_worker_execution(store, SIBLING)
    _, foreign = await put_execution(store, acct="other", tr="worker", st="delivering")
    _, gone = await put_execution(store, tr="worker")
    await unindex(store, gone)
    await store.redis.delete(k.execution(p, gone))
    rows = [won(a), lost(b), won(c), won(foreign), won(gone), lost(a)]
    assert await store.outcomes.record_many(ACCT, rows, NOW) == [
        Recorded(Status.OK, "success"),
        Recorded(Status.OK, "failed"),
        Recorded(Status.OK, "success"),
        Recorded(Status.NOT_FOUND, ""),
        Recorded(Status.NOT_FOUND, ""),
        Recorded(Status.EXISTS, ""),  # the batch's own first outcome for a counts
    ]
    assert (await store.redis.hget(k.execution(p, a), "oc")) == WIN
    assert (await store.redis.hget(k.execution(p, foreign), "st")) == "delivering"
    assert await store.redis.hget(k.cue(CUE), "rc") == "6"
    assert await store.redis.hget(k.cue(SIBLING), "rc") == "1"
    assert await store.redis.zcard(k.claims(p)) == 0
    assert await store.redis.zcard(k.deadlines(p)) == 0
    assert await store.redis.exists(k.execution(p, gone)) == 0


async def test_record_many_keeps_the_failure_streak_in_batch_order(store: Store) -> None:
    """record_outcome defers a success's streak reset to outcome_flush: a failure later in the
    same batch must still count from the reset, and a success after failures ends at 0."""
    k = store.keys
    p = await put_cue(store, tr="worker", fs=5, fsa="1", cfg='{"alerts":{"consecutive_failures":2}}')
    ids = [(await claimed_worker_execution(store))[1] for _ in range(5)]
    rows = [won(ids[0]), lost(ids[1]), lost(ids[2])]
    got = await store.outcomes.record_many(ACCT, rows, NOW)
    assert [r.execution_status for r in got] == ["success", "failed", "failed"]
    c = await store.redis.hgetall(k.cue(CUE))
    assert (c["fs"], c["fsa"], c["rc"]) == ("2", "1", "3")  # reset, then 2 failures: alerted again
    (alert_id,) = await store.redis.zrange(k.alert_index(p, ACCT, "consecutive_failures"), 0, -1)
    assert (await store.redis.hgetall(k.alert(p, alert_id)))["eid"] == ids[2]
    got = await store.outcomes.record_many(ACCT, [lost(ids[3]), won(ids[4])], NOW)
    assert [r.execution_status for r in got] == ["failed", "success"]
    c = await store.redis.hgetall(k.cue(CUE))
    assert (c["fs"], c["fsa"], c["rc"], c["lr"]) == ("0", "", "5", str(NOW))
    assert {f"exec:{e}" for e in ids} | {f"cue:{CUE}"} <= await dirty(store, k.part(p))


async def test_reports_of_one_iteration_are_recorded_in_one_call_in_order(
    store: Store, wire_batches: list[list[Sequence[Any]]]
) -> None:
    """``Outcomes.report``: an account's outcomes for one partition that arrive together share one
    ``outcomes_record.lua`` call, answered as calls one after another would be — a second outcome
    for one execution EXISTS, each picks its own state from its cue's mode, the failure streak and
    run count follow arrival order; another account's report is a call of its own."""
    k = store.keys
    p = await put_cue(
        store, tr="worker", fs=5, fsa="1", cfg='{"verification":{"mode":"require_external_id"}}'
    )
    ids = [(await claimed_worker_execution(store))[1] for _ in range(3)]
    wire_batches.clear()
    with_id = {"require_external_id": "verified_success", "none": "reported_success"}
    without = {"require_external_id": "verification_failed", "none": "reported_success"}
    got = await asyncio.gather(
        store.outcomes.report(won(ids[0]), NOW, account_id=ACCT, states=with_id),
        store.outcomes.report(lost(ids[1]), NOW, account_id=ACCT),
        store.outcomes.report(won(ids[0]), NOW, account_id=ACCT, states=with_id),  # again
        store.outcomes.report(won(ids[2]), NOW, account_id=ACCT, states=without),
        store.outcomes.report(won(ids[1]), NOW, account_id="other"),  # not its account: alone
    )
    assert got == [
        Reported(Status.OK, "success", "verified_success", CREATED),
        Reported(Status.OK, "failed", "reported_failure", CREATED),
        Reported(Status.EXISTS, "", "", None),
        Reported(Status.OK, "success", "verification_failed", CREATED),
        Reported(Status.NOT_FOUND, "", "", None),
    ]
    calls = [str(c[3]) for b in wire_batches for c in b if c[0] == "FCALL"]
    assert calls == [k.claims(p)] * 2  # one call per (partition, account)
    c = await store.redis.hgetall(k.cue(CUE))
    assert (c["rc"], c["fs"]) == ("3", "0")  # a success (reset), a failure (1), a success (reset)
    assert [await store.redis.hget(k.execution(p, e), "os") for e in ids] == [
        "verified_success",
        "reported_failure",
        "verification_failed",
    ]


async def test_a_batchs_index_moves_are_written_per_zset_and_counted_exactly(
    store: Store, backend: Backend, key_prefix: str
) -> None:
    """outcomes_record.lua moves a batch's executions in the listing indexes with one ZREM and one
    ZADD per cell zset (lib/exec_index.lua ix_flush): claimed and unclaimed executions of two
    cues, a cell the batch empties and refills, members still spelled as 36-character ids
    (layout 1), an outcome repeated in the batch — the counts, members and bounds are what
    moving them one by one gives (the invariant check after the test recomputes them all)."""
    k = store.keys
    p = await put_cue(store, tr="worker")
    await put_cue(store, SIBLING, tr="worker")
    claimed = [(await claimed_worker_execution(store, cue))[1] for cue in (CUE, CUE, SIBLING)]
    _, waiting = await put_execution(store, tr="worker")
    _, done = await put_execution(store, tr="worker", st="failed", os="reported_failure", oc=LOSS)
    _, late = await put_execution(store, tr="worker", st="success")  # success without an outcome
    old = k.ix_account(p, ACCT) + "|z|pending||"
    member = await store.redis.zscore(old, index_member(waiting))
    assert member is not None
    await store.redis.zrem(old, index_member(waiting))  # as layout 1 spelt it
    await store.redis.zadd(old, {waiting: member})
    # this test's ZADDs: on the shared server, those MONITOR sees on its keys (other tests run
    # beside it); the session's cluster is this test process's own
    monitor = None if backend.cluster else Monitor(backend.url, key_prefix)
    if monitor:
        await monitor.start()
    else:
        before = await store.redis.info("commandstats")
    rows = [
        won(claimed[0]),
        lost(claimed[1]),
        won(claimed[2]),
        won(waiting),
        won(late),
        won(done),
        lost(waiting),
    ]
    got = await store.outcomes.record_many(ACCT, rows, NOW)
    if monitor:
        zadds = (await monitor.stop(store))["ZADD"]
    else:
        after = await store.redis.info("commandstats")
        zadds = after["cmdstat_zadd"]["calls"] - before.get("cmdstat_zadd", {"calls": 0})["calls"]
    assert [r.status for r in got] == [Status.OK] * 5 + [Status.EXISTS] * 2
    assert [r.execution_status for r in got[:5]] == ["success", "failed", "success", "success", "success"]
    acct = await store.redis.hgetall(k.ix_account(p, ACCT))
    assert "pending||" not in acct  # the batch emptied it: its count and bound are gone
    assert acct["success|reported_success|"] == "4" and acct["#success|reported_success|"] == "2"
    assert acct["failed|reported_failure|"] == "2" and acct["#failed|reported_failure|"] == "1"
    bounds = dict(await store.redis.zrange(k.ix_account(p, ACCT) + "|b", 0, -1, withscores=True))
    assert "zpending||" not in bounds and bounds["csuccess|reported_success|"] == -(NOW - S)
    assert zadds == 22  # one per cell zset (20) and bounds zset (2), not one per execution and registry


# ---- the monthly usage counters: one path, lib/record_outcome.lua --------------------------------
async def test_record_counts_usage_in_the_partition_by_creation_month(store: Store) -> None:
    """Every recorded outcome: ``reported`` and ``succeeded`` / ``failed`` += 1 on the partition's
    hash of the execution's account and creation month, with the usage TTL (the Lua constant is
    ``USAGE_TTL_S``); a refused repeat counts nothing; ``Usage.counts`` adds the partitions'
    hashes to the account's (where ``failed`` without an outcome is counted)."""
    k = store.keys
    await put_cue(store, tr="worker")
    month = month_of(CREATED)
    _, won_eid = await claimed_worker_execution(store)
    p, lost_eid = await claimed_worker_execution(store)
    assert (await store.outcomes.report(won(won_eid), NOW)).status is Status.OK
    assert (await store.outcomes.report(lost(lost_eid), NOW)).status is Status.OK
    assert (await store.outcomes.report(won(won_eid), NOW)).status is Status.EXISTS
    assert (await store.outcomes.record(lost(lost_eid), NOW)).status is Status.EXISTS
    key = k.usage_part(p, ACCT, month)
    assert key == f"{k.part(p)}:usage:{ACCT}:{month}"
    assert await store.redis.hgetall(key) == {"reported": "2", "succeeded": "1", "failed": "1"}
    assert USAGE_TTL_S - 5 < await store.redis.ttl(key) <= USAGE_TTL_S
    await store.usage.add("failed", {(ACCT, month): 1})  # a final failure without an outcome
    counts = await store.usage.counts(ACCT, month)
    assert counts.counters == {"reported": 2, "succeeded": 1, "failed": 2}


async def test_record_many_counts_usage_like_record(store: Store) -> None:
    """``record_many`` (batch pull) counts in the same partition hashes, once per
    recorded outcome and in one HINCRBY per field for the batch; repeats and unknown ids count
    nothing; nothing is written on the account slot."""
    k = store.keys
    await put_cue(store, tr="worker")
    month = month_of(CREATED)
    p, a = await claimed_worker_execution(store)
    _, b = await claimed_worker_execution(store)
    _, c = await claimed_worker_execution(store)
    got = await store.outcomes.record_many(ACCT, [won(a), lost(b), won(c)], NOW)
    assert [r.status for r in got] == [Status.OK] * 3
    got = await store.outcomes.record_many(ACCT, [won(a), won(c)], NOW)
    assert [r.status for r in got] == [Status.EXISTS] * 2
    key = k.usage_part(p, ACCT, month)
    assert await store.redis.hgetall(key) == {"reported": "3", "succeeded": "2", "failed": "1"}
    assert USAGE_TTL_S - 5 < await store.redis.ttl(key) <= USAGE_TTL_S
    assert not await store.redis.exists(k.usage(ACCT, month))
    counts = await store.usage.counts(ACCT, month)
    assert counts.counters == {"reported": 3, "succeeded": 2, "failed": 1}


async def test_a_failed_call_leaves_nothing_for_the_next(store: Store) -> None:
    """A Redis function's library outlives its calls (scripts.load_function): a call that fails
    after counting an outcome must not hand that count to the next call. The first call records
    one outcome, then fails on a malformed second one before its flush (Python never sends
    one: this is the only way to make the script fail midway); the next call counts its own
    outcome only — as an EVAL, whose state dies with each call, always did."""
    k = store.keys
    await put_cue(store, tr="worker")
    p, a = await claimed_worker_execution(store)
    _, b = await claimed_worker_execution(store)
    script, keys, args = store.outcomes._call(p, ACCT, [(won(a), None)], NOW)
    broken = [*args, "no-such-execution", WIN, 1, "reported_success", "", "not a count"]
    ix = await store.redis.hget(k.execution(p, a), "ix")
    with pytest.raises(ResponseError):
        await store.scripts.run(script, keys, broken)
    # the failed call's own half-written state (any failed script's): `a` goes, by hand
    await store.redis.hset(k.execution(p, a), "ix", ix)
    await unindex(store, a)
    await store.redis.delete(k.execution(p, a))
    assert (await store.outcomes.record(won(b), NOW)).status is Status.OK
    key = k.usage_part(p, ACCT, month_of(CREATED))
    assert await store.redis.hgetall(key) == {"reported": "1", "succeeded": "1"}


async def test_record_usage_month_is_pythons_month_of(store: Store) -> None:
    """The script's month of a creation instant (µs, UTC) is ``months.month_of``'s: month and
    year edges, leap days, centuries, and random instants from 1970 to 2200."""
    k = store.keys
    await put_cue(store, tr="worker")
    rng = random.Random(14)
    edges = [
        from_datetime(datetime(y, m, 1, tzinfo=UTC)) + d
        for y in (1970, 1999, 2000, 2024, 2026, 2100, 2199)
        for m in (1, 2, 3, 12)
        for d in (-1, 0)
    ]
    edges += [from_datetime(datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC))]
    edges += [from_datetime(datetime(2100, 2, 28, tzinfo=UTC))]
    for ca in [*edges, *(rng.randrange(1, 7_258_118_400_000_000) for _ in range(150))]:
        if ca < 0:
            continue
        p, eid = await put_execution(store, tr="worker", st="delivering", ca=ca)
        assert (await store.outcomes.report(won(eid), NOW)).status is Status.OK
        key = k.usage_part(p, ACCT, month_of(ca))
        assert await store.redis.hget(key, "reported") == "1", (ca, month_of(ca))
        await store.redis.delete(key)
