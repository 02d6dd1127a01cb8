"""The cells' bounds (``<registry>|b``, lua/lib/exec_index.lua): a listing reads only the cells that
can hold its page and the claimed_at heads that can be the earliest, and answers exactly as
without them — after moves and deletions have left the bounds loose, and after
``executions_bound`` (layout 5) bounded registries written before them."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cuefast.store import Store
from tests.conftest import Backend
from tests.lua.indexes import unindex
from tests.lua.seed import ACCT, CREATED, CUE, NOW, SIBLING, S, put_cue, put_execution
from tests.lua.test_listing_work import Monitor

OTHER_PART_CUE = "cue_dddddddddddd"
"""a cue on another partition than CUE's (of 4)"""
STATES = [
    ("pending", "", False),
    ("delivering", "", True),
    ("success", "", False),
    ("success", "reported_success", True),
    ("failed", "reported_failure", True),
    ("failed", "", False),
    ("missed", "", False),
]
WORKERS = ["w0", "w1"]
FILTERS: list[dict[str, Any]] = [
    {},
    {"statuses": ["pending"]},
    {"statuses": ["success", "failed"]},
    {"outcome_state": "reported_success"},
    {"triggered_by": "manual"},
    {"triggered_by": "scheduled"},
    {"worker_id": "w0"},
    {"worker_id": "w1", "statuses": ["success"]},
    {"cue_id": CUE},
    {"cue_id": SIBLING, "statuses": ["failed", "delivering"]},
]


def fields_of(rng: random.Random, ca: int) -> dict[str, Any]:
    """An execution's indexed fields in a random cell (claimed ones by a worker, claimed after
    they were created)."""
    st, os_, claimed = rng.choice(STATES)
    f: dict[str, Any] = {"st": st, "ca": ca, "os": os_, "tb": "manual" if rng.random() < 0.3 else ""}
    if claimed:
        f.update(tr="worker", cw=rng.choice(WORKERS), cla=ca + rng.randrange(1, 600) * S)
    else:
        f.update(cw="", cla="")
    return f


async def hashes(store: Store) -> list[dict[str, str]]:
    """Every execution hash of the test, with its id."""
    k = store.keys
    out = []
    for p in range(k.partitions):
        part = k.part(p) + ":exec:"
        async for key in store.redis.scan_iter(match=part + "*", count=1000):
            h = {str(a): str(b) for a, b in (await store.redis.hgetall(key)).items()}
            out.append({**h, "id": str(key)[len(part) :]})
    return out


def expect(
    seeded: list[dict[str, str]], after: tuple[int, str] | None = None, **f: Any
) -> tuple[list[str], int, int | None]:
    """The listing of ``f`` applied to the hashes in Python: ids (newest first, ties by id
    descending; only those after the cursor ``after``), total, earliest claimed_at."""
    rows = [
        h
        for h in seeded
        if (f.get("cue_id") is None or h["cue"] == f["cue_id"])
        and (f.get("worker_id") is None or h.get("cw") == f["worker_id"])
        and (f.get("statuses") is None or h["st"] in f["statuses"])
        and (f.get("outcome_state") is None or h.get("os", "") == f["outcome_state"])
        and (f.get("triggered_by") is None or (h.get("tb") or "scheduled") == f["triggered_by"])
    ]
    rows.sort(key=lambda h: (int(h["ca"]), h["id"]), reverse=True)
    claimed = [int(h["cla"]) for h in rows if h.get("cla")]
    ids = [h["id"] for h in rows if after is None or (int(h["ca"]), h["id"]) < after]
    return ids, len(rows), min(claimed) if claimed else None


async def assert_lists_as_expected(store: Store, rng: random.Random) -> None:
    """Every filter, at a few offsets and limits and from a cursor, as ``expect`` says."""
    seeded = await hashes(store)
    for f in FILTERS:
        ids, total, oldest = expect(seeded, **f)
        for offset, limit in ((0, 1), (0, 5), (0, 20), (7, 9), (40, 30), (200, 5)):
            got = await store.executions.listing(ACCT, offset=offset, limit=limit, **f)
            assert (got.ids, got.total, got.oldest_claimed_us) == (
                ids[offset : offset + limit],
                total,
                oldest,
            ), (f, offset, limit)
        for at in (0, len(ids) // 3, len(ids) - 1):
            if not ids:
                break
            h = next(h for h in seeded if h["id"] == ids[at])
            after = (int(h["ca"]), h["id"])
            rest, _, _ = expect(seeded, after, **f)
            limit = rng.choice((1, 6, 25))
            got = await store.executions.listing(ACCT, offset=0, limit=limit, after=after, **f)
            assert (got.ids, got.total) == (rest[:limit], total), (f, at, limit)


async def test_listings_answer_the_same_with_loose_bounds(store: Store) -> None:
    """180 executions on two partitions in random cells, then moved between cells (to newer and
    older ones, claimed and unclaimed) and some deleted — what leaves bounds above a cell's
    newest and below its earliest claimed_at — list exactly as sorting the hashes does, and as
    they do with no bounds at all (every cell read, as before the bounds)."""
    for cue in (CUE, SIBLING, OTHER_PART_CUE):
        await put_cue(store, cue)
    rng = random.Random(5)
    eids: list[str] = []
    for _ in range(180):
        ca = CREATED + rng.randrange(3600) * S
        _, eid = await put_execution(store, rng.choice([CUE, SIBLING, OTHER_PART_CUE]), **fields_of(rng, ca))
        eids.append(eid)
    await assert_lists_as_expected(store, rng)
    k = store.keys
    for eid in rng.sample(eids, 90):  # moved: the newest of a cell often leaves it
        p = k.execution_partition(eid)
        assert p is not None
        key = k.execution(p, eid)
        ca = int(await store.redis.hget(key, "ca") or 0)
        await store.redis.hset(key, mapping=fields_of(rng, ca))
        await store.executions.reindex([eid])
    for eid in rng.sample(eids, 40):  # deleted (as a trim does: out of the indexes, then gone)
        p = k.execution_partition(eid)
        assert p is not None
        await unindex(store, eid)
        await store.redis.delete(k.execution(p, eid))
    await assert_lists_as_expected(store, rng)
    bounds = [str(key) async for key in store.redis.scan_iter(match=f"{k.prefix}:*|b", count=1000)]
    assert bounds
    await store.redis.delete(*bounds)  # no bounds: every cell is read (one slot per key: one by one)
    await assert_lists_as_expected(store, rng)
    # executions_bound: the registries bounded again (layout 5), exactly
    assert await store.executions.upgrade_bounds() > 0
    for key in bounds:
        assert await store.redis.exists(key)
    await assert_lists_as_expected(store, rng)


async def test_executions_bound_bounds_each_cell_exactly(store: Store) -> None:
    """``executions_bound`` (the layout-5 upgrade) sets each cell of an account's and a worker's
    registry to its newest created and its earliest claimed_at; a cue's registry gets none."""
    await put_cue(store)
    _, a = await put_execution(store, CUE, ca=CREATED, st="pending")
    _, b = await put_execution(store, CUE, ca=CREATED + 5 * S, st="pending")
    _, c = await put_execution(
        store, CUE, ca=CREATED + 2 * S, st="delivering", tr="worker", cw="w0", cla=NOW - 9 * S
    )
    _, d = await put_execution(
        store, CUE, ca=CREATED + 1 * S, st="delivering", tr="worker", cw="w0", cla=NOW - 20 * S
    )
    k = store.keys
    p = k.cue_partition(CUE)
    regs = [k.ix_account(p, ACCT), k.ix_worker(p, ACCT, "w0"), k.ix_cue(CUE), k.ix_cue_worker(CUE, "w0")]
    await store.redis.delete(*[f"{reg}|b" for reg in regs])
    await store.redis.zadd(f"{regs[0]}|b", {"zpending||": CREATED + 99 * S})  # a loose bound stays
    assert await store.executions.upgrade_bounds() == 3  # pending|| and delivering|| of a, delivering|| of w
    bounds = {
        reg: [(str(m), float(sc)) for m, sc in await store.redis.zrange(f"{reg}|b", 0, -1, withscores=True)]
        for reg in regs
    }
    assert bounds == {
        regs[0]: [
            ("cdelivering||", -float(NOW - 20 * S)),
            ("zdelivering||", float(CREATED + 2 * S)),
            ("zpending||", float(CREATED + 99 * S)),
        ],
        regs[1]: [("cdelivering||", -float(NOW - 20 * S)), ("zdelivering||", float(CREATED + 2 * S))],
        regs[2]: [],
        regs[3]: [],
    }
    got = await store.executions.listing(ACCT, offset=0, limit=10)
    assert (got.ids, got.total, got.oldest_claimed_us) == ([b, c, d, a], 4, NOW - 20 * S)


async def test_an_emptied_cell_drops_its_bounds_and_an_emptied_registry_its_key(store: Store) -> None:
    await put_cue(store)
    _, eid = await put_execution(store, CUE, st="delivering", tr="worker", cw="w0", cla=NOW - S)
    k = store.keys
    p = k.cue_partition(CUE)
    reg = k.ix_account(p, ACCT)
    assert await store.redis.zrange(f"{reg}|b", 0, -1) == ["cdelivering||", "zdelivering||"]
    await store.redis.hset(k.execution(p, eid), mapping={"st": "success", "os": "reported_success"})
    await store.executions.reindex([eid])
    assert await store.redis.zrange(f"{reg}|b", 0, -1) == [
        "csuccess|reported_success|",
        "zsuccess|reported_success|",
    ]
    await unindex(store, eid)
    await store.redis.delete(k.execution(p, eid))
    assert not await store.redis.exists(f"{reg}|b", f"{k.ix_worker(p, ACCT, 'w0')}|b")


async def test_a_listing_reads_only_the_cells_its_page_can_come_from(
    store: Store, backend: Backend, key_prefix: str
) -> None:
    """Twelve cells of executions an hour old (half of them claimed), and 30 new pending ones:
    the newest 20 of the account's registry read the pending cell alone, and the earliest
    claimed_at one claimed head — not one ZREVRANGE and one head per cell."""
    if backend.cluster:
        pytest.skip("MONITOR sees one node; the scripts are the same on a cluster")
    await put_cue(store)
    rng = random.Random(3)
    for i in range(12 * 4):
        st = ("success", "failed", "missed")[i % 3]
        os_ = ("", "reported_success", "reported_failure", "verified")[(i // 3) % 4]
        fields: dict[str, Any] = {"ca": CREATED + rng.randrange(600) * S, "os": os_}
        if os_:
            fields.update(tr="worker", cw="w0", cla=NOW - rng.randrange(100, 900) * S)
        await put_execution(store, CUE, st=st, **fields)
    new = [(await put_execution(store, CUE, ca=NOW - i * S, st="pending"))[1] for i in range(30)]
    p = store.keys.cue_partition(CUE)
    seeded = await hashes(store)
    for f in ({}, {"statuses": ["pending", "success", "failed"]}):
        ids, total, oldest = expect(seeded, **f)
        monitor = Monitor(backend.url, key_prefix)
        await monitor.start()
        got = await store.executions.listing(ACCT, offset=0, limit=20, partitions=[p], **f)
        seen = await monitor.stop(store)
        assert (got.ids, got.total, got.oldest_claimed_us) == (ids[:20], total, oldest)
        assert got.ids == new[:20]
        # the pending cell (then one more read of it); the bounds, then one claimed head
        assert seen["ZREVRANGE"] <= 2, (f, seen)
        assert seen["ZRANGE"] <= 2, (f, seen)
