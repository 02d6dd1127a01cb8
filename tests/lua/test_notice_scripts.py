"""The notice scripts against real Redis (notices_finish, notices_move_due): a notice entry is
acknowledged and deleted together with its retry, and due retries go back onto the stream."""

from __future__ import annotations

from cuefast.store import Status, Store
from cuefast.store.notices import FINISH, Notice
from tests.lua.seed import NOW, S

P = 1


async def read_one(store: Store, kind: str = "a", ident: str = "alert-1") -> Notice:
    await store.notices.ensure_groups()
    await store.redis.xadd(store.keys.notices(P), {"k": kind, "i": ident, "n": "1"})
    (notice,) = await store.notices.read("n1", 10, 0)
    return notice


# ---- notices_finish ------------------------------------------------------------------------------
async def test_finish_acknowledges_and_deletes_the_entry(store: Store) -> None:
    k = store.keys
    notice = await read_one(store)
    res = await store.scripts.run(
        FINISH, [k.notices(P), k.notice_retries(P)], [store.notices.GROUP, notice.entry_id, "", 0]
    )
    assert res == Status.OK
    assert await store.redis.xlen(k.notices(P)) == 0
    assert (await store.redis.xpending(k.notices(P), store.notices.GROUP))["pending"] == 0
    assert await store.redis.exists(k.notice_retries(P)) == 0


async def test_finish_with_a_retry_schedules_it_once(store: Store) -> None:
    k = store.keys
    notice = await read_one(store, "f", "exec-1")
    retry = f"f|exec-1|2|{NOW}"
    await store.notices.finish(P, notice.entry_id, retry, NOW + 60 * S)
    assert await store.redis.xlen(k.notices(P)) == 0
    assert await store.redis.zrange(k.notice_retries(P), 0, -1, withscores=True) == [(retry, NOW + 60 * S)]
    # a repeat (the sender retried the call): the same entry, the same retry, nothing doubled
    await store.notices.finish(P, notice.entry_id, retry, NOW + 60 * S)
    assert await store.redis.zcard(k.notice_retries(P)) == 1
    assert await store.redis.xlen(k.notices(P)) == 0


# ---- notices_move_due ----------------------------------------------------------------------------
async def test_move_due_puts_due_retries_back_on_the_stream(store: Store) -> None:
    k = store.keys
    await store.redis.zadd(
        k.notice_retries(P),
        {"a|alert-1|2": NOW - 2, f"f|exec-1|3|{NOW - S}": NOW - 1, "w|exec-2|2|5": NOW + 1},
    )
    assert await store.notices.move_due(NOW) == 2
    entries = [f for _, f in await store.redis.xrange(k.notices(P))]
    assert entries == [
        {"k": "a", "i": "alert-1", "n": "2"},
        {"k": "f", "i": "exec-1", "n": "3", "t": str(NOW - S)},
    ]
    assert await store.redis.zrange(k.notice_retries(P), 0, -1) == ["w|exec-2|2|5"]
    assert await store.notices.move_due(NOW) == 0


async def test_move_due_in_bounded_batches_drops_a_malformed_member(store: Store) -> None:
    k = store.keys
    await store.redis.zadd(k.notice_retries(P), {"garbage": NOW - 3, "a|x|1": NOW - 2, "a|y|1": NOW - 1})
    assert await store.notices.move_due(NOW, batch=2) == 2  # "garbage" is dropped, and counted
    assert [f["i"] for _, f in await store.redis.xrange(k.notices(P))] == ["x"]
    assert await store.redis.zrange(k.notice_retries(P), 0, -1) == ["a|y|1"]
    assert await store.notices.move_due(NOW, batch=2) == 1
    assert [f["i"] for _, f in await store.redis.xrange(k.notices(P))] == ["x", "y"]
