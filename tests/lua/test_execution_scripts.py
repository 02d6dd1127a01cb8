"""The execution scripts one by one against real Redis (executions_create, executions_cas,
executions_cues, executions_purge_cue, executions_list, executions_reindex): arrange keys → call
→ assert the answer and the state (the execution hash, its listings, outbox / delayed / work
indexes, idempotency records)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from functools import partial
from typing import Any

from cuefast.ids import new_execution_id
from cuefast.store import Status, Store
from cuefast.store.executions import (
    PURGE_CUE,
    Created,
    ExecutionCue,
    Listing,
    execution_of,
    index_id,
    index_member,
    index_members,
)
from tests.lua.indexes import listed, unindex
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
        "cue": CUE,
        "acct": ACCT,
        "tr": "webhook",
        "sf": str(NOW),
        "st": "pending",
        "tb": "manual",
        "ca": str(NOW),
        "pl": '{"a":1}',
        "ix": "pending||manual||",
    }  # attempts 0 and updated = created are absent, as the scheduler writes them
    assert await listed(store, ACCT, eid, CUE) == NOW
    assert await listed(store, ACCT, eid) == NOW
    assert await stream_ids(store, k.outbox(p)) == [eid]
    assert await store.redis.zcard(k.delayed(p)) == 0
    assert await dirty(store, k.part(p)) == {f"exec:{eid}"}


async def test_create_leaves_the_default_triggered_by_unstored(store: Store) -> None:
    """triggered_by "scheduled" (or "") is the default: not stored, as the scheduler's executions,
    and listed in the same cell as theirs."""
    k = store.keys
    p = await put_cue(store)
    for tb in ("scheduled", ""):
        eid = new_execution_id(p)
        await store.executions.create(
            execution_id=eid,
            cue_id=CUE,
            account_id=ACCT,
            scheduled_us=NOW,
            payload_json="{}",
            triggered_by=tb,
            now_us=NOW,
        )
        h = await store.redis.hgetall(k.execution(p, eid))
        assert "tb" not in h and h["ix"] == "pending||||"
    got = await store.executions.listing(ACCT, offset=0, limit=5, triggered_by="scheduled")
    assert got.total == 2


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
    assert (await store.executions.listing(ACCT, offset=0, limit=9, cue_id=CUE)).ids == [first]
    assert await stream_ids(store, k.outbox(p)) == [first]


async def test_create_for_a_cue_not_the_accounts_is_not_found(store: Store) -> None:
    k = store.keys
    p = await put_cue(store)
    eid = new_execution_id(p)
    assert await fire(store, eid, acct="other") == Created(Status.NOT_FOUND, "")
    await store.redis.delete(k.cue(CUE))
    assert await fire(store, eid) == Created(Status.NOT_FOUND, "")
    assert await store.redis.exists(k.execution(p, eid)) == 0
    assert await store.redis.exists(k.ix_cue(CUE), k.outbox(p)) == 0


async def test_create_with_the_cues_payload_reads_it_in_the_same_call(store: Store) -> None:
    """payload "": the cue's — its hash's ``pl``, else the tail of its config string (a long
    payload), else {} — stored, answered, and appended to the remembered response."""
    k = store.keys
    p = await put_cue(store, pl='{"small":1}')
    eid = new_execution_id(p)
    assert await fire(store, eid, payload="") == Created(Status.OK, '{"small":1}')
    assert await store.redis.hget(k.execution(p, eid), "pl") == '{"small":1}'
    await store.redis.hdel(k.cue(CUE), "pl")
    await store.redis.set(k.cue_config(CUE), '{}\n{"long":"x"}')
    eid = new_execution_id(p)
    assert await fire(store, eid, payload="", fingerprint="fp1") == Created(Status.OK, '{"long":"x"}')
    assert await store.redis.hget(k.execution(p, eid), "pl") == '{"long":"x"}'
    remembered = f'{{"id":"{eid}"}}{{"long":"x"}}}}'  # the response given, the payload, "}"
    assert await store.redis.get(k.idempotency(CUE, "d1")) == f"fp1|{eid}|{remembered}"
    await store.redis.set(k.cue_config(CUE), "{}")
    eid = new_execution_id(p)
    assert await fire(store, eid, payload="") == Created(Status.OK, "{}")
    assert await store.redis.hget(k.execution(p, eid), "pl") == "{}"


async def test_create_checks_the_owner_before_the_idempotency_key(store: Store) -> None:
    """A held key of the cue answers only its owner: another account (or a deleted cue) is
    NOT_FOUND, never the remembered response."""
    k = store.keys
    p = await put_cue(store)
    first = new_execution_id(p)
    assert await fire(store, first, fingerprint="fp1") == Created(Status.OK, "")
    assert await fire(store, new_execution_id(p), fingerprint="fp1", acct="other") == Created(
        Status.NOT_FOUND, ""
    )
    await store.redis.delete(k.cue(CUE))
    assert await fire(store, new_execution_id(p), fingerprint="fp1") == Created(Status.NOT_FOUND, "")


async def test_creates_of_one_iteration_share_one_call_in_order(
    store: Store, wire_batches: list[list[Sequence[Any]]]
) -> None:
    """``turn_batches``: fires of one cue and account arriving together are made by one
    ``executions_create.lua`` call, answered as calls one after another would be — an
    idempotency key's second use REPEATs (same request) or CONFLICTs (another) the first of the
    batch, the cue's payload is read once for all; another account's fire is a call of its own."""
    k = store.keys
    p = await put_cue(store, pl='{"small":1}')
    ids = [new_execution_id(p) for _ in range(5)]
    wire_batches.clear()
    got = await asyncio.gather(
        fire(store, ids[0], fingerprint="fp1"),
        fire(store, ids[1], payload=""),
        fire(store, ids[2], fingerprint="fp1"),  # the same key and request: the first's answer
        fire(store, ids[3], fingerprint="fp2"),  # the same key, another request
        fire(store, ids[4], acct="other"),
    )
    assert got == [
        Created(Status.OK, ""),
        Created(Status.OK, '{"small":1}'),
        Created(Status.REPEAT, f'{{"id":"{ids[0]}"}}'),
        Created(Status.CONFLICT, ids[0]),
        Created(Status.NOT_FOUND, ""),
    ]
    calls = [c for b in wire_batches for c in b if c[0] == "FCALL"]
    assert [c[3] for c in calls] == [k.cue(CUE)] * 2  # one call per (cue, account)
    assert await stream_ids(store, k.outbox(p)) == ids[:2]
    assert [await store.redis.exists(k.execution(p, e)) for e in ids] == [1, 1, 0, 0, 0]
    assert await store.redis.hget(k.execution(p, ids[1]), "pl") == '{"small":1}'


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


async def test_cas_raises_the_verification_failed_alert_only_when_asked(store: Store) -> None:
    """alert_at (the dispatcher's verification checks): a change to verification_failed raises the
    alert in the same step; without it (a manual verify) or to another state, none."""
    k = store.keys
    p, eid = await put_execution(store, st="success", oc="{}", os="verification_pending")
    ix = k.part(p) + f":idx:{ACCT}:alerts"
    assert (
        await store.executions.cas(
            eid, "{}", "verification_pending", {"os": "verified_success"}, alert_at_us=NOW
        )
        is Status.OK
    )
    assert await store.redis.zcard(ix) == 0
    assert (
        await store.executions.cas(eid, "{}", "verified_success", {"os": "verification_failed"}) is Status.OK
    )
    assert await store.redis.zcard(ix) == 0
    assert (
        await store.executions.cas(eid, "{}", "verification_failed", {"os": "verification_pending"})
        is Status.OK
    )
    assert (
        await store.executions.cas(
            eid, "{}", "verification_pending", {"os": "verification_failed"}, alert_at_us=NOW
        )
        is Status.OK
    )
    (alert_id,) = await store.redis.zrange(ix, 0, -1)
    assert await store.redis.hget(k.part(p) + f":alert:{alert_id}", "type") == "verification_failed"


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
    await unindex(store, no_ca)
    await store.redis.hdel(k.execution(p, no_ca), "ca")
    await store.executions.reindex([no_ca])
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
    _, claimed = await put_execution(store, tr="worker", st="delivering", tk="t", cw="w1", cla=NOW)
    _, claimable = await put_execution(store, tr="worker", tk="t", ag="bot")
    _, kept = await put_execution(store, SIBLING)
    await store.redis.zadd(k.leases(p), {leased: NOW})
    await store.redis.zadd(k.retries(p), {retrying: NOW})
    await store.redis.zadd(k.delayed(p), {delayed: NOW})
    await store.redis.zadd(k.claims(p), {claimed: NOW})
    work = [k.work(p, ACCT), k.work_filtered(p, ACCT, "t", None), k.work_filtered(p, ACCT, "t", "bot")]
    for key in [*work, k.work_filtered(p, ACCT, None, "bot"), k.unclaimed(p)]:
        await store.redis.zadd(key, {claimable: NOW})
    ids = {leased, retrying, delayed, claimed, claimable}
    keys = [
        k.ix_cue(CUE),
        k.leases(p),
        k.retries(p),
        k.delayed(p),
        k.work(p, ACCT),
    ]
    first = await store.scripts.run(PURGE_CUE, keys, [k.part(p) + ":", 3])
    assert first[0] == 3  # a bounded batch
    assert (await store.executions.listing(ACCT, offset=0, limit=0, cue_id=CUE)).total == 2
    held: list[str] = []
    assert await store.executions.purge_cue(CUE, ACCT, batch=3, claimed=held) == 2  # the rest
    assert [*first[1:], *held] == [claimed]  # the claimed one named (its task cap permit to give)
    for eid in ids:
        assert await store.redis.exists(k.execution(p, eid)) == 0
    assert await store.redis.exists(*keys, k.claims(p)) == 0
    for key in [*work, k.work_filtered(p, ACCT, None, "bot"), k.unclaimed(p)]:
        assert await store.redis.exists(key) == 0, key
    assert (await store.executions.listing(ACCT, offset=0, limit=10)).ids == [kept]
    assert (await store.executions.listing(ACCT, offset=0, limit=10, cue_id=CUE)).total == 0
    assert await store.redis.exists(k.execution(p, kept)) == 1
    assert await dirty(store, k.part(p)) == {f"exec:{eid}" for eid in ids}
    assert await store.executions.purge_cue(CUE, ACCT) == 0


# ---- executions_list / executions_reindex (lua/lib/exec_index.lua) ----------------------------------
OTHER_PART_CUE = "cue_dddddddddddd"
"""a cue on another partition than CUE's (of 4): account-wide listings merge partitions"""


async def test_list_answers_every_filter_combination_from_the_indexes(store: Store) -> None:
    """Every filter of GET /v1/executions, alone and combined, against the same filter applied
    to the seeded hashes in Python: rows (newest first, ties by id descending), total and the
    earliest claimed_at."""
    await put_cue(store)
    await put_cue(store, SIBLING)
    await put_cue(store, OTHER_PART_CUE)
    specs: list[dict[str, Any]] = [
        {"st": "pending"},
        {"st": "pending", "tb": "manual"},
        {"st": "success", "os": "reported_success", "tb": "replay"},
        {"st": "failed", "os": "reported_failure", "tr": "worker", "cw": "w1", "cla": NOW - 5 * S},
        {"st": "delivering", "tr": "worker", "cw": "w1", "cla": NOW - 9 * S},
        {"st": "delivering", "tr": "worker", "cw": "w|z|2", "cla": NOW - 7 * S},
        {"st": "success", "os": "verified", "tr": "worker", "cw": "w|z|2", "cla": NOW - 8 * S},
        {"st": "missed"},
    ]
    seeded: list[dict[str, Any]] = []
    for i in range(24):
        spec = dict(specs[i % len(specs)])
        cue = (CUE, SIBLING, OTHER_PART_CUE)[i % 3]
        ca = CREATED + (i // 2) * S  # pairs share a created time: ties are broken by id
        _, eid = await put_execution(store, cue, ca=ca, **spec)
        seeded.append({"id": eid, "cue": cue, "ca": ca, **spec})

    def expect(**f: Any) -> tuple[list[str], int, int | None]:
        rows = [
            h
            for h in seeded
            if (f.get("cue_id") is None or h["cue"] == f["cue_id"])
            and (f.get("worker_id") is None or h.get("cw") == f["worker_id"])
            and (f.get("statuses") is None or h["st"] in f["statuses"])
            and (f.get("outcome_state") is None or h.get("os") == f["outcome_state"])
            and (f.get("triggered_by") is None or (h.get("tb") or "scheduled") == f["triggered_by"])
        ]
        rows.sort(key=lambda h: (h["ca"], h["id"]), reverse=True)
        claimed = [h["cla"] for h in rows if h.get("cla")]
        return [h["id"] for h in rows], len(rows), min(claimed) if claimed else None

    filters: list[dict[str, Any]] = [
        {},
        {"statuses": ["pending"]},
        {"statuses": ["success", "failed"]},
        {"statuses": [""]},
        {"outcome_state": "reported_success"},
        {"triggered_by": "scheduled"},
        {"triggered_by": "manual"},
        {"worker_id": "w1"},
        {"worker_id": "w|z|2", "statuses": ["delivering"]},
        {"worker_id": "nobody"},
        {"cue_id": CUE},
        {"cue_id": SIBLING, "statuses": ["pending", "missed"]},
        {"cue_id": OTHER_PART_CUE, "worker_id": "w1"},
        {"cue_id": CUE, "outcome_state": "verified", "triggered_by": "scheduled"},
    ]
    k = store.keys
    for f in filters:
        ids, total, oldest = expect(**f)
        for offset, limit in ((0, 100), (0, 3), (2, 5), (30, 5)):
            got = await store.executions.listing(ACCT, offset=offset, limit=limit, **f)
            assert got == Listing(ids[offset : offset + limit], total, oldest, []), (f, offset, limit)
        # with rows, on one registry (a cue's, or the account's on one partition): the page alone
        # and its hashes in the same reply — one cell or many merged
        part = k.cue_partition(f.get("cue_id") or CUE)
        on_part = [eid for eid in ids if k.execution_partition(eid) == part]
        if "cue_id" not in f:
            total = len(on_part)
            oldest = min((h["cla"] for h in seeded if h["id"] in on_part and h.get("cla")), default=None)
        for offset, limit in ((0, 100), (0, 3), (2, 5), (30, 5)):
            got = await store.executions.listing(
                ACCT, offset=offset, limit=limit, partitions=[part], rows=True, **f
            )
            page = on_part[offset : offset + limit]
            assert (got.ids, got.total, got.oldest_claimed_us) == (page, total, oldest), (f, offset, limit)
            assert got.rows is not None
            hashes = [execution_of(eid, row) for eid, row in zip(got.ids, got.rows, strict=True)]
            assert hashes == await store.executions.get_many(page)


async def test_list_merges_cells_lazily_in_order(store: Store) -> None:
    """The merge reads each cell a part at a time (more only when the page needs it): 120
    executions of one cue in 6 cells of very unequal sizes, with created times that tie within
    and across cells, list exactly as sorting them does (newest first, ties by id descending)
    at every offset and limit, with and without rows, filtered and not."""
    await put_cue(store)
    rng = random.Random(7)
    cells = [("pending", ""), ("success", "reported_success"), ("failed", "reported_failure")]
    seeded: list[tuple[int, str, str]] = []
    for i in range(120):
        st, os_ = cells[0] if i % 10 < 7 else rng.choice(cells)
        tb = "manual" if rng.random() < 0.3 else ""
        ca = CREATED + rng.randrange(40) * S
        fields: dict[str, Any] = {"ca": ca, "tb": tb, **({"os": os_} if os_ else {})}
        _, eid = await put_execution(store, CUE, st=st, **fields)
        seeded.append((ca, eid, st))
    for statuses in (None, ["pending", "failed"]):
        ids = [eid for _, eid, st in sorted(seeded, reverse=True) if statuses is None or st in statuses]
        for offset, limit in ((0, 1), (0, 20), (3, 7), (19, 2), (60, 50), (110, 20)):
            for rows in (False, True):
                got = await store.executions.listing(
                    ACCT, offset=offset, limit=limit, cue_id=CUE, statuses=statuses, rows=rows
                )
                assert (got.ids, got.total) == (ids[offset : offset + limit], len(ids)), (offset, limit)


async def test_list_reads_another_repositorys_replies_on_the_same_round_trip(store: Store) -> None:
    await put_cue(store)
    got = await store.executions.listing(
        ACCT, offset=0, limit=1, cue_id=CUE, also=[partial(store.cues.queue_owner, cue_id=CUE)]
    )
    assert got == Listing([], 0, None, [ACCT])


async def test_reindex_indexes_moves_and_repeats_harmlessly(store: Store) -> None:
    """Data written before the indexes: reindex lists it; a changed field moves it; a second call
    changes nothing (the counts move only with real zset changes); a gone id is not counted."""
    k = store.keys
    p = k.cue_partition(CUE)
    eid = new_execution_id(p)
    await store.redis.hset(
        k.execution(p, eid),
        mapping={
            "id": eid,
            "cue": CUE,
            "acct": ACCT,
            "st": "delivering",
            "cw": "w1",
            "cla": NOW,
            "ca": CREATED,
        },
    )
    assert await store.executions.reindex([eid, new_execution_id(p), "bad"]) == 1
    assert await store.executions.reindex([eid]) == 1
    assert await store.executions.listing(ACCT, offset=0, limit=5, worker_id="w1") == Listing(
        [eid], 1, NOW, []
    )
    await store.redis.hset(k.execution(p, eid), mapping={"st": "failed", "cw": "", "cla": ""})
    await store.executions.reindex([eid])
    assert await store.executions.listing(ACCT, offset=0, limit=5, worker_id="w1") == Listing([], 0, None, [])
    assert await store.executions.listing(ACCT, offset=0, limit=5, statuses=["failed"]) == Listing(
        [eid], 1, None, []
    )


async def test_upgrade_indexes_lists_old_data_and_drops_the_replaced_zsets(store: Store) -> None:
    k = store.keys
    p = k.cue_partition(CUE)
    ids = [new_execution_id(p) for _ in range(3)]
    old = [f"{k.part(p)}:idx:{ACCT}:execs", f"{k.part(p)}:claimed:{ACCT}"]
    for i, eid in enumerate(ids):
        await store.redis.hset(
            k.execution(p, eid),
            mapping={"id": eid, "cue": CUE, "acct": ACCT, "st": "pending", "ca": CREATED + i},
        )
        await store.redis.zadd(old[0], {eid: CREATED + i})
    await store.redis.zadd(old[1], {ids[0]: NOW})
    assert await store.executions.upgrade_indexes() == 3
    assert await store.redis.exists(*old) == 0
    assert await store.executions.listing(ACCT, offset=0, limit=5) == Listing(ids[::-1], 3, None, [])


async def _as_layout_1(store: Store) -> int:
    """Rewrite the listing indexes as layout 1 wrote them: members spelled as the 36-character
    ids, ``ix`` holding the claimed_at itself; the number of members rewritten."""
    k = store.keys
    n = 0
    async for found in store.redis.scan_iter(match=f"{k.prefix}:*:ix:*|[zc]|*", count=1000):
        key = str(found)
        for eid, score in await index_members(store.redis, key):
            await store.redis.zrem(key, index_member(eid))
            await store.redis.zadd(key, {eid: score})
            n += 1
    async for found in store.redis.scan_iter(match=f"{k.prefix}:*:exec:*", count=1000):
        h = await store.redis.hgetall(str(found))
        st, os_, tb, _, cw = h["ix"].split("|", 4)
        await store.redis.hset(str(found), "ix", f"{st}|{os_}|{tb}|{h.get('cla', '')}|{cw}")
    return n


async def test_upgrade_indexes_rewrites_layout_1_members_and_ix(store: Store) -> None:
    """Layout 1 indexes (36-character members, ``ix`` with the claimed_at): upgraded in place
    (``executions_upgrade_members`` per zset, a reindex per execution), and
    moves before the upgrade already take out either spelling; the invariant check after the
    test sees layout 2 everywhere."""
    await put_cue(store)
    await put_cue(store, OTHER_PART_CUE)
    _, pending = await put_execution(store)
    _, claimed = await put_execution(store, tr="worker", st="delivering", cw="w1", cla=NOW - 3 * S)
    _, done = await put_execution(
        store, OTHER_PART_CUE, tr="worker", st="success", os="reported_success", cw="w1", cla=NOW - 5 * S
    )
    assert await _as_layout_1(store) == 2 + 2 * 4 + 2 * 4  # z, and c for claimed, per registry
    # a move before the upgrade: the old spelling leaves, the counts stay right
    k = store.keys
    p = k.execution_partition(claimed)
    assert p is not None
    await store.redis.hset(k.execution(p, claimed), mapping={"st": "success", "os": "reported_failure"})
    await store.executions.reindex([claimed])
    assert "id" in await store.redis.hgetall(k.execution(p, claimed))  # seeded as layout 1 wrote it
    assert await store.executions.upgrade_indexes() == 3
    assert await store.executions.upgrade_indexes() == 3  # idempotent
    for eid in (pending, claimed, done):
        q = k.execution_partition(eid)
        assert q is not None
        assert "id" not in await store.redis.hgetall(k.execution(q, eid))  # the key has it
        assert (await store.executions.get(eid) or {})["id"] == eid
    got = await store.executions.listing(ACCT, offset=0, limit=10, worker_id="w1")
    assert sorted(got.ids) == sorted([claimed, done]) and got.total == 2
    assert got.oldest_claimed_us == NOW - 5 * S
    got = await store.executions.listing(ACCT, offset=0, limit=10, statuses=["pending"])
    assert got == Listing([pending], 1, None, [])
    for eid in (pending, claimed, done):
        q = k.execution_partition(eid)
        assert q is not None
        reg = k.ix_account(q, ACCT)
        cells = [c for c in await store.redis.hkeys(reg) if not c.startswith("#")]
        assert any([await store.redis.zscore(f"{reg}|z|{c}", index_member(eid)) for c in cells])


async def test_members_are_the_ids_16_bytes_and_list_in_id_order(store: Store) -> None:
    """Index members are ``index_member`` (16 bytes); a listing spells them back as ids, ties (same
    created µs) by id descending, as with the ids themselves."""
    await put_cue(store)
    ids = sorted([(await put_execution(store))[1] for _ in range(6)])
    k = store.keys
    p = k.cue_partition(CUE)
    reg = k.ix_account(p, ACCT)
    members = await index_members(store.redis, f"{reg}|z|pending||")
    assert sorted(eid for eid, _ in members) == ids
    raw = await store.redis.execute_command("ZRANGE", f"{reg}|z|pending||", 0, -1, NEVER_DECODE=True)
    assert [len(m) for m in raw] == [16] * 6 and [index_id(m) for m in raw] == ids
    assert (await store.executions.listing(ACCT, offset=0, limit=10)).ids == ids[::-1]
    assert (await store.executions.listing(ACCT, offset=2, limit=3, cue_id=CUE)).ids == ids[::-1][2:5]
    assert index_id(index_member("not-a-uuid")) == "not-a-uuid"


async def test_listing_reads_the_partitions_given_and_returns_rows_from_one(store: Store) -> None:
    """``partitions`` limits the registries read (the account's cue-partition bitmap); with one
    registry and ``rows`` the script returns the page's hashes (from ``offset`` on), the same as
    ``get_many``; with several, the rows are left to ``get_many`` (None)."""
    await put_cue(store)
    ids = sorted([(await put_execution(store))[1] for _ in range(5)])[::-1]
    k = store.keys
    p = k.cue_partition(CUE)
    other = (p + 1) % k.partitions
    everywhere = await store.executions.listing(ACCT, offset=1, limit=3)
    assert everywhere.ids == ids[1:4] and everywhere.total == 5 and everywhere.rows is None
    got = await store.executions.listing(ACCT, offset=1, limit=3, partitions=[p], rows=True)
    assert got[:4] == everywhere[:4]
    assert got.rows is not None
    inline = [execution_of(e, r) for e, r in zip(ids[1:4], got.rows, strict=True)]
    assert inline == await store.executions.get_many(ids[1:4])
    two = await store.executions.listing(ACCT, offset=1, limit=3, partitions=[other, p], rows=True)
    assert two == everywhere
    assert await store.executions.listing(ACCT, offset=0, limit=3, partitions=[other]) == Listing(
        [], 0, None, []
    )
    assert await store.executions.listing(ACCT, offset=0, limit=3, partitions=[]) == Listing([], 0, None, [])
    by_cue = await store.executions.listing(ACCT, offset=4, limit=3, cue_id=CUE, partitions=[], rows=True)
    assert by_cue.ids == ids[4:] and by_cue.rows is not None
    assert [execution_of(ids[4], by_cue.rows[0])] == await store.executions.get_many(ids[4:])
    kept = await store.redis.hgetall(k.execution(p, ids[2]))
    await store.redis.delete(k.execution(p, ids[2]))  # a hash gone while still indexed: None
    gone = await store.executions.listing(ACCT, offset=1, limit=3, partitions=[p], rows=True)
    assert gone.rows is not None and gone.rows[1] == "" and execution_of(ids[2], "") is None
    await store.redis.hset(k.execution(p, ids[2]), mapping=kept)


async def test_listing_rows_carry_any_text_exactly(store: Store) -> None:
    """A row comes back as the JSON text of its hash (Lua's cjson): quotes, backslashes,
    slashes, control characters, non-ASCII and empty values read back exactly as ``get_many``
    reads them."""
    await put_cue(store)
    awkward = '{"q":"a \\"quoted\\" \\\\ back/slash","t":"tab\\tnl\\n","u":"héllo ✓ 𝄞","c":"\\u0001"}'
    _, eid = await put_execution(store, pl=awkward, rs='line\nbreak\t\x01 "/\\ é 𝄞', ev="", ou="{}")
    p = store.keys.cue_partition(CUE)
    got = await store.executions.listing(ACCT, offset=0, limit=1, partitions=[p], rows=True)
    assert got.ids == [eid] and got.rows is not None
    [stored] = await store.executions.get_many([eid])
    assert execution_of(eid, got.rows[0]) == stored
    assert stored is not None and stored["pl"] == awkward
