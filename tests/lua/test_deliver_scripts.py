"""The webhook delivery scripts one by one against real Redis (delivery_start, delivery_finish,
delivery_extend): arrange keys → call → assert the return value and the resulting state. The
lease each attempt gets follows its own timeout; a result or an extension counts only for the
holder of the current lease (its expiry is the fencing token)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cuefast.ids import new_execution_id
from cuefast.months import month_of
from cuefast.store import Status, Store, connect
from cuefast.store.delivery import AttemptResult, BodyOutcome, Finished, Lease
from cuefast.store.keys import Keys
from tests.conftest import Backend
from tests.lua.indexes import assert_indexed

NOW = 1_000_000_000_000_000
S = 1_000_000
CUE = "cue_aaaaaaaaaaaa"


@pytest.fixture
async def store(backend: Backend, key_prefix: str) -> AsyncIterator[Store]:
    s = Store(connect(backend.url, cluster=backend.cluster), Keys(key_prefix, 4))
    await s.preload()
    await s.delivery.ensure_groups()
    try:
        yield s
        await assert_indexed(s)  # as tests/lua/conftest.py's store: the listing indexes consistent
    finally:
        await s.close()


async def arrange(
    store: Store, cfg: str, *, sch: str = "recurring|UTC|latest||* * * * *"
) -> tuple[int, str, str]:
    """A webhook cue with this stored config and one pending execution read from the outbox by
    consumer "a": (partition, execution id, stream entry id)."""
    k = store.keys
    p = k.cue_partition(CUE)
    eid = new_execution_id(p)
    await store.redis.hset(k.cue(CUE), mapping={"acct": "acct1", "name": "n", "status": "active", "sch": sch})
    await store.redis.set(k.cue_config(CUE), cfg + '\n{"a": 1}')
    await store.redis.hset(
        k.execution(p, eid),
        mapping={"cue": CUE, "acct": "acct1", "tr": "webhook", "st": "pending", "sf": NOW, "pl": "{}"},
    )
    await store.executions.reindex([eid])
    await store.redis.xadd(k.outbox(p), {"e": eid})
    (entry,) = [e for e in await store.delivery.read("a", 10, 0) if e.execution_id == eid]
    return p, eid, entry.entry_id


async def start(
    store: Store, p: int, eid: str, now: int, timeout_s: int = 30, stale_s: int = 60
) -> Lease | Status:
    (row,) = (await store.delivery.start({p: [eid]}, now, timeout_s=timeout_s, stale_s=stale_s))[p]
    return row


async def lease_of(store: Store, p: int, eid: str, now: int, timeout_s: int = 30, stale_s: int = 60) -> Lease:
    lease = await start(store, p, eid, now, timeout_s, stale_s)
    assert isinstance(lease, Lease), lease
    return lease


def result(
    eid: str,
    entry: str,
    lease: int,
    ok: bool = True,
    *,
    deadline: int | None = None,
    body: BodyOutcome | None = None,
) -> AttemptResult:
    """A result row; ``body``: the response body's outcome."""
    return AttemptResult(
        eid, ok, 200 if ok else 500, "" if ok else "boom", None, deadline, entry, lease, body
    )


@pytest.mark.parametrize(
    ("cfg", "timeout_s", "lease_s"),
    [
        ("{}", 45, 105),  # no `delivery`: the setting (45 s), lease timeout + 60 s
        ('{"delivery":{}}', 30, 90),  # `delivery` without timeout_seconds: its default, 30 s
        ('{"delivery":{"timeout_seconds":400,"outcome_deadline_seconds":null}}', 400, 460),
        ('{"delivery":{"outcome_deadline_seconds":60,"timeout_seconds":3600}}', 3600, 3660),
        ('{"delivery":{"timeout_seconds":2}}', 2, 80),  # the stale floor (80 s) wins
        # the key inside a string (description, header) is escaped, so it never counts
        (
            '{"description":"\\"delivery\\":{\\"timeout_seconds\\":999}","callback":{"headers":'
            '{"delivery":"{\\"timeout_seconds\\":7}"}}}',
            45,
            105,
        ),
    ],
)
async def test_start_leases_each_attempt_for_its_own_timeout(
    store: Store, cfg: str, timeout_s: int, lease_s: int
) -> None:
    p, eid, _ = await arrange(store, cfg)
    row = await lease_of(store, p, eid, NOW, timeout_s=45, stale_s=80)
    assert row.lease_until == NOW + lease_s * S and row.timeout_s == timeout_s
    assert await store.redis.zscore(store.keys.leases(p), eid) == NOW + lease_s * S  # the same token


async def test_a_batch_moves_each_execution_once_even_when_listed_twice(store: Store) -> None:
    """delivery_start.lua writes a batch's listing moves at its end (lib/exec_index.lua ix_flush):
    an execution listed twice in one batch is leased once and BUSY the second time, so it moves
    once, and a stale one taken over stays where it is (the invariant check after the test
    recomputes every index)."""
    k = store.keys
    p, a, _ = await arrange(store, "{}")
    b = new_execution_id(p)
    stale = new_execution_id(p)
    for eid, st in ((b, "pending"), (stale, "delivering")):
        fields = {
            "cue": CUE,
            "acct": "acct1",
            "tr": "webhook",
            "st": st,
            "sf": NOW,
            "pl": "{}",
            "la": NOW - 900 * S,
        }
        await store.redis.hset(k.execution(p, eid), mapping=fields)
    await store.executions.reindex([b, stale])
    rows = (await store.delivery.start({p: [a, b, a, stale, b]}, NOW, timeout_s=30, stale_s=60))[p]
    assert [r if isinstance(r, Status) else "lease" for r in rows] == [
        "lease",
        "lease",
        Status.BUSY,
        "lease",
        Status.BUSY,
    ]
    cells = await store.redis.hgetall(k.ix_account(p, "acct1"))
    assert cells == {"delivering||": "3"}
    assert await store.redis.hgetall(k.ix_cue(CUE)) == {"delivering||": "3"}


async def test_a_stale_finish_after_a_takeover_records_nothing(store: Store) -> None:
    k = store.keys
    p, eid, entry = await arrange(store, '{"delivery":{"timeout_seconds":30}}')
    first = (await lease_of(store, p, eid, NOW)).lease_until  # lease 90 s
    assert await start(store, p, eid, NOW + 89 * S) is Status.BUSY  # live: nobody else may send it
    second = (await lease_of(store, p, eid, NOW + 91 * S)).lease_until  # expired: taken over
    assert second == NOW + 181 * S
    ek = k.execution(p, eid)
    before = await store.redis.hgetall(ek)
    # the first attempt's (failed) result arrives late: fenced out, nothing touched
    res = await store.delivery.finish({p: [result(eid, entry, first, ok=False)]}, NOW + 100 * S)
    assert res == {p: [Finished(Status.CONFLICT, "", False)]}
    assert await store.redis.hgetall(ek) == before
    assert await store.redis.zscore(k.leases(p), eid) == second
    assert await store.redis.zcard(k.retries(p)) == 0
    pending = await store.redis.xpending(k.outbox(p), store.delivery.GROUP)
    assert pending["pending"] == 1  # the entry stays for the current holder
    # the holder's result is recorded, with the stream entry acknowledged and deleted
    res = await store.delivery.finish({p: [result(eid, entry, second)]}, NOW + 101 * S)
    assert res == {p: [Finished(Status.OK, "success", False)]}
    e = await store.redis.hgetall(ek)
    assert e["st"] == "success" and e["att"] == "1" and e["hs"] == "200"
    assert await store.redis.zscore(k.leases(p), eid) is None
    assert await store.redis.xlen(k.outbox(p)) == 0
    assert (await store.redis.xpending(k.outbox(p), store.delivery.GROUP))["pending"] == 0
    # and a repeat of it is fenced out too (its lease is gone)
    res = await store.delivery.finish({p: [result(eid, entry, second)]}, NOW + 102 * S)
    assert res == {p: [Finished(Status.CONFLICT, "", False)]}
    assert (await store.redis.hgetall(ek))["att"] == "1"


async def test_one_finish_call_acknowledges_and_deletes_each_recorded_entry_only(store: Store) -> None:
    """A batch's stream entries are acknowledged and deleted together at the end of the call
    (lib/outbox_ack.lua: one XDEL for the batch): every recorded attempt's entry goes, and a
    fenced-out attempt's entry stays pending for its current holder, wherever it sits."""
    k = store.keys
    arranged = [await arrange(store, "{}") for _ in range(4)]
    p = arranged[0][0]
    leases = [(await lease_of(store, p, eid, NOW)).lease_until for _, eid, _ in arranged]
    taken = (await lease_of(store, p, arranged[1][1], NOW + 200 * S)).lease_until  # stale: taken over
    results = [result(eid, entry, lease) for (_, eid, entry), lease in zip(arranged, leases, strict=True)]
    res = await store.delivery.finish({p: results}, NOW + 201 * S)
    assert [f.status for f in res[p]] == [Status.OK, Status.CONFLICT, Status.OK, Status.OK]
    assert await store.redis.xlen(k.outbox(p)) == 1
    pending = await store.redis.xpending_range(k.outbox(p), store.delivery.GROUP, "-", "+", 10)
    assert [str(x["message_id"]) for x in pending] == [arranged[1][2]]
    assert await store.redis.zscore(k.leases(p), arranged[1][1]) == taken


async def test_one_finish_call_mixes_deferred_and_immediate_index_moves(store: Store) -> None:
    """In one finish call, an attempt whose body carried no outcome has its listing move
    deferred to the end of the call (the accounts' registries: one write per zset), and one
    with a body outcome is moved at once (record_outcome moves it a second time): the same
    cells, both ways, end consistent (the autouse check) and list what each execution is."""
    k = store.keys
    arranged = [await arrange(store, "{}") for _ in range(4)]
    p = arranged[0][0]
    leases = [(await lease_of(store, p, eid, NOW)).lease_until for _, eid, _ in arranged]
    body = BodyOutcome('{"success":true}', True, "reported_success", "")
    rows = [
        result(eid, entry, lease, body=body if i % 2 else None)
        for i, ((_, eid, entry), lease) in enumerate(zip(arranged, leases, strict=True))
    ]
    res = await store.delivery.finish({p: rows}, NOW + S)
    assert [(f.status, f.execution_status, f.outcome_recorded) for f in res[p]] == [
        (Status.OK, "success", False),
        (Status.OK, "success", True),
    ] * 2
    for i, (_, eid, _) in enumerate(arranged):
        e = await store.redis.hgetall(k.execution(p, eid))
        assert e["st"] == "success" and e["ix"] == ("success|reported_success|||" if i % 2 else "success||||")


async def test_extend_only_for_the_holder(store: Store) -> None:
    k = store.keys
    p, eid, _ = await arrange(store, "{}")
    lease = (await lease_of(store, p, eid, NOW)).lease_until
    later = lease + 50 * S
    assert await store.delivery.extend(p, [(eid, lease - 1, later)], NOW) == [None]
    assert await store.redis.zscore(k.leases(p), eid) == lease
    assert await store.delivery.extend(p, [(eid, lease, later)], NOW) == [later]
    assert await store.redis.zscore(k.leases(p), eid) == later
    assert await store.delivery.extend(p, [(eid, lease, later + S)], NOW) == [None]  # the old token


@pytest.mark.parametrize(
    ("deadline", "success", "status"), [(None, True, "success"), (NOW + 600 * S, False, "failed")]
)
async def test_a_body_outcome_is_recorded_with_the_delivery(
    store: Store, deadline: int | None, success: bool, status: str
) -> None:
    """A 2xx body's outcome (§10.6) is written by the same call that records the delivery: no
    crash can record one without the other. With an outcome deadline armed, the outcome ends
    the execution (pending_outcome → its status) and disarms the deadline. The same call counts
    it in the monthly usage (the one path every recorded outcome takes: lib/record_outcome.lua;
    this execution has no created_at, so the month is the call's)."""
    k = store.keys
    p, eid, entry = await arrange(store, '{"delivery":{"timeout_seconds":30}}')
    lease = (await lease_of(store, p, eid, NOW)).lease_until
    body = BodyOutcome('{"success":%s,"result":"r"}' % ("true" if success else "false"), success, "", "")
    row = result(eid, entry, lease, deadline=deadline, body=body)
    res = await store.delivery.finish({p: [row]}, NOW + S)
    assert res == {p: [Finished(Status.OK, status, True)]}
    e = await store.redis.hgetall(k.execution(p, eid))
    assert e["st"] == status and e["oc"] == body.outcome_json and e["da"] == str(NOW + S)
    assert await store.redis.zscore(k.deadlines(p), eid) is None
    verdict = "succeeded" if success else "failed"
    assert (await store.usage.counts("acct1", month_of(NOW + S))).counters == {"reported": 1, verdict: 1}


async def test_a_body_outcome_never_replaces_a_recorded_one(store: Store) -> None:
    k = store.keys
    p, eid, entry = await arrange(store, "{}")
    await store.redis.hset(k.execution(p, eid), mapping={"oc": '{"success":true}', "os": "reported_success"})
    await store.executions.reindex([eid])
    lease = (await lease_of(store, p, eid, NOW)).lease_until
    row = result(eid, entry, lease, body=BodyOutcome('{"success":false}', False, "", ""))
    assert await store.delivery.finish({p: [row]}, NOW + S) == {p: [Finished(Status.OK, "success", False)]}
    assert (await store.redis.hget(k.execution(p, eid), "oc")) == '{"success":true}'
    assert (await store.usage.counts("acct1", month_of(NOW + S))).counters == {}  # nothing recorded
