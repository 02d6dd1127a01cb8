"""The per-(account, task) claim cap scripts against real Redis: accounts_task_cap (the setting),
claims_cap_take / claims_cap_bind / claims_cap_give / claims_cap_extend (the permits on the
account's slot) and claims_claim's budget (an execution over its task's cap stays listed)."""

from __future__ import annotations

from redis.crc import key_slot

from cuefast.store import Status, Store
from cuefast.store.claims import ClaimRequest, WorkIndex
from cuefast.store.task_caps import parse_caps
from tests.lua.test_work_scripts import ACCT, LEASE, NOW, P, arrange

UNTIL = NOW + LEASE


async def permits(store: Store, task: str = "t") -> dict[str, float]:
    prefix, _ = store.keys.task_permits(ACCT)
    return dict(await store.redis.zrange(prefix + task, 0, -1, withscores=True))


async def test_set_cap_writes_the_account_hash_and_bounds_the_number_of_tasks(store: Store) -> None:
    k = store.keys
    caps = store.task_caps
    assert await caps.set(ACCT, "t", 3, 2, NOW) is Status.NOT_FOUND  # no such account
    await store.redis.hset(k.account(ACCT), "id", ACCT)
    assert await caps.set(ACCT, "t", 3, 2, NOW) is Status.OK
    assert await caps.set(ACCT, "u", 1, 2, NOW) is Status.OK
    assert await caps.set(ACCT, "v", 1, 2, NOW) is Status.LIMIT  # a third capped task
    assert await caps.set(ACCT, "t", 5, 2, NOW) is Status.OK  # changing one is not a new one
    assert parse_caps(await store.redis.hget(k.account(ACCT), "tcaps")) == {"t": 5, "u": 1}
    assert await caps.set(ACCT, "t", 0, 2, NOW) is Status.OK
    assert await caps.set(ACCT, "u", 0, 2, NOW) is Status.OK
    assert await store.redis.hget(k.account(ACCT), "tcaps") is None  # no caps: no field at all


async def test_take_reserves_free_permits_prunes_expired_and_marks_waiters(store: Store) -> None:
    caps = store.task_caps
    prefix, waiting = store.keys.task_permits(ACCT)
    assert key_slot((prefix + "t").encode()) == key_slot(waiting.encode())  # one slot: the account's
    await store.redis.zadd(prefix + "t", {"held": UNTIL, "dead": NOW - 1})
    got = await caps.take(ACCT, "tok", UNTIL, {"t": (3, 5), "u": (2, 1)}, NOW)
    assert got == {"t": 2, "u": 1}  # the dead holder's permit was pruned
    assert await permits(store) == {"held": UNTIL, "tok|1": UNTIL, "tok|2": UNTIL}
    assert await store.redis.hgetall(waiting) == {"t": "1"}  # t wanted more than it got
    assert await caps.take(ACCT, "tok2", UNTIL, {"t": (3, 1)}, NOW) == {"t": 0}


async def test_bind_keeps_used_permits_and_gives_the_rest_back(store: Store) -> None:
    caps = store.task_caps
    _, waiting = store.keys.task_permits(ACCT)
    await caps.take(ACCT, "tok", UNTIL, {"t": (3, 3)}, NOW)
    assert not await caps.bind(ACCT, "tok", {"t": 3}, [("t", "e1", UNTIL + 5)], NOW)
    assert await permits(store) == {"e1": UNTIL + 5}
    await store.redis.hset(waiting, "t", 1)  # someone found t full meanwhile
    await caps.take(ACCT, "tok", UNTIL, {"t": (3, 2)}, NOW)
    assert await caps.bind(ACCT, "tok", {"t": 2}, [], NOW)  # unused permits back: wake
    assert await permits(store) == {"e1": UNTIL + 5}
    assert await store.redis.hgetall(waiting) == {}


async def test_give_frees_permits_and_wakes_only_when_someone_waits(store: Store) -> None:
    caps = store.task_caps
    prefix, waiting = store.keys.task_permits(ACCT)
    await store.redis.zadd(prefix + "t", {"e1": UNTIL, "e2": UNTIL})
    assert not await caps.give(ACCT, ["t", "u"], ["e1", "nope"], NOW)
    assert await permits(store) == {"e2": UNTIL}
    await store.redis.hset(waiting, "t", 1)
    assert not await caps.give(ACCT, ["t"], ["nope"], NOW)  # nothing freed: no wake
    assert await caps.give(ACCT, ["t"], ["e2"], NOW)
    assert await permits(store) == {}
    assert await store.redis.hgetall(waiting) == {}
    # a waiter on a cap whose holder died: the next give prunes it and wakes
    await store.redis.zadd(prefix + "t", {"dead": NOW - 1})
    await store.redis.hset(waiting, "t", 1)
    assert await caps.give(ACCT, ["t"], ["other"], NOW)


async def test_extend_moves_only_held_permits_forward(store: Store) -> None:
    caps = store.task_caps
    prefix, _ = store.keys.task_permits(ACCT)
    await store.redis.zadd(prefix + "t", {"e1": UNTIL})
    assert await caps.extend(ACCT, ["t", "u"], [("e1", UNTIL + 9, ""), ("e2", UNTIL + 9, "")], NOW) == 1
    assert await caps.extend(ACCT, ["t"], [("e1", UNTIL, "")], NOW) == 0  # never backwards
    assert await caps.extend(ACCT, ["t"], [("e1", UNTIL, "t")], NOW) == 0
    assert await permits(store) == {"e1": UNTIL + 9}
    assert await permits(store, "u") == {}
    # a live claim of a known capped task without a permit (its claimer died before the bind)
    # gets one; a task not capped, none
    assert await caps.extend(ACCT, ["t", "u"], [("e3", UNTIL + 5, "u"), ("e4", UNTIL, "x")], NOW) == 1
    assert await permits(store, "u") == {"e3": UNTIL + 5}
    assert await permits(store, "x") == {}


async def test_claim_budget_skips_capped_work_and_keeps_it_listed_in_order(store: Store) -> None:
    k = store.keys
    capped = [await arrange(store, sf=NOW - 100 + i) for i in range(3)]
    free = await arrange(store, sf=NOW - 50, tk="u")
    (rows,) = await store.claims.claim(
        ACCT, "w", LEASE, NOW, [ClaimRequest(WorkIndex(P), 10, (), "t\n1\nzzz\n0")]
    )
    assert [r.execution_id for r in rows] == [capped[0], free]
    assert await store.redis.zrange(k.work(P, ACCT), 0, -1) == capped[1:]  # still listed, in order
    (rows,) = await store.claims.claim(
        ACCT, "w", LEASE, NOW, [ClaimRequest(WorkIndex(P, "t"), 10, (), "t\n0")]
    )
    assert rows == []
    (rows,) = await store.claims.claim(
        ACCT, "w", LEASE, NOW, [ClaimRequest(WorkIndex(P), 0, [capped[2], capped[1]], "t\n1")]
    )
    assert [(r.execution_id, r.status) for r in rows] == [
        (capped[2], Status.OK),
        (capped[1], Status.WRONG_STATE),  # ids mode: over the cap is "not claimable now"
    ]
