"""replays_create, replays_take, replays_advance against real Redis: a bulk-replay job stored with
its sources and idempotency key in one step, a batch leased to one runner at a time, advanced
once (a stale batch changes nothing), finished when its sources run out."""

from __future__ import annotations

from cuefast.store import Status, Store

NOW = 1_795_434_122_000_000
FIELDS = {
    "acct": "acct-1",
    "status": "running",
    "rate": 2,
    "selected": 3,
    "pos": 0,
    "replayed": 0,
    "skipped": 0,
}
IDS = [
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000002",
    "00000000-0000-4000-8000-000000000003",
]


async def create(store: Store, job: str, fp: str = "fp1", ids: list[str] = IDS) -> tuple[Status, str]:
    return await store.replays.create(
        job, "acct-1", {**FIELDS, "selected": len(ids)}, ids, key_digest="k1", fingerprint=fp, now_us=NOW
    )


async def test_replays_create_stores_the_job_its_sources_and_its_key_once(store: Store) -> None:
    k = store.keys
    assert await create(store, "rpl_a") == (Status.OK, "rpl_a")
    assert await store.redis.lrange(k.replay_ids("rpl_a"), 0, -1) == IDS
    assert await store.redis.zscore(k.replays_active(), "rpl_a") == NOW
    assert (await store.replays.get("rpl_a"))["acct"] == "acct-1"
    assert await create(store, "rpl_b") == (Status.REPEAT, "rpl_a")  # same key, same request
    assert await create(store, "rpl_c", fp="other") == (Status.CONFLICT, "rpl_a")
    assert await store.replays.get("rpl_b") == {} and await store.replays.get("rpl_c") == {}
    none = await store.replays.create(
        "rpl_d", "acct-1", {**FIELDS, "status": "done"}, [], key_digest="", fingerprint="", now_us=NOW
    )
    assert none == (Status.OK, "rpl_d")
    assert await store.redis.zscore(k.replays_active(), "rpl_d") is None  # nothing to run


async def test_replays_take_leases_a_batch_to_one_runner(store: Store) -> None:
    k = store.keys
    await create(store, "rpl_a")
    batch = await store.replays.take("rpl_a", NOW, 60_000_000)
    assert batch is not None and (batch.pos, batch.account_id, batch.ids) == (0, "acct-1", IDS[:2])
    assert await store.redis.zscore(k.replays_active(), "rpl_a") == NOW + 60_000_000
    assert await store.replays.take("rpl_a", NOW + 1, 60_000_000) is None  # leased
    again = await store.replays.take("rpl_a", NOW + 60_000_000, 60_000_000)  # the lease ran out
    assert again is not None and again.ids == IDS[:2]
    assert await store.replays.take("rpl_nope", NOW, 1) is None


async def test_replays_advance_moves_on_once_and_finishes(store: Store) -> None:
    k = store.keys
    await create(store, "rpl_a")
    first = await store.replays.take("rpl_a", NOW, 60_000_000)
    assert first is not None
    moved = await store.replays.advance(
        "rpl_a", first, replayed=1, skipped=1, next_at_us=NOW + 1, last_error="x: in flight", now_us=NOW
    )
    assert moved
    stale = await store.replays.advance(
        "rpl_a", first, replayed=2, skipped=0, next_at_us=NOW + 1, last_error="", now_us=NOW
    )
    assert not stale  # the same batch again: the job already moved past it
    job = await store.replays.get("rpl_a")
    assert (job["pos"], job["replayed"], job["skipped"], job["err"]) == ("2", "1", "1", "x: in flight")
    assert await store.redis.zscore(k.replays_active(), "rpl_a") == NOW + 1
    last = await store.replays.take("rpl_a", NOW + 1, 60_000_000)
    assert last is not None and last.ids == IDS[2:]
    await store.replays.advance(
        "rpl_a", last, replayed=1, skipped=0, next_at_us=NOW + 2, last_error="", now_us=NOW + 5
    )
    job = await store.replays.get("rpl_a")
    assert (job["status"], job["finished"], job["replayed"]) == ("done", str(NOW + 5), "2")
    assert await store.redis.zscore(k.replays_active(), "rpl_a") is None
