"""The worker-transport scripts one by one against real Redis: arrange keys → call → assert the
return value and the resulting state (claim, heartbeat, release, lease_due/lease_reap, missed,
deadline_arm, worker_heartbeat, echo_store), and the one-slot rule for each."""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot

from cuefast.ids import new_execution_id
from cuefast.store import Status, Store
from cuefast.store.claims import Claim, ClaimRequest, Heartbeat, WorkIndex
from cuefast.store.outcomes import Outcome, Recorded
from cuefast.store.scripts import Script, Scripts

P = 1
ACCT = "acct1"
NOW = 1_000_000_000_000
LEASE = 900_000_000


async def arrange(
    store: Store,
    *,
    st: str = "pending",
    sf: int = NOW - 10,
    tk: str = "t",
    ag: str = "",
    acct: str = ACCT,
    listed: bool = True,
    **extra: Any,
) -> str:
    k = store.keys
    eid = new_execution_id(P)
    fields: dict[str, Any] = {
        "id": eid,
        "cue": "cue_ffffffffffff",
        "acct": acct,
        "tr": "worker",
        "sf": sf,
        "st": st,
        "ca": NOW - 100,
        "pl": '{"task": "t"}',
        **extra,
    }
    if tk:
        fields["tk"] = tk
    if ag:
        fields["ag"] = ag
    await store.redis.hset(k.execution(P, eid), mapping=fields)
    await store.executions.reindex([eid])
    if listed:
        for key in {
            k.work(P, acct),
            k.work_filtered(P, acct, tk or None, None),
            k.work_filtered(P, acct, tk or None, ag or None),
        }:
            await store.redis.zadd(key, {eid: sf})
        await store.redis.zadd(k.unclaimed(P), {eid: sf})
    return eid


async def claim_ids(store: Store, ids: list[str], worker: str = "w1", acct: str = ACCT) -> list[Claim]:
    (rows,) = await store.claims.claim(acct, worker, LEASE, NOW, [ClaimRequest(WorkIndex(P), 0, ids)])
    return rows


async def test_claim_ids_mode_codes_and_effects(store: Store) -> None:
    k = store.keys
    ok = await arrange(store, ag="bot")
    future = await arrange(store, sf=NOW + 10)
    done = await arrange(store, st="success", listed=False)
    foreign = await arrange(store, acct="other")
    rows = await claim_ids(store, [ok, future, done, foreign, new_execution_id(P)])
    assert [r.status for r in rows] == [
        Status.OK,
        Status.WRONG_STATE,
        Status.WRONG_STATE,
        Status.NOT_FOUND,
        Status.NOT_FOUND,
    ]
    assert rows[0].execution_id == ok and rows[0].attempt == 1 and rows[0].lease_until == NOW + LEASE
    assert rows[0].task == "t"
    h = await store.redis.hgetall(k.execution(P, ok))
    assert h["st"] == "delivering" and h["cw"] == "w1" and h["cla"] == h["sa"] == h["la"] == str(NOW)
    assert h["att"] == "1" and h["ls"] == str(LEASE)
    for key in (
        k.work(P, ACCT),
        k.work_filtered(P, ACCT, "t", None),
        k.work_filtered(P, ACCT, "t", "bot"),
        k.unclaimed(P),
    ):
        assert await store.redis.zscore(key, ok) is None, key
    assert await store.redis.zscore(k.claims(P), ok) == NOW + LEASE
    listing = await store.executions.listing(ACCT, offset=0, limit=10, worker_id="w1")
    assert (listing.ids, listing.oldest_claimed_us) == ([ok], NOW)
    assert (await claim_ids(store, [ok], "w2"))[0].status is Status.WRONG_STATE


async def test_claim_count_mode_takes_oldest_and_drops_stale_entries(store: Store) -> None:
    k = store.keys
    ids = [await arrange(store, sf=NOW - 100 + i) for i in range(5)]
    await store.redis.hset(k.execution(P, ids[0]), "st", "success")  # stale index entry
    await store.executions.reindex([ids[0]])
    await store.redis.zadd(k.work_filtered(P, ACCT, "t", None), {"gone": NOW - 1000})
    (rows,) = await store.claims.claim(ACCT, "w", LEASE, NOW, [ClaimRequest(WorkIndex(P, "t"), 3)])
    assert [r.execution_id for r in rows] == ids[1:4]
    assert await store.redis.zscore(k.work_filtered(P, ACCT, "t", None), "gone") is None
    (rows,) = await store.claims.claim(ACCT, "w", LEASE, NOW, [ClaimRequest(WorkIndex(P), 10)])
    assert [r.execution_id for r in rows] == [ids[4]]


async def test_heartbeat_codes(store: Store) -> None:
    eid = await arrange(store)
    pending = await arrange(store)
    await claim_ids(store, [eid])
    res = await store.claims.heartbeat(
        P, ACCT, "", LEASE, now_us=NOW + 5, ids=[eid, pending, new_execution_id(P)]
    )
    assert res == [
        Heartbeat(Status.OK, NOW + 5 + LEASE, task="t"),  # its task: its claim cap's permit follows
        Heartbeat(Status.WRONG_STATE, None),
        Heartbeat(Status.NOT_FOUND, None),
    ]
    assert await store.claims.heartbeat(P, ACCT, "w2", LEASE, now_us=NOW, ids=[eid]) == [
        Heartbeat(Status.CONFLICT, None)
    ]
    assert await store.claims.heartbeat(P, "other", "", LEASE, now_us=NOW, ids=[eid]) == [
        Heartbeat(Status.NOT_FOUND, None)
    ]
    assert await store.redis.zscore(store.keys.claims(P), eid) == NOW + 5 + LEASE


async def test_release_restores_claimability(store: Store) -> None:
    k = store.keys
    eid = await arrange(store)
    await claim_ids(store, [eid])
    assert await store.claims.release(P, ACCT, "intruder", NOW, [eid]) == []
    assert await store.claims.release(P, ACCT, "w1", NOW + 1, [eid]) == [eid]
    h = await store.redis.hgetall(k.execution(P, eid))
    assert h["st"] == "pending" and h["att"] == "0" and h["cw"] == "" and h["sa"] == ""
    assert await store.redis.zscore(k.work_filtered(P, ACCT, "t", None), eid) == NOW - 10
    assert await store.redis.zscore(k.claims(P), eid) is None
    assert await store.redis.zscore(k.unclaimed(P), eid) == NOW + 1


async def test_lease_due_and_reap_compare_and_set(store: Store) -> None:
    k = store.keys
    renew, reoffer, fail, moved = [await arrange(store) for _ in range(4)]
    await claim_ids(store, [renew, reoffer, fail, moved])
    later = NOW + LEASE + 1
    rows = await store.claims.expired_leases(P, 100, later)
    assert sorted(r.execution_id for r in rows) == sorted([renew, reoffer, fail, moved])
    assert all(
        r.account_id == ACCT and r.worker_id == "w1" and r.attempts == 1 and r.lease_us == LEASE for r in rows
    )
    lx = str(NOW + LEASE)
    assert all(r.lease_until == lx for r in rows)
    await store.claims.heartbeat(
        P, ACCT, "", LEASE, now_us=later, ids=[moved]
    )  # extended after the judgement
    res = await store.claims.reap_leases(
        P,
        [
            (renew, lx, f"renew:{later + LEASE}"),
            (reoffer, lx, "reoffer"),
            (fail, lx, "fail"),
            (moved, lx, "fail"),
        ],
        later,
    )
    assert res == ["delivering", "retry_ready", "failed", ""]
    assert await store.redis.zscore(k.claims(P), renew) == later + LEASE
    h = await store.redis.hgetall(k.execution(P, reoffer))
    assert (
        h["st"] == "retry_ready" and h["cw"] == "" and h["em"] == "Worker lease expired; execution re-offered"
    )
    assert await store.redis.zscore(k.work(P, ACCT), reoffer) == NOW - 10
    assert (await store.redis.hget(k.execution(P, fail), "st")) == "failed"
    assert (await store.redis.hget(k.execution(P, moved), "st")) == "delivering"
    assert await store.redis.xlen(k.work_signal(P)) >= 1


async def test_missed_only_takes_claimable_work(store: Store) -> None:
    k = store.keys
    old = await arrange(store, sf=NOW - 2000)
    claimed = await arrange(store, sf=NOW - 2000)
    await claim_ids(store, [claimed])
    await store.redis.zadd(k.unclaimed(P), {claimed: NOW - 2000})  # a stale entry
    young = await arrange(store, sf=NOW - 10)
    taken, rows = await store.claims.expire_unclaimed(P, NOW - 1000, 100, NOW)
    assert taken == 2 and [r.execution_id for r in rows] == [old]
    assert await store.redis.hget(k.execution(P, old), "st") == "missed"
    assert await store.redis.hget(k.execution(P, claimed), "st") == "delivering"
    assert await store.redis.zscore(k.work(P, ACCT), old) is None
    assert await store.redis.zscore(k.unclaimed(P), young) is not None


async def test_deadline_arm_once(store: Store) -> None:
    eid = await arrange(store)
    pending = await arrange(store)
    await claim_ids(store, [eid])
    assert await store.claims.arm_deadlines(P, [(eid, NOW + 5), (pending, NOW + 5)], NOW) == 1
    assert await store.claims.arm_deadlines(P, [(eid, NOW + 9)], NOW) == 0
    assert await store.redis.zscore(store.keys.deadlines(P), eid) == NOW + 5


ALIVE = 180_000_000
EXPIRE = 86_400_000_000


async def beat(store: Store, worker: str, at: int, limit: int = 1000, handlers: str = "null") -> int | None:
    return await store.workers.heartbeat(
        ACCT, worker, handlers, at, limit=limit, expire_us=EXPIRE, alive_us=ALIVE
    )


async def test_worker_heartbeat_keeps_registration(store: Store) -> None:
    assert await beat(store, "w", NOW, handlers='["a"]') == NOW
    assert await beat(store, "w", NOW + 7) == NOW
    assert await store.workers.seen(ACCT, 0) == [("w", NOW + 7, NOW, "null")]
    assert await store.workers.delete(ACCT, "w") is True
    assert await store.workers.delete(ACCT, "w") is False


async def test_worker_heartbeat_limit_evicts_only_workers_no_longer_alive(store: Store) -> None:
    k = store.keys
    for i in range(3):
        assert await beat(store, f"w{i}", NOW + i, limit=3) == NOW + i
    assert await beat(store, "new", NOW + 3, limit=3) is None  # full of live workers
    assert await beat(store, "w0", NOW + 4, limit=3) == NOW  # a known worker always may
    assert await store.redis.zcard(k.workers(ACCT)) == 3
    # w1 (last seen NOW + 1) is the longest silent; once it is no longer alive it makes room
    assert await beat(store, "new", NOW + 1 + ALIVE, limit=3) is None  # exactly ALIVE old: alive
    assert await beat(store, "new", NOW + 2 + ALIVE, limit=3) == NOW + 2 + ALIVE
    listed = [w.worker_id for w in await store.workers.seen(ACCT, 0)]
    assert listed == ["new", "w0", "w2"]
    assert sorted(await store.redis.hkeys(k.worker_info(ACCT))) == ["new", "w0", "w2"]


async def test_worker_heartbeat_sweeps_expired_entries_in_bounded_batches(store: Store) -> None:
    k = store.keys
    async with store.redis.pipeline(transaction=False) as pipe:  # 150 workers seen long ago
        pipe.zadd(k.workers(ACCT), {f"old{i}": NOW + i for i in range(150)})
        pipe.hset(k.worker_info(ACCT), mapping={f"old{i}": f"{NOW}|null" for i in range(150)})
        await pipe.execute()
    later = NOW + 149 + EXPIRE + 1  # every old entry is now older than the expiry
    assert await store.workers.seen(ACCT, later - EXPIRE) == []  # never listed
    assert await beat(store, "x", later) == later
    assert await store.redis.zcard(k.workers(ACCT)) == 51  # 100 dropped by this call
    assert await store.redis.hlen(k.worker_info(ACCT)) == 51
    assert await beat(store, "x", later + 1) == later
    assert await store.redis.zrange(k.workers(ACCT), 0, -1) == ["x"]
    assert await store.redis.hkeys(k.worker_info(ACCT)) == ["x"]
    # the whole registry goes with the account's last heartbeat + the expiry
    for key in (k.workers(ACCT), k.worker_info(ACCT)):
        assert EXPIRE // 1000 <= await store.redis.pttl(key) <= EXPIRE // 1000 + 1000


async def test_echo_store_limit(store: Store) -> None:
    assert all([await store.echo.save("1.2.3.4", 7, f"t{i}", "{}", limit=3, ttl_s=300) for i in range(3)])
    assert await store.echo.save("1.2.3.4", 7, "t9", "{}", limit=3, ttl_s=300) is False
    assert await store.echo.get("t9") is None and await store.echo.get("t0") == "{}"
    assert await store.echo.save("1.2.3.4", 8, "t9", "{}", limit=3, ttl_s=300) is True


async def test_outcome_batch_once_and_owned(store: Store) -> None:
    k = store.keys
    claimed = await arrange(store)
    pending = await arrange(store)
    foreign = await arrange(store, acct="other")
    await claim_ids(store, [claimed])
    found = await store.executions.cues(ACCT, [claimed, foreign, "bad"])
    assert list(found) == [claimed] and found[claimed].cue_id == "cue_ffffffffffff"
    rows = [
        Outcome(claimed, '{"success": true}', True, "reported_success", ""),
        Outcome(pending, '{"success": false}', False, "reported_failure", "boom"),
        Outcome(foreign, '{"success": true}', True, "reported_success", ""),
        Outcome(claimed, '{"success": false}', False, "reported_failure", "late"),
    ]
    assert await store.outcomes.record_many(ACCT, rows, NOW) == [
        Recorded(Status.OK, "success"),
        Recorded(Status.OK, "failed"),
        Recorded(Status.NOT_FOUND, ""),
        Recorded(Status.EXISTS, ""),
    ]
    h = await store.redis.hgetall(k.execution(P, claimed))
    assert h["st"] == "success" and h["oc"] == '{"success": true}' and h["lx"] == ""
    assert await store.redis.zscore(k.claims(P), claimed) is None
    assert await store.redis.zscore(k.work(P, ACCT), pending) is None
    assert await store.redis.hget(k.execution(P, pending), "em") == "boom"


async def test_every_worker_script_call_touches_one_slot(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, list[str]]] = []
    original_run, original_many = Scripts.run, Scripts.run_many

    async def run(self: Scripts, script: Script, keys: Any, args: Any) -> Any:
        seen.append((script.name, list(keys)))
        return await original_run(self, script, keys, args)

    async def many(self: Scripts, calls: Any) -> Any:
        seen.extend((script.name, list(keys)) for script, keys, _ in calls)
        return await original_many(self, calls)

    monkeypatch.setattr(Scripts, "run", run)
    monkeypatch.setattr(Scripts, "run_many", many)
    await test_lease_due_and_reap_compare_and_set(store)
    await test_release_restores_claimability(store)
    await test_missed_only_takes_claimable_work(store)
    await test_deadline_arm_once(store)
    await test_worker_heartbeat_keeps_registration(store)
    await test_echo_store_limit(store)
    await test_outcome_batch_once_and_owned(store)
    names = {name for name, _ in seen}
    assert names >= {
        "claims_claim",
        "claims_heartbeat",
        "claims_release",
        "claims_expired_leases",
        "claims_reap_leases",
        "claims_expire_unclaimed",
        "claims_arm_deadlines",
        "workers_heartbeat",
        "echo_save",
    }
    for name, keys in seen:
        assert len({key_slot(key.encode()) for key in keys}) == 1, (name, keys)
