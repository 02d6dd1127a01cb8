"""Cues and executions written straight into Redis (hash, config string, listing indexes), so a
script test arranges its keys without going through another script."""

from __future__ import annotations

from typing import Any

from cuefast.ids import new_execution_id
from cuefast.store import Store

NOW = 1_800_000_000_000_000
"""the fixed "now" of every script test, µs"""
S = 1_000_000
ACCT = "acct1"
CUE = "cue_aaaaaaaaaaaa"
SIBLING = "cue_hhhhhhhhhhhh"
"""another cue on CUE's partition (of 4)"""
CREATED = NOW - 3600 * S
"""when seeded cues and executions were created"""
RECURRING = "recurring|UTC|latest||* * * * *"


async def put_cue(
    store: Store,
    cue_id: str = CUE,
    *,
    acct: str = ACCT,
    status: str = "active",
    tr: str = "webhook",
    sch: str = RECURRING,
    nr: int | None = None,
    cfg: str = "{}",
    **fields: Any,
) -> int:
    """A cue with its config string and status index (and due entry when active with a next run);
    its partition. ``fields`` add to or replace the hash's (``pl`` "{}" by default)."""
    k = store.keys
    p = k.cue_partition(cue_id)
    h: dict[str, Any] = {
        "acct": acct,
        "name": f"name-{cue_id}",
        "status": status,
        "tr": tr,
        "nr": "" if nr is None else nr,
        "ca": CREATED,
        "sch": sch,
        "pl": "{}",
        **fields,
    }
    await store.redis.hset(k.cue(cue_id), mapping=h)
    await store.redis.set(k.cue_config(cue_id), cfg)
    await store.redis.zadd(k.cue_index(p, acct, status), {cue_id: CREATED})
    if status == "active" and nr is not None:
        await store.redis.zadd(k.due(p), {cue_id: nr})
    return p


async def put_execution(
    store: Store,
    cue_id: str = CUE,
    *,
    acct: str = ACCT,
    tr: str = "webhook",
    st: str = "pending",
    sf: int = NOW - 60 * S,
    **fields: Any,
) -> tuple[int, str]:
    """An execution of ``cue_id`` listed under its cue and account: (partition, execution id)."""
    k = store.keys
    p = k.cue_partition(cue_id)
    eid = new_execution_id(p)
    h: dict[str, Any] = {
        "id": eid,
        "cue": cue_id,
        "acct": acct,
        "tr": tr,
        "sf": sf,
        "st": st,
        "ca": CREATED,
        "pl": "{}",
        **fields,
    }
    await store.redis.hset(k.execution(p, eid), mapping=h)
    await store.executions.reindex([eid])
    return p, eid


async def dirty(store: Store, slot: str) -> set[str]:
    """The members of ``slot``'s dirty set (objects changed since their last snapshot)."""
    return {str(m) for m in await store.redis.smembers(store.keys.dirty(slot))}


async def stream_ids(store: Store, key: str) -> list[str]:
    """The ``e`` field (an execution id) of every entry of an outbox stream, oldest first."""
    return [str(f["e"]) for _, f in await store.redis.xrange(key)]
