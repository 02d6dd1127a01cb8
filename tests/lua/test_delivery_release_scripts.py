"""delivery_release against real Redis: a leased webhook attempt that was never sent goes back to
pending / retry_ready, re-queued at once or later, only for the holder of that exact lease
(delivery_start, _finish and _extend: test_deliver_scripts.py)."""

from __future__ import annotations

from typing import Any

from cuefast.store import Store
from cuefast.store.delivery import ReleasedAttempt
from tests.lua.seed import NOW, S, dirty, put_cue, put_execution, stream_ids

LEASE = NOW + 90 * S


async def leased(store: Store, **fields: Any) -> tuple[int, str, str]:
    """A webhook execution in flight under LEASE, its outbox entry read by the dispatchers:
    (partition, execution id, entry id)."""
    k = store.keys
    await put_cue(store)
    p, eid = await put_execution(store, st="delivering", sa=NOW - S, la=NOW - S, **fields)
    await store.redis.zadd(k.leases(p), {eid: LEASE})
    await store.delivery.ensure_groups([k.outbox(p)])
    entry = await store.redis.xadd(k.outbox(p), {"e": eid})
    await store.redis.xreadgroup(store.delivery.GROUP, "d1", {k.outbox(p): ">"})
    return p, eid, str(entry)


async def test_release_a_first_attempt_requeues_it_at_once(store: Store) -> None:
    k = store.keys
    p, eid, entry = await leased(store)
    assert await store.delivery.release(p, [ReleasedAttempt(eid, entry, LEASE, NOW)], NOW) == ["pending"]
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["st"], h["ua"]) == ("pending", str(NOW))
    assert "sa" not in h and "la" not in h  # this lease's start is undone
    assert await store.redis.zscore(k.leases(p), eid) is None
    assert (await store.redis.xpending(k.outbox(p), store.delivery.GROUP))["pending"] == 0
    (fresh,) = await store.redis.xrange(k.outbox(p))
    assert fresh[0] != entry and fresh[1] == {"e": eid}  # a new entry, the old one deleted
    assert await dirty(store, k.part(p)) == {f"exec:{eid}"}


async def test_release_a_retry_for_later_goes_to_the_delayed_set(store: Store) -> None:
    k = store.keys
    p, eid, entry = await leased(store, att=1, em="HTTP 500")
    res = await store.delivery.release(p, [ReleasedAttempt(eid, entry, LEASE, NOW + 30 * S)], NOW)
    assert res == ["retry_ready"]
    h = await store.redis.hgetall(k.execution(p, eid))
    assert (h["st"], h["sa"], h["la"]) == ("retry_ready", str(NOW - S), str(NOW - S))
    assert await store.redis.zscore(k.delayed(p), eid) == NOW + 30 * S
    assert await store.redis.xlen(k.outbox(p)) == 0


async def test_release_only_by_the_holder_of_that_lease(store: Store) -> None:
    """Another lease (taken over as stale) or none (finished, or a repeat): nothing changes."""
    k = store.keys
    p, eid, entry = await leased(store)
    before = await store.redis.hgetall(k.execution(p, eid))
    assert await store.delivery.release(p, [ReleasedAttempt(eid, entry, LEASE - 1, NOW)], NOW) == [None]
    assert await store.redis.hgetall(k.execution(p, eid)) == before
    assert await store.redis.zscore(k.leases(p), eid) == LEASE
    assert (await store.redis.xpending(k.outbox(p), store.delivery.GROUP))["pending"] == 1
    assert await stream_ids(store, k.outbox(p)) == [eid]
    assert await dirty(store, k.part(p)) == set()
    assert await store.delivery.release(p, [ReleasedAttempt(eid, entry, LEASE, NOW)], NOW) == ["pending"]
    assert await store.delivery.release(p, [ReleasedAttempt(eid, "", LEASE, NOW)], NOW) == [None]
    assert await stream_ids(store, k.outbox(p)) == [eid]
