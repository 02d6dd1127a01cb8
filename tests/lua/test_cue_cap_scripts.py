"""A cue's ``delivery.max_concurrency`` in the delivery scripts (lib/cue_cap.lua inside
delivery_start, delivery_finish, delivery_release; cues_delete and restore_executions drop what it
keeps): over the cap an execution is QUEUED (it stays pending, on the cue's waiting list), a
recorded attempt gives its permit to the oldest waiter with a fresh outbox entry, and permits that
nothing can use any more free themselves."""

from __future__ import annotations

import json

from cuefast.store import Status, Store
from cuefast.store.delivery import RATE_LATE_US, AttemptResult, Lease, ReleasedAttempt
from tests.lua.seed import ACCT, CUE, NOW, S, put_cue, put_execution, stream_ids


def cfg(cap: int | None) -> str:
    """A stored config: at most ``cap`` attempts in flight (None: no cap), no outcome deadline."""
    if cap is None:
        return '{"delivery":{"outcome_deadline_seconds":null}}'
    return '{"delivery":{"outcome_deadline_seconds":null,"max_concurrency":' + str(cap) + "}}"


async def pending(store: Store, n: int, cap: int | None = 1) -> tuple[int, list[str]]:
    """A webhook cue with this cap and ``n`` pending executions (no outbox entries: the tests start
    them by id): (partition, ids oldest first)."""
    await store.delivery.ensure_groups()
    p = await put_cue(store, cfg=cfg(cap))
    ids = [(await put_execution(store, sf=NOW - (60 - i) * S))[1] for i in range(n)]
    return p, ids


async def start(store: Store, p: int, eid: str, now: int = NOW) -> Lease | Status:
    (row,) = (await store.delivery.start({p: [eid]}, now, timeout_s=30, stale_s=60))[p]
    return row


async def finish(store: Store, p: int, eid: str, lease: Lease, now: int = NOW) -> str:
    row = AttemptResult(eid, True, 200, "", None, None, "", lease.lease_until, None)
    (done,) = (await store.delivery.finish({p: [row]}, now))[p]  # type: ignore[misc]
    assert done.status is Status.OK
    return done.execution_status


async def state(store: Store, p: int) -> tuple[list[str], list[str]]:
    """(permit holders, waiting list) of CUE."""
    k = store.keys
    held = [str(m) for m in await store.redis.zrange(f"{k.part(p)}:cap:{CUE}", 0, -1)]
    waiting = [str(m) for m in await store.redis.lrange(f"{k.part(p)}:capq:{CUE}", 0, -1)]
    return sorted(held), waiting


async def test_over_the_cap_an_execution_waits_pending_and_a_finish_hands_it_the_permit(
    store: Store,
) -> None:
    k = store.keys
    p, (e1, e2, e3) = await pending(store, 3)
    lease = await start(store, p, e1)
    assert isinstance(lease, Lease)
    assert await start(store, p, e2) is Status.QUEUED
    assert await start(store, p, e3) is Status.QUEUED
    assert await start(store, p, e2) is Status.QUEUED  # a second entry of a waiter: not listed twice
    assert await state(store, p) == ([e1], [e2, e3])
    for eid, mark in ((e2, "w"), (e3, "w")):
        assert await store.redis.hmget(k.execution(p, eid), ["st", "cp"]) == ["pending", mark]
    assert await stream_ids(store, k.outbox(p)) == []
    assert await finish(store, p, e1, lease) == "success"
    assert await state(store, p) == ([e2], [e3])  # only the oldest waiter: the cap is 1
    assert await stream_ids(store, k.outbox(p)) == [e2]  # its fresh entry: no polling
    assert await store.redis.hget(k.execution(p, e1), "cp") is None
    assert await start(store, p, e3) is Status.QUEUED  # still behind e2's permit
    lease2 = await start(store, p, e2)
    assert isinstance(lease2, Lease)
    assert await finish(store, p, e2, lease2) == "success"
    assert await state(store, p) == ([e3], [])
    assert isinstance(await start(store, p, e3), Lease)


async def test_a_new_arrival_queues_behind_the_waiters_and_a_raised_cap_lets_them_go_first(
    store: Store,
) -> None:
    k = store.keys
    p, (e1, e2, e3, e4) = await pending(store, 4)
    assert isinstance(await start(store, p, e1), Lease)
    assert await start(store, p, e2) is Status.QUEUED
    assert await start(store, p, e3) is Status.QUEUED
    await store.redis.set(k.cue_config(CUE), cfg(3))  # PATCH: the cap raised to 3
    assert await start(store, p, e4) is Status.QUEUED  # room for 2: e2 and e3 go first
    assert await state(store, p) == (sorted([e1, e2, e3]), [e4])
    assert await stream_ids(store, k.outbox(p)) == [e2, e3]


async def test_a_removed_cap_lets_every_waiter_go_at_the_next_finish(store: Store) -> None:
    k = store.keys
    p, (e1, e2, e3) = await pending(store, 3)
    lease = await start(store, p, e1)
    assert isinstance(lease, Lease)
    assert [await start(store, p, e) for e in (e2, e3)] == [Status.QUEUED, Status.QUEUED]
    await store.redis.set(k.cue_config(CUE), cfg(None))
    assert await finish(store, p, e1, lease) == "success"
    assert await stream_ids(store, k.outbox(p)) == [e2, e3]
    assert await state(store, p) == (sorted([e2, e3]), [])


async def test_a_cue_without_a_cap_writes_nothing_of_it(store: Store) -> None:
    k = store.keys
    p, (e1, e2) = await pending(store, 2, cap=None)
    l1, l2 = await start(store, p, e1), await start(store, p, e2)
    assert isinstance(l1, Lease) and isinstance(l2, Lease)
    assert await finish(store, p, e1, l1) == "success"
    assert await store.redis.hget(k.execution(p, e2), "cp") is None
    assert await state(store, p) == ([], [])


async def test_an_attempt_taken_over_as_stale_keeps_its_permit(store: Store) -> None:
    """A crashed holder: its lease expires, the stale recovery re-sends under the same permit, and
    its finish frees it for the waiter."""
    p, (e1, e2) = await pending(store, 2)
    first = await start(store, p, e1)
    assert isinstance(first, Lease)
    assert await start(store, p, e2) is Status.QUEUED
    later = first.lease_until + S
    assert await start(store, p, e2, later) is Status.QUEUED  # the expired holder still counts
    again = await start(store, p, e1, later)
    assert isinstance(again, Lease) and again.lease_until > first.lease_until
    assert await state(store, p) == ([e1], [e2])
    assert await finish(store, p, e1, again, later) == "success"
    assert await state(store, p) == ([e2], [])


async def test_a_permit_nothing_can_use_frees_itself(store: Store) -> None:
    """A holder whose execution is gone (deleted between a grant and its delivery) is dropped once
    its check time has passed; a live one is not."""
    k = store.keys
    p, (e1, e2, e3, e4) = await pending(store, 4)
    assert isinstance(await start(store, p, e1), Lease)
    assert await start(store, p, e2) is Status.QUEUED
    await store.redis.hset(k.execution(p, e1), "st", "success")  # ended without its finish
    await store.executions.reindex([e1])
    assert await start(store, p, e3) is Status.QUEUED  # its lease has not expired: not checked yet
    assert await state(store, p) == ([e1], [e2, e3])
    late = NOW + 200 * S
    assert await start(store, p, e4, late) is Status.QUEUED  # checked, dropped: e2's turn
    assert await state(store, p) == ([e2], [e3, e4])
    assert await stream_ids(store, k.outbox(p)) == [e2]


async def test_a_hand_back_keeps_the_permit_for_the_requeued_attempt(store: Store) -> None:
    k = store.keys
    p, (e1, e2) = await pending(store, 2)
    lease = await start(store, p, e1)
    assert isinstance(lease, Lease)
    assert await start(store, p, e2) is Status.QUEUED
    assert await store.delivery.release(p, [ReleasedAttempt(e1, "", lease.lease_until, NOW)], NOW) == [
        "pending"
    ]
    assert await state(store, p) == ([e1], [e2])
    assert await stream_ids(store, k.outbox(p)) == [e1]
    assert isinstance(await start(store, p, e1), Lease)  # it starts again under its permit


async def test_cues_delete_and_restore_executions_drop_what_the_cap_keeps(store: Store) -> None:
    k = store.keys
    p, (e1, e2) = await pending(store, 2)
    assert isinstance(await start(store, p, e1), Lease)
    assert await start(store, p, e2) is Status.QUEUED
    doc = {**(await store.redis.hgetall(k.execution(p, e2))), "id": e2}
    assert doc["cp"] == "w"
    await store.redis.delete(k.execution(p, e2))
    await store.executions.reindex([e2])
    assert await store.restore.executions([(p, [json.dumps(doc)])], NOW) == 1
    assert await store.redis.hget(k.execution(p, e2), "cp") is None  # a restored waiter is queued again
    assert e2 in await stream_ids(store, k.outbox(p))
    assert await store.cues.delete(CUE, ACCT) is not None
    assert not await store.redis.exists(f"{k.part(p)}:cap:{CUE}", f"{k.part(p)}:capq:{CUE}")


async def test_delivery_host_rate_books_a_hosts_slots_one_interval_apart(store: Store) -> None:
    """delivery_host_rate: one window per (account, host) on the account's slot; one attempt per
    interval — one that cannot go now is booked the next free slot, keeps it when it asks again
    (told the same slot before it, let go at it, the booking consumed), and a later one is booked
    behind it: slots are handed out in the order attempts ask."""
    k, d = store.keys, store.delivery
    assert await d.rate(ACCT, "h:80", 4, NOW, "e1:1") == (True, NOW + S // 4)
    assert await d.rate(ACCT, "h:80", 4, NOW + 1, "e2:1") == (False, NOW + S // 4)  # booked
    assert await d.rate(ACCT, "h:80", 4, NOW + 2, "e3:1") == (False, NOW + S // 2)  # behind it
    assert await d.rate(ACCT, "h:80", 4, NOW + S // 8, "e2:1") == (False, NOW + S // 4)  # kept
    assert await d.rate(ACCT, "other:80", 4, NOW, "e4:1") == (True, NOW + S // 4)  # per host
    assert await d.rate("acct2", "h:80", 4, NOW, "e5:1") == (True, NOW + S // 4)  # per account
    window, booked = k.host_rate(ACCT, "h:80")
    assert await store.redis.zrange(booked, 0, -1, withscores=True) == [
        ("e2:1", NOW + S // 4),
        ("e3:1", NOW + S // 2),
    ]
    assert await d.rate(ACCT, "h:80", 4, NOW + S // 4 + 5, "e2:1") == (True, NOW + 3 * S // 4)  # its slot
    assert await d.rate(ACCT, "h:80", 4, NOW + S // 4 + 6, "e6:1") == (False, NOW + 3 * S // 4)
    assert await store.redis.zscore(booked, "e2:1") is None  # consumed: a retry asks anew
    assert await store.redis.get(window) == str(NOW + S)
    assert 0 < await store.redis.pttl(window) <= 60_000 + 750 + 50  # a minute past its last slot


async def test_delivery_host_rate_rebooks_a_late_booking_and_drops_old_ones(store: Store) -> None:
    """A booking asked for more than one interval after its slot (its dispatcher died, or it came
    back late) is not sent on top of the slots handed out since: it goes behind them (or at once
    when the window is free); bookings an hour old are dropped (their attempt never came)."""
    k, d = store.keys, store.delivery
    _, booked = k.host_rate(ACCT, "h:80")
    assert await d.rate(ACCT, "h:80", 4, NOW, "e1:1") == (True, NOW + S // 4)
    assert await d.rate(ACCT, "h:80", 4, NOW, "e2:1") == (False, NOW + S // 4)
    assert await d.rate(ACCT, "h:80", 4, NOW, "e3:1") == (False, NOW + S // 2)
    assert await d.rate(ACCT, "h:80", 4, NOW + S // 2 + 1, "e2:1") == (False, NOW + 3 * S // 4)  # behind
    assert await d.rate(ACCT, "h:80", 4, NOW + S // 2 + 2, "e3:1") == (True, NOW + S)  # on time
    assert await d.rate(ACCT, "h:80", 4, NOW + 5 * S, "e2:1") == (True, NOW + 5 * S + S // 4)  # free
    assert await store.redis.zcard(booked) == 0
    assert await d.rate(ACCT, "h:80", 4, NOW + 5 * S, "e7:1") == (False, NOW + 5 * S + S // 4)
    assert await d.rate(ACCT, "h:80", 4, NOW + 3606 * S, "e8:1") == (True, NOW + 3606 * S + S // 4)
    assert await store.redis.zcard(booked) == 0  # e7's booking, an hour old, dropped


class Held:
    """A leased attempt as the host caps see it (``store.delivery.Attempt``)."""

    def __init__(self, p: int, eid: str, lease_until: int, account: str = ACCT) -> None:
        self.account, self.p, self.eid, self.lease_until = account, p, eid, lease_until
        self.attempts = 0


async def host_state(store: Store, host: str = "h:80") -> tuple[list[str], list[str]]:
    permits, waiting = store.keys.host_permits(ACCT, host)
    return (
        sorted(str(m) for m in await store.redis.zrange(permits, 0, -1)),
        [str(w) for w in await store.redis.lrange(waiting, 0, -1)],
    )


async def test_delivery_host_take_and_give_hold_a_cap_per_account_host_in_order(store: Store) -> None:
    """delivery_host_take / delivery_host_give on the account's slot, delivery_wake on the
    partition: over the cap an attempt waits (listed once, in order); a give reserves the room for
    the oldest waiter and moves it from the delayed zset to its outbox; its attempt then takes the
    reserved permit."""
    k = store.keys
    await store.delivery.ensure_groups()
    p, (e1, e2, e3) = await pending(store, 3, cap=None)
    lease = NOW + 90 * S
    assert await store.delivery.host_take(Held(p, e1, lease), "h:80", 1, NOW)
    assert not await store.delivery.host_take(Held(p, e2, lease), "h:80", 1, NOW)
    assert not await store.delivery.host_take(Held(p, e3, lease), "h:80", 1, NOW)
    assert not await store.delivery.host_take(Held(p, e2, lease), "h:80", 1, NOW + 1)  # listed once
    assert await host_state(store) == ([e1], [f"{p}|{e2}", f"{p}|{e3}"])
    assert await store.delivery.host_take(Held(p, e1, lease), "other:80", 1, NOW)  # per host
    for eid in (e2, e3):  # handed back, re-queued later (the safety net)
        await store.redis.zadd(k.delayed(p), {eid: NOW + 30 * S})
    await store.delivery.host_give(ACCT, "h:80", 1, e1, NOW + S)
    assert await host_state(store) == ([e2], [f"{p}|{e3}"])  # reserved for the oldest waiter
    assert await stream_ids(store, k.outbox(p)) == [e2]
    assert await store.redis.zrange(k.delayed(p), 0, -1) == [e3]
    assert not await store.delivery.host_take(Held(p, e3, lease), "h:80", 1, NOW + S)  # e2's turn
    assert await store.delivery.host_take(Held(p, e2, lease), "h:80", 1, NOW + S)
    assert await store.redis.zscore(k.host_permits(ACCT, "h:80")[0], e2) == lease
    await store.delivery.wake([f"{p}|{e2}"], NOW)  # not in delayed any more: not queued twice
    assert await stream_ids(store, k.outbox(p)) == [e2]


async def test_a_dead_holders_host_permit_expires_with_its_lease(store: Store) -> None:
    """A dispatcher that took a permit and died never gives it back: it expires at the attempt's
    lease, and the next take lets the oldest waiter through first."""
    k = store.keys
    await store.delivery.ensure_groups()
    p, (e1, e2, e3) = await pending(store, 3, cap=None)
    assert await store.delivery.host_take(Held(p, e1, NOW + 90 * S), "h:80", 1, NOW)
    assert not await store.delivery.host_take(Held(p, e2, NOW + 90 * S), "h:80", 1, NOW)
    await store.redis.zadd(k.delayed(p), {e2: NOW + 30 * S})
    assert not await store.delivery.host_take(Held(p, e3, NOW + 90 * S), "h:80", 1, NOW + 89 * S)
    late = NOW + 91 * S
    assert not await store.delivery.host_take(Held(p, e3, late + 90 * S), "h:80", 1, late)  # e2 first
    assert await host_state(store) == ([e2], [f"{p}|{e3}"])
    assert await stream_ids(store, k.outbox(p)) == [e2]


async def test_one_delivery_host_rate_call_judges_a_batch_in_order(store: Store) -> None:
    """delivery_host_rate with several attempts (a dispatcher's batch): the first goes and moves
    the window, the others are booked the next slots in order (each after the one before by its
    own cue's interval), as one call each would be."""
    d = store.delivery
    rows = [(4, "e1:1"), (4, "e2:1"), (2, "e3:1")]
    calls = [d.rate_call(ACCT, "h:80", rows, NOW), d.rate_call(ACCT, "other:80", [(4, "e4:1")], NOW)]
    first, other = await store.scripts.run_many(calls)
    assert d.rate_reply(first) == [(True, NOW + S // 4), (False, NOW + S // 4), (False, NOW + S // 2)]
    assert d.rate_reply(other) == [(True, NOW + S // 4)]
    (late,) = await store.scripts.run_many(
        [d.rate_call(ACCT, "h:80", [(4, "e2:1"), (4, "e5:1")], NOW + S // 4)]
    )
    assert d.rate_reply(late) == [(True, NOW + S), (False, NOW + S)]  # e3's own interval: 500 ms


async def test_one_host_take_call_admits_a_batch_up_to_the_cap_in_order(store: Store) -> None:
    """delivery_host_take with several attempts: judged in order, each as its own call would be —
    a re-send keeps its permit, at most ``cap`` hold one, the rest are listed once in order; one
    delivery_host_give for several attempts reserves the room they leave for the oldest waiters."""
    k, d = store.keys, store.delivery
    await d.ensure_groups()
    p, (e1, e2, e3, e4, e5) = await pending(store, 5, cap=None)
    lease = NOW + 90 * S
    rows = [(2, Held(p, e, lease)) for e in (e1, e2, e3, e4)]
    (res,) = await store.scripts.run_many([d.take_call(ACCT, "h:80", rows, NOW)])
    assert d.take_reply(res, 4) == ([True, True, False, False], [])
    assert await host_state(store) == (sorted([e1, e2]), [f"{p}|{e3}", f"{p}|{e4}"])
    again = [(2, Held(p, e, lease)) for e in (e4, e1, e5)]  # e4 listed once, e1 a re-send, e5 behind
    (res,) = await store.scripts.run_many([d.take_call(ACCT, "h:80", again, NOW + 1)])
    assert d.take_reply(res, 3) == ([False, True, False], [])
    assert await host_state(store) == (sorted([e1, e2]), [f"{p}|{e3}", f"{p}|{e4}", f"{p}|{e5}"])
    for eid in (e3, e4, e5):
        await store.redis.zadd(k.delayed(p), {eid: NOW + 30 * S})
    (woken,) = await store.scripts.run_many([d.give_call(ACCT, "h:80", [(2, e1), (2, e2)], NOW + S)])
    assert woken == [f"{p}|{e3}", f"{p}|{e4}"]  # the two oldest waiters get the two permits
    assert await host_state(store) == (sorted([e3, e4]), [f"{p}|{e5}"])
    await d.wake([str(w) for w in woken], NOW + S)
    assert await stream_ids(store, k.outbox(p)) == [e3, e4]
    rows = [(2, Held(p, e, lease)) for e in (e5, e4, e3)]  # e5 still waits: e3, e4 hold the cap
    (res,) = await store.scripts.run_many([d.take_call(ACCT, "h:80", rows, NOW + S)])
    assert d.take_reply(res, 3) == ([False, True, True], [])


async def test_delivery_host_rate_booking_only_never_lets_one_go(store: Store) -> None:
    """delivery_host_rate with book "1" (the dispatcher books before it waits for a host or a
    global slot): a free window is booked now, not taken; a booking is told its slot, due or not;
    the ask with book "0" at the slot takes it."""
    d = store.delivery
    assert await d.rate(ACCT, "h:80", 4, NOW, "e1:1", book=True) == (False, NOW)  # booked now
    assert await d.rate(ACCT, "h:80", 4, NOW, "e2:1", book=True) == (False, NOW + S // 4)
    assert await d.rate(ACCT, "h:80", 4, NOW + 1, "e1:1", book=True) == (False, NOW)  # kept
    assert await d.rate(ACCT, "h:80", 4, NOW + 2, "e3:1") == (False, NOW + S // 2)  # behind them
    assert await d.rate(ACCT, "h:80", 4, NOW + 3, "e1:1") == (True, NOW + 3 * S // 4)  # taken
    assert await d.rate(ACCT, "h:80", 4, NOW + S // 4, "e2:1", book=True) == (False, NOW + S // 4)
    assert await d.rate(ACCT, "h:80", 4, NOW + S // 4 + 1, "e2:1") == (True, NOW + 3 * S // 4)


async def test_delivery_host_rate_takes_a_booking_up_to_the_late_floor(store: Store) -> None:
    """At a fast rate (1,000/s: 1 ms apart) a booking may still be taken up to ``RATE_LATE_US``
    (100 ms) after its slot — the dispatcher's own way from its wake-up to its ask — not only one
    interval; later, it is booked again behind the slots handed out since."""
    d = store.delivery
    assert RATE_LATE_US == 100_000
    assert await d.rate(ACCT, "h:80", 1000, NOW, "e1:1", book=True) == (False, NOW)
    assert await d.rate(ACCT, "h:80", 1000, NOW, "e2:1", book=True) == (False, NOW + 1000)
    assert await d.rate(ACCT, "h:80", 1000, NOW, "e3:1", book=True) == (False, NOW + 2000)
    assert await d.rate(ACCT, "h:80", 1000, NOW + 50_000, "e1:1") == (True, NOW + 3000)  # 50 ms late
    assert await d.rate(ACCT, "h:80", 1000, NOW + 101_001, "e2:1") == (True, NOW + 102_001)  # rebooked:
    # the window was free by then, so it goes at once — behind nothing
    assert await d.rate(ACCT, "h:80", 1000, NOW + 101_002, "e4:1", book=True) == (False, NOW + 102_001)
    assert await d.rate(ACCT, "h:80", 1000, NOW + 202_500, "e3:1") == (True, NOW + 203_500)
