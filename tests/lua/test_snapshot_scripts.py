"""The snapshot, retention and restore scripts against real Redis (snapshots_lease,
snapshots_request, snapshots_take, snapshots_trim, restore_cues, restore_executions): arrange keys
→ call → assert the answer and the state (lease key, request counters, dirty / processing /
hand-off sets, objects and the indexes a restore rebuilds)."""

from __future__ import annotations

import json

from cuefast.ids import new_execution_id
from cuefast.store import Keys, Status, Store
from cuefast.store.snapshots import LEASE, Requests, Trimmed
from tests.lua.indexes import listed
from tests.lua.seed import ACCT, CREATED, CUE, NOW, SIBLING, S, dirty, put_cue, put_execution, stream_ids

P = Keys("", 4).cue_partition(CUE)


# ---- snapshots_lease -----------------------------------------------------------------------------
async def test_lease_one_holder_at_a_time(store: Store) -> None:
    key = store.keys.snapshot_lease

    async def lease(mode: str, token: str, ms: int = 10_000) -> Status:
        return Status(await store.scripts.run(LEASE, [key], [mode, token, ms]))

    assert await lease("renew", "a") is Status.BUSY  # nobody holds it: nothing to renew
    assert await lease("acquire", "a") is Status.OK
    assert await store.redis.get(key) == "a"
    assert 9_000 < await store.redis.pttl(key) <= 10_000
    assert await lease("acquire", "b") is Status.BUSY
    assert await lease("renew", "b") is Status.BUSY
    assert await lease("release", "b") is Status.BUSY
    assert await store.redis.get(key) == "a"
    assert await lease("acquire", "a", 50_000) is Status.OK  # the holder again: extended
    assert await lease("renew", "a", 60_000) is Status.OK
    assert 59_000 < await store.redis.pttl(key) <= 60_000
    assert await lease("release", "a") is Status.OK
    assert await store.redis.exists(key) == 0
    assert await lease("release", "a") is Status.BUSY  # no longer held
    assert await store.snapshots.lease("acquire", "b", 1000) is True


# ---- snapshots_request ---------------------------------------------------------------------------
async def test_request_numbers_asks_and_served_never_moves_back(store: Store) -> None:
    s = store.snapshots
    assert await s.request("read") == Requests(0, 0)
    assert await s.request("ask") == Requests(1, 0)
    assert await s.request("ask") == Requests(2, 0)
    assert await s.request("served", 1) == Requests(2, 1)
    assert await s.request("served", 0) == Requests(2, 1)
    assert await s.request("served", 2) == Requests(2, 2)
    assert await store.redis.hgetall(store.keys.snapshot_requests) == {"asked": "2", "served": "2"}


# ---- snapshots_take ------------------------------------------------------------------------------
async def test_take_moves_a_batch_to_processing_with_each_object(store: Store) -> None:
    k = store.keys
    slot = k.part(P)
    await put_cue(store, cfg='{"retry":{"max_attempts":1}}')
    _, eid = await put_execution(store, st="success")
    await store.redis.hdel(k.execution(P, eid), "id")  # layout 2: the key has the id, no field
    fragment = new_execution_id(P)
    await store.redis.hset(k.execution(P, fragment), "att", 1)  # written after its hash vanished
    await store.redis.sadd(k.dirty(slot), f"cue:{CUE}", f"exec:{eid}", "exec:gone", f"exec:{fragment}")
    taken = dict(await store.snapshots.take(slot, 10))
    assert set(taken) == {f"cue:{CUE}", f"exec:{eid}", "exec:gone", f"exec:{fragment}"}
    cue = json.loads(taken[f"cue:{CUE}"])
    assert cue["_cfg"] == '{"retry":{"max_attempts":1}}' and cue["acct"] == ACCT
    # the doc carries the id (PostgreSQL's history and a restore read it); a fragment stays one
    assert json.loads(taken[f"exec:{eid}"]) == {"id": eid, **await store.redis.hgetall(k.execution(P, eid))}
    assert json.loads(taken[f"exec:{fragment}"]) == {"att": "1"}
    await store.redis.delete(k.execution(P, fragment))
    assert taken["exec:gone"] == ""  # deleted: the snapshotter deletes its row
    assert await dirty(store, slot) == set()
    assert await store.redis.smembers(k.dirty_processing(slot)) == set(taken)


async def test_take_retries_an_uncommitted_batch_first(store: Store) -> None:
    """A snapshotter that died between take and commit: the next take answers the same batch,
    and leaves what became dirty since for the batch after the commit."""
    k = store.keys
    slot = k.part(P)
    await store.redis.sadd(k.dirty(slot), "exec:a", "exec:b", "exec:c")
    first = {m for m, _ in await store.snapshots.take(slot, 2)}
    assert len(first) == 2
    await store.redis.sadd(k.dirty(slot), "exec:d")
    assert {m for m, _ in await store.snapshots.take(slot, 2)} == first
    assert await dirty(store, slot) == {"exec:a", "exec:b", "exec:c", "exec:d"} - first
    await store.snapshots.commit(slot, sorted(first))
    second = {m for m, _ in await store.snapshots.take(slot, 2)}
    assert second == {"exec:a", "exec:b", "exec:c", "exec:d"} - first
    assert await dirty(store, slot) == set()


# ---- snapshots_trim ------------------------------------------------------------------------------
async def test_trim_removes_only_unchanged_final_executions(store: Store) -> None:
    k = store.keys
    slot = k.part(P)
    _, done = await put_execution(store, st="success", ua=NOW - S)
    _, never_updated = await put_execution(store, st="failed")  # its version is 'ca'
    _, changed = await put_execution(store, st="success", ua=NOW)
    _, running = await put_execution(store, st="pending_outcome", ua=NOW - S)
    _, marked = await put_execution(store, st="success", ua=NOW - S)
    _, in_flight = await put_execution(store, st="success", ua=NOW - S)
    gone = new_execution_id(P)
    await store.redis.sadd(k.dirty(slot), f"exec:{marked}")
    await store.redis.sadd(k.dirty_processing(slot), f"exec:{in_flight}")
    rows = [
        (done, NOW - S, "success"),
        (never_updated, CREATED, "failed"),
        (changed, NOW - S, "success"),  # PostgreSQL holds an older version
        (running, NOW - S, "pending_outcome"),
        (marked, NOW - S, "success"),
        (in_flight, NOW - S, "success"),
        (gone, NOW - S, "success"),
    ]
    res = await store.snapshots.trim({P: rows})
    assert res == Trimmed([done, never_updated, gone], [changed, running, marked, in_flight])
    for eid in (done, never_updated):
        assert await store.redis.exists(k.execution(P, eid)) == 0
        assert await listed(store, ACCT, eid, CUE) is None
        assert await listed(store, ACCT, eid) is None
    for eid in (changed, running, marked, in_flight):
        assert await store.redis.exists(k.execution(P, eid)) == 1
    # the kept ones are dirty (the next snapshot catches up), except the one being snapshotted
    assert await dirty(store, slot) == {f"exec:{changed}", f"exec:{running}", f"exec:{marked}"}
    assert await store.redis.smembers(k.trim_handoff(slot)) == {done, never_updated, gone}


async def test_trim_a_worker_execution_leaves_every_index(store: Store) -> None:
    k = store.keys
    _, eid = await put_execution(store, tr="worker", st="failed", ua=NOW - S, tk="t", ag="bot")
    keys = [
        k.work(P, ACCT),
        k.work_filtered(P, ACCT, "t", None),
        k.work_filtered(P, ACCT, None, "bot"),
        k.work_filtered(P, ACCT, "t", "bot"),
        k.unclaimed(P),
        k.claims(P),
        k.leases(P),
        k.retries(P),
        k.delayed(P),
        k.deadlines(P),
    ]
    for key in keys:  # stray entries a crash could leave
        await store.redis.zadd(key, {eid: NOW})
    assert await store.snapshots.trim({P: [(eid, NOW - S, "failed")]}) == Trimmed([eid], [])
    assert await store.redis.exists(k.execution(P, eid), *keys) == 0


# ---- restore_cues --------------------------------------------------------------------------------
async def test_restore_cues_writes_hashes_config_indexes_and_due(store: Store) -> None:
    k = store.keys
    p = k.cue_partition(CUE)
    active = {"acct": ACCT, "name": "a", "status": "active", "nr": str(NOW), "ca": str(CREATED), "_cfg": "{}"}
    paused = {"acct": ACCT, "name": "b", "status": "paused", "nr": str(NOW), "ca": str(CREATED + 1)}
    n = await store.restore.cues([(p, [(CUE, json.dumps(active)), (SIBLING, json.dumps(paused))])])
    assert n == 2
    assert await store.redis.hgetall(k.cue(CUE)) == {f: v for f, v in active.items() if f != "_cfg"}
    assert await store.redis.get(k.cue_config(CUE)) == "{}"
    assert await store.redis.hgetall(k.cue(SIBLING)) == paused
    assert await store.redis.exists(k.cue_config(SIBLING)) == 0
    assert await store.redis.zrange(k.cue_index(p, ACCT, "active"), 0, -1, withscores=True) == [
        (CUE, CREATED)
    ]
    assert await store.redis.zscore(k.cue_index(p, ACCT, "paused"), SIBLING) == CREATED + 1
    assert await store.redis.zrange(k.due(p), 0, -1, withscores=True) == [(CUE, NOW)]  # only the active one


# ---- restore_executions --------------------------------------------------------------------------
def doc(st: str, tr: str = "webhook", **fields: str | int) -> dict[str, str]:
    eid = new_execution_id(P)
    h = {"id": eid, "cue": CUE, "acct": ACCT, "tr": tr, "st": st, "sf": NOW - S, "ca": CREATED, **fields}
    return {f: str(v) for f, v in h.items()}


async def test_restore_executions_rebuilds_the_index_each_state_needs(store: Store) -> None:
    k = store.keys
    docs = {
        "due": doc("pending"),
        "later": doc("pending", sf=NOW + S),
        "ready": doc("retry_ready", sf=NOW + S),
        "sending": doc("delivering"),
        "retrying": doc("retrying", nxr=NOW + 5 * S),
        "awaiting": doc("pending_outcome", od=NOW + 9 * S),
        "reported": doc("pending_outcome", od=NOW + 9 * S, oc="{}"),
        "done": doc("success", od=NOW + 9 * S),
        "claimable": doc("pending", "worker", tk="t", ua=NOW - 2 * S),
        "claimed": doc("delivering", "worker", tk="t", lx=NOW + 60 * S, cla=NOW - 3 * S),
    }
    held: list[tuple[str, str, str, int]] = []
    assert await store.restore.executions([(P, [json.dumps(d) for d in docs.values()])], NOW, held) == len(
        docs
    )
    assert held == [(ACCT, docs["claimed"]["id"], "t", NOW + 60 * S)]  # its task cap permit: rebuilt
    ids = {name: d["id"] for name, d in docs.items()}
    for d in docs.values():
        stored = await store.redis.hgetall(k.execution(P, d["id"]))
        assert stored.pop("ix") == f"{d['st']}|||{'1' if d.get('cla') else ''}|{d.get('cw', '')}"
        assert stored == {f: v for f, v in d.items() if f != "id"}  # the id is the key's
        assert await listed(store, ACCT, d["id"], CUE) == CREATED
        assert await listed(store, ACCT, d["id"]) == CREATED
    assert await stream_ids(store, k.outbox(P)) == [ids["due"], ids["ready"], ids["sending"]]
    assert await store.redis.zrange(k.delayed(P), 0, -1, withscores=True) == [(ids["later"], NOW + S)]
    assert await store.redis.zrange(k.retries(P), 0, -1, withscores=True) == [(ids["retrying"], NOW + 5 * S)]
    assert await store.redis.zrange(k.deadlines(P), 0, -1) == [ids["awaiting"]]
    for key in (k.work(P, ACCT), k.work_filtered(P, ACCT, "t", None)):
        assert await store.redis.zrange(key, 0, -1, withscores=True) == [(ids["claimable"], NOW - S)]
    assert await store.redis.zscore(k.unclaimed(P), ids["claimable"]) == NOW - 2 * S
    assert await store.redis.zrange(k.claims(P), 0, -1, withscores=True) == [(ids["claimed"], NOW + 60 * S)]
    assert (await store.executions.listing(ACCT, offset=0, limit=0)).oldest_claimed_us == NOW - 3 * S


async def test_restore_executions_over_executions_already_there_moves_their_index(store: Store) -> None:
    """``cuefast restore --force`` into a keyspace that holds an execution already, and a batch
    that names one twice: the hash ends as the last doc says, indexed only there (before, the
    restore dropped the stored ``ix`` and indexed it anew, so the cell it was in kept it)."""
    k = store.keys
    first = doc("pending", "worker", tk="t")
    assert await store.restore.executions([(P, [json.dumps(first)])], NOW) == 1
    done = {**first, "st": "success", "os": "reported_success", "cla": str(NOW - S), "cw": "w1"}
    assert await store.restore.executions([(P, [json.dumps(done)])], NOW) == 1  # over it
    twice = doc("pending")
    later = {**twice, "st": "failed"}
    assert await store.restore.executions([(P, [json.dumps(twice), json.dumps(later)])], NOW) == 2
    assert (await store.redis.hgetall(k.execution(P, first["id"])))["ix"] == "success|reported_success||1|w1"
    assert (await store.redis.hgetall(k.execution(P, twice["id"])))["ix"] == "failed||||"
    # (the fixture checks every index against the hashes: one cell each, counts right)


async def test_restore_executions_over_hashes_whose_registries_are_gone(store: Store) -> None:
    """A repartition deletes the derived keys — the listing registries among them — and writes
    each execution back with this script, onto its own key when its partition stays: the hash
    still names the cells of the deleted registries, and it is indexed again all the same."""
    k = store.keys
    docs = [doc("success", os="reported_success", cla=str(NOW - S), cw="w1"), doc("pending")]
    body = [json.dumps(d) for d in docs]
    assert await store.restore.executions([(P, body)], NOW) == 2
    derived = [key async for key in store.redis.scan_iter(match=f"{k.prefix}:*:ix:*", count=1000)]
    assert derived
    await store.redis.delete(*derived)
    assert await store.restore.executions([(P, body)], NOW) == 2
    for d in docs:
        assert await listed(store, ACCT, d["id"], CUE) == CREATED
        assert await listed(store, ACCT, d["id"]) == CREATED


async def test_restore_executions_a_jittered_one_waits_for_its_fire_at(store: Store) -> None:
    """Jitter: a pending execution whose fire_at ('ft') is ahead goes back to the delayed zset
    (webhook) or the claimable indexes scored by fire_at (worker), not to the outbox."""
    k = store.keys
    hook = doc("pending", ft=NOW + 7 * S)
    work = doc("pending", "worker", tk="t", ft=NOW + 8 * S)
    passed = doc("pending", ft=NOW - 1)
    docs = [hook, work, passed]
    assert await store.restore.executions([(P, [json.dumps(d) for d in docs])], NOW) == 3
    assert await stream_ids(store, k.outbox(P)) == [passed["id"]]
    assert await store.redis.zrange(k.delayed(P), 0, -1, withscores=True) == [(hook["id"], NOW + 7 * S)]
    for key in (k.work(P, ACCT), k.work_filtered(P, ACCT, "t", None), k.unclaimed(P)):
        assert await store.redis.zscore(key, work["id"]) == NOW + 8 * S, key
