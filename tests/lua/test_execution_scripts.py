"""The execution scripts one by one against real Redis (executions_create, executions_cas,
executions_cues, executions_purge_cue): arrange keys → call → assert the answer and the state
(the execution hash, its listings, outbox / delayed / work indexes, idempotency records)."""

from __future__ import annotations

from cuefast.ids import new_execution_id
from cuefast.store import Status, Store
from cuefast.store.executions import PURGE_CUE, Created, ExecutionCue
from tests.lua.seed import ACCT, CREATED, CUE, NOW, SIBLING, S, dirty, put_cue, put_execution, stream_ids

DAY_MS = 24 * 3600 * 1000


async def fire(
    store: Store,
    eid: str,
    *,
    sf: int = NOW,
    payload: str = '{"a":1}',
    acct: str = ACCT,
    fingerprint: str = "",
    replayed_from: str = "",
) -> Created:
    return await store.executions.create(
        execution_id=eid,
        cue_id=CUE,
        account_id=acct,
        scheduled_us=sf,
        payload_json=payload,
        triggered_by="manual" if not replayed_from else "replay",
        replayed_from=replayed_from,
        idem_digest="d1" if fingerprint else "",
        fingerprint=fingerprint,
        response_json=f'{{"id":"{eid}"}}',
        idem_ttl_ms=DAY_MS,
        now_us=NOW,
    )


# ---- executions_create ---------------------------------------------------------------------------
async def test_create_a_manual_webhook_fire_is_queued(store: Store) -> None:
    k = store.keys
    p = await put_cue(store)
    eid = new_execution_id(p)
    assert await fire(store, eid) == Created(Status.OK, "")
    assert await store.redis.hgetall(k.execution(p, eid)) == {
        "id": eid,
        "cue": CUE,
        "acct": ACCT,
        "tr": "webhook",
        "sf": str(NOW),
        "st": "pending",
        "tb": "manual",
        "att": "0",
        "ca": str(NOW),
        "ua": str(NOW),
        "pl": '{"a":1}',
    }
    assert await store.redis.zscore(k.cue_executions(CUE), eid) == NOW
    assert await store.redis.zscore(k.execution_index(p, ACCT), eid) == NOW
    assert await stream_ids(store, k.outbox(p)) == [eid]
    assert await store.redis.zcard(k.delayed(p)) == 0
    assert await dirty(store, k.part(p)) == {f"exec:{eid}"}


async def test_create_a_replay_for_later_waits_in_the_delayed_set(store: Store) -> None:
    k = store.keys
    p = await put_cue(store)
    eid = new_execution_id(p)
    assert await fire(store, eid, sf=NOW + 60 * S, replayed_from="orig") == Created(Status.OK, "")
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["rf"], h["tb"], h["sf"]) == ("orig", "replay", str(NOW + 60 * S))
    assert await store.redis.zscore(k.delayed(p), eid) == NOW + 60 * S
    assert await store.redis.xlen(k.outbox(p)) == 0


async def test_create_a_worker_fire_is_claimable_under_its_task_and_agent(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, tr="worker")
    now, later = new_execution_id(p), new_execution_id(p)
    assert await fire(store, now, payload='{"task":"sum","agent":"bot"}') == Created(Status.OK, "")
    h = await store.redis.hgetall(k.execution(p, now))
    assert (h["tr"], h["tk"], h["ag"]) == ("worker", "sum", "bot")
    for key in (
        k.work(p, ACCT),
        k.work_filtered(p, ACCT, "sum", None),
        k.work_filtered(p, ACCT, None, "bot"),
        k.work_filtered(p, ACCT, "sum", "bot"),
        k.unclaimed(p),
    ):
        assert await store.redis.zscore(key, now) == NOW, key
    assert await store.redis.xlen(k.outbox(p)) == 0
    assert await store.redis.xlen(k.work_signal(p)) == 1
    # scheduled for later: listed at its time, no wake-up now; no task: only the account's index
    assert await fire(store, later, sf=NOW + S, payload='{"task":7}') == Created(Status.OK, "")
    assert "tk" not in await store.redis.hgetall(k.execution(p, later))
    assert await store.redis.zscore(k.work(p, ACCT), later) == NOW + S
    assert await store.redis.zscore(k.unclaimed(p), later) == NOW + S
    assert await store.redis.xlen(k.work_signal(p)) == 1


async def test_create_with_an_idempotency_key_repeats_or_conflicts(store: Store) -> None:
    k = store.keys
    p = await put_cue(store)
    first, second = new_execution_id(p), new_execution_id(p)
    assert await fire(store, first, fingerprint="fp1") == Created(Status.OK, "")
    record = k.idempotency(CUE, "d1")
    assert await store.redis.get(record) == f'fp1|{first}|{{"id":"{first}"}}'
    assert DAY_MS - 1000 < await store.redis.pttl(record) <= DAY_MS
    assert await fire(store, second, fingerprint="fp1") == Created(Status.REPEAT, f'{{"id":"{first}"}}')
    assert await fire(store, second, fingerprint="fp2") == Created(Status.CONFLICT, first)
    assert await store.redis.exists(k.execution(p, second)) == 0
    assert await store.redis.zrange(k.cue_executions(CUE), 0, -1) == [first]
    assert await stream_ids(store, k.outbox(p)) == [first]


async def test_create_for_a_cue_not_the_accounts_is_not_found(store: Store) -> None:
    k = store.keys
    p = await put_cue(store)
    eid = new_execution_id(p)
    assert await fire(store, eid, acct="other") == Created(Status.NOT_FOUND, "")
    await store.redis.delete(k.cue(CUE))
    assert await fire(store, eid) == Created(Status.NOT_FOUND, "")
    assert await store.redis.exists(k.execution(p, eid)) == 0
    assert await store.redis.exists(k.cue_executions(CUE), k.outbox(p)) == 0


# ---- executions_cas ------------------------------------------------------------------------------
async def test_cas_sets_fields_only_while_the_outcome_is_unchanged(store: Store) -> None:
    k = store.keys
    p, eid = await put_execution(store, st="success")
    assert (
        await store.executions.cas(eid, "", "", {"oc": "{}", "os": "reported_success", "ua": NOW})
        is Status.OK
    )
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["oc"], h["os"], h["ua"]) == ("{}", "reported_success", str(NOW))
    assert await dirty(store, k.part(p)) == {f"exec:{eid}"}
    await store.redis.delete(k.dirty(k.part(p)))
    for oc, os in [("", ""), ("{}", "verified"), ('{"x":1}', "reported_success")]:
        assert await store.executions.cas(eid, oc, os, {"os": "verified"}) is Status.CONFLICT, (oc, os)
    assert await store.redis.hget(k.execution(p, eid), "os") == "reported_success"
    assert await dirty(store, k.part(p)) == set()
    assert await store.executions.cas(eid, "{}", "reported_success", {"os": "verified"}) is Status.OK
    assert await store.redis.hget(k.execution(p, eid), "os") == "verified"


async def test_cas_on_a_missing_execution_is_not_found(store: Store) -> None:
    k = store.keys
    eid = new_execution_id(1)
    assert await store.executions.cas(eid, "", "", {"os": "x"}) is Status.NOT_FOUND
    assert await store.redis.exists(k.execution(1, eid)) == 0


# ---- executions_cues -----------------------------------------------------------------------------
async def test_cues_of_the_accounts_executions_only(store: Store) -> None:
    k = store.keys
    p, mine = await put_execution(store)
    _, sibling = await put_execution(store, SIBLING)
    _, foreign = await put_execution(store, acct="other")
    _, no_ca = await put_execution(store)
    await store.redis.hdel(k.execution(p, no_ca), "ca")
    gone = new_execution_id(p)
    found = await store.executions.cues(ACCT, [mine, sibling, foreign, no_ca, gone, "bad"])
    assert found == {
        mine: ExecutionCue(CUE, CREATED),
        sibling: ExecutionCue(SIBLING, CREATED),
        no_ca: ExecutionCue(CUE, 0),
    }


# ---- executions_purge_cue ------------------------------------------------------------------------
async def test_purge_cue_removes_executions_and_every_index_in_batches(store: Store) -> None:
    k = store.keys
    p = k.cue_partition(CUE)
    _, leased = await put_execution(store, st="delivering")
    _, retrying = await put_execution(store, st="retrying")
    _, delayed = await put_execution(store)
    _, claimed = await put_execution(store, tr="worker", st="delivering", tk="t")
    _, claimable = await put_execution(store, tr="worker", tk="t", ag="bot")
    _, kept = await put_execution(store, SIBLING)
    await store.redis.zadd(k.leases(p), {leased: NOW})
    await store.redis.zadd(k.retries(p), {retrying: NOW})
    await store.redis.zadd(k.delayed(p), {delayed: NOW})
    await store.redis.zadd(k.claims(p), {claimed: NOW})
    await store.redis.zadd(k.claimed(p, ACCT), {claimed: NOW})
    work = [k.work(p, ACCT), k.work_filtered(p, ACCT, "t", None), k.work_filtered(p, ACCT, "t", "bot")]
    for key in [*work, k.work_filtered(p, ACCT, None, "bot"), k.unclaimed(p)]:
        await store.redis.zadd(key, {claimable: NOW})
    ids = {leased, retrying, delayed, claimed, claimable}
    keys = [
        k.cue_executions(CUE),
        k.execution_index(p, ACCT),
        k.leases(p),
        k.retries(p),
        k.delayed(p),
        k.work(p, ACCT),
    ]
    assert await store.scripts.run(PURGE_CUE, keys, [k.part(p) + ":", 3]) == 3  # a bounded batch
    assert await store.redis.zcard(k.cue_executions(CUE)) == 2
    assert await store.executions.purge_cue(CUE, ACCT, batch=3) == 2  # the rest
    for eid in ids:
        assert await store.redis.exists(k.execution(p, eid)) == 0
    assert await store.redis.exists(k.cue_executions(CUE), *keys[2:], k.claims(p), k.claimed(p, ACCT)) == 0
    for key in [*work, k.work_filtered(p, ACCT, None, "bot"), k.unclaimed(p)]:
        assert await store.redis.exists(key) == 0, key
    assert await store.redis.zrange(k.execution_index(p, ACCT), 0, -1) == [kept]
    assert await store.redis.exists(k.execution(p, kept)) == 1
    assert await dirty(store, k.part(p)) == {f"exec:{eid}" for eid in ids}
    assert await store.executions.purge_cue(CUE, ACCT) == 0
