"""``cuefast repartition --to N``: move an install's partition data to another partition count, offline.

Every key of a partition slot (``<pfx>:{pNN}:…``) is found by a SCAN and sorted by kind:

* objects, moved to the partition they belong to under N and written with the restore scripts
  (which rebuild every index an object is in): cues (hash + config string), executions (with
  their listing indexes and the queue their state needs: outbox, delayed, retry, deadlines,
  claimable, claims), alerts (with the account's alert indexes), idempotency keys (with their
  TTL), per-partition usage counters, notices and notice retries, dirty (unsnapshotted) marks;
* derived keys (due times, cue and execution indexes, queues, leases, work signals), deleted
  first and rebuilt from the objects;
* anything else stops the command before it changes a thing.

Execution ids are not rewritten (clients hold them): an id's last byte is the cue's
``Keys.cue_byte`` and its partition is ``byte % P``, which stays the cue's partition for every
power-of-two P. Executions whose ids were written before that rule and would resolve elsewhere
under N stop the command (they leave Redis after ``CUEFAST_REDIS_RETENTION``). The command is
idempotent: ``meta.repartition`` is set while it runs (start-up refuses), and an interrupted run
is finished by running it again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis

from cuefast.ids import is_cue_id, is_execution_id
from cuefast.store import Store
from cuefast.store.keys import Keys
from cuefast.store.restore import RestoredAlert
from cuefast.store.system import PROCESS_ALIVE_US, REPARTITION

CHUNK = 500
"""objects per read pipeline and per restore script call"""
_KEY = re.compile(r"\{p(\d+)\}:(.*)", re.S)
DERIVED = frozenset(
    {"due", "outbox", "leases", "retry", "deadlines", "delayed", "claims", "unclaimed", "worksig"}
)
DERIVED_PREFIXES = ("idx:", "ix:", "work:", "cap:", "capq:")
"""cue / alert / execution listing indexes and claimable-work indexes: rebuilt from the objects;
a cue's concurrency permits and waiting list: dropped (the restore scripts queue every pending
attempt again, and it takes a permit afresh)"""


class Refused(Exception):
    """The install cannot be repartitioned now (the message says why and what to do)."""


@dataclass
class Found:
    """The partition-slot keys of an install, by kind: (slot partition, id) pairs."""

    cues: list[tuple[int, str]] = field(default_factory=list)
    executions: list[tuple[int, str]] = field(default_factory=list)
    alerts: list[tuple[int, str]] = field(default_factory=list)
    idempotency: list[tuple[int, str, str]] = field(default_factory=list)
    usage: list[tuple[int, str]] = field(default_factory=list)
    notices: set[int] = field(default_factory=set)
    notice_retries: set[int] = field(default_factory=set)
    dirty: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    trimmed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


@dataclass
class RepartitionStats:
    source: int = 0
    target: int = 0
    cues: int = 0
    executions: int = 0
    alerts: int = 0
    idempotency: int = 0
    notices: int = 0
    moved: int = 0
    """objects whose partition changed"""
    seconds: float = 0.0


def _power_of_two(n: int) -> bool:
    return 1 <= n <= 256 and 256 % n == 0


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


async def repartition(redis: aioredis.Redis, prefix: str, to: int, now_us: int) -> RepartitionStats:
    """Move the install under ``prefix`` to ``to`` partitions (every cuefast process stopped)."""
    started = time.monotonic()
    meta = Keys(prefix, 1).meta
    stored, moving = await redis.hmget(meta, ["partitions", REPARTITION])
    if stored is None:
        raise Refused(f"no cuefast install under key prefix {prefix!r} (nothing to repartition)")
    source = int(stored)
    if moving:
        was, _, target = str(moving).partition(">")
        if int(target) != to:
            raise Refused(
                f"an interrupted repartition to {target} partitions: finish it first (--to {target})"
            )
        source = int(was)
    stats = RepartitionStats(source=source, target=to)
    if source == to:
        stats.seconds = time.monotonic() - started
        return stats
    if not (_power_of_two(source) and _power_of_two(to)):
        raise Refused(
            f"repartition needs powers of two from 1 to 256 (this install: {source}, asked: {to}): "
            "an execution id keeps naming its partition only then"
        )
    old, new = Store(redis, Keys(prefix, source)), Store(redis, Keys(prefix, to))
    await _check_offline(old, now_us)
    found = await _scan(redis, prefix)
    await _check_found(old, new, found)
    await redis.hset(meta, REPARTITION, f"{source}>{to}")
    await _delete(redis, found.derived)
    await new.scripts.preload()
    owners = await _move_cues(old, new, found.cues, stats)
    exec_accounts = await _move_executions(old, new, found.executions, now_us, stats)
    alert_parts = await _move_alerts(old, new, found.alerts, stats, exec_accounts)
    await _move_idempotency(old, new, found.idempotency, stats)
    await _move_usage(old, new, found.usage)
    await _move_notices(old, new, found, alert_parts, stats)
    await _move_dirty(old, new, found.dirty, alert_parts)
    await _rewrite_cue_partitions(redis, new.keys, owners, exec_accounts)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(meta, "partitions", to)
        pipe.hdel(meta, REPARTITION)
        await pipe.execute()
    stats.seconds = time.monotonic() - started
    return stats


async def _check_offline(store: Store, now_us: int) -> None:
    """No cuefast process flushed metrics within ``PROCESS_ALIVE_US`` and no snapshotter holds
    its lease (a process that stops cleanly removes both at once)."""
    k = store.keys
    since = now_us - PROCESS_ALIVE_US
    live: list[str] = await store.redis.zrangebyscore(k.metrics_processes, since, "+inf")  # type: ignore[assignment]
    if live:
        raise Refused(
            f"cuefast processes are running ({', '.join(sorted(live))}): stop every cuefast "
            f"process first (a killed one counts as running for {PROCESS_ALIVE_US // 1_000_000} s)"
        )
    if await store.redis.exists(k.snapshot_lease):
        raise Refused("a snapshotter holds its lease: stop every cuefast process first")


async def _scan(redis: aioredis.Redis, prefix: str) -> Found:
    found = Found()
    head = f"{prefix}:"
    async for key in redis.scan_iter(match=_glob_escape(head) + "{p*", count=1000):
        m = _KEY.fullmatch(str(key)[len(head) :])
        if m is None:
            found.unknown.append(str(key))
            continue
        p, rest = int(m.group(1)), m.group(2)
        kind, _, tail = rest.partition(":")
        if kind == "cue" and is_cue_id(tail):
            found.cues.append((p, tail))
        elif kind == "cue" and tail.endswith(":cfg") and is_cue_id(tail[:-4]):
            pass  # moved with its cue's hash
        elif kind == "exec" and is_execution_id(tail):
            found.executions.append((p, tail))
        elif kind == "alert" and tail and ":" not in tail:  # a name-based id (lua/lib/alert.lua)
            found.alerts.append((p, tail))
        elif kind == "idem" and is_cue_id(tail.partition(":")[0]):
            cue_id, _, digest = tail.partition(":")
            found.idempotency.append((p, cue_id, digest))
        elif kind == "usage":
            found.usage.append((p, tail))
        elif rest == "notices":
            found.notices.add(p)
        elif rest == "noticeretry":
            found.notice_retries.add(p)
        elif rest in ("dirty", "dirty:proc"):
            found.dirty.append(str(key))
        elif rest == "trimmed":
            found.trimmed.append(str(key))
        elif rest in DERIVED or rest.startswith(DERIVED_PREFIXES):
            found.derived.append(str(key))
        else:
            found.unknown.append(str(key))
    return found


async def _check_found(old: Store, new: Store, found: Found) -> None:
    """Refuse before any change: unknown keys, a trim hand-off in flight, executions whose id
    would not name their cue's partition under the new count."""
    if found.unknown:
        raise Refused(
            f"unknown keys in the partition slots (e.g. {sorted(found.unknown)[:3]}); nothing changed"
        )
    if found.trimmed or await old.redis.exists(old.keys.trim_pending):
        raise Refused(
            "a retention trim was handed off and not finished: start cuefast with its snapshotter "
            "(CUEFAST_DATABASE_URL) until `cuefast snapshot` succeeds, then stop it and run this again"
        )
    bad = 0
    example = ""
    for chunk in _chunks(found.executions):
        async with old.redis.pipeline(transaction=False) as pipe:
            for p, eid in chunk:
                pipe.hget(old.keys.execution(p, eid), "cue")
            cues = await pipe.execute()
        for (_, eid), cue_id in zip(chunk, cues, strict=True):
            if cue_id is None or new.keys.execution_partition(eid) != new.keys.cue_partition(str(cue_id)):
                bad += 1
                example = example or eid
    if bad:
        raise Refused(
            f"{bad} executions (e.g. {example}) have ids written before ids carried their cue's "
            f"partition byte, or no cue: under {new.keys.partitions} partitions their ids would not "
            "find them. They leave Redis after CUEFAST_REDIS_RETENTION (finished ones); nothing changed"
        )


async def _delete(redis: aioredis.Redis, keys: Sequence[str]) -> None:
    for i in range(0, len(keys), CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys[i : i + CHUNK]:
                pipe.execute_command("UNLINK", key)
            await pipe.execute()


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


async def _move_cues(
    old: Store, new: Store, cues: list[tuple[int, str]], stats: RepartitionStats
) -> dict[str, str]:
    """Each cue written on its new partition (hash, config, status index, due time), the old copy
    deleted when the partition changed; returns {cue id: account}."""
    owners: dict[str, str] = {}
    for chunk in _chunks(cues):
        async with old.redis.pipeline(transaction=False) as pipe:
            for p, cue_id in chunk:
                pipe.hgetall(f"{old.keys.part(p)}:cue:{cue_id}")
                pipe.get(f"{old.keys.part(p)}:cue:{cue_id}:cfg")
            res = await pipe.execute()
        by_p: dict[int, list[tuple[str, str]]] = {}
        gone: list[str] = []
        for i, (p, cue_id) in enumerate(chunk):
            h, cfg = dict(res[2 * i]), res[2 * i + 1]
            if not h:
                continue
            if cfg is not None:
                h["_cfg"] = cfg
            to = new.keys.cue_partition(cue_id)
            by_p.setdefault(to, []).append((cue_id, _json(h)))
            owners[cue_id] = str(h.get("acct", ""))
            if to != p:
                gone += [f"{old.keys.part(p)}:cue:{cue_id}", f"{old.keys.part(p)}:cue:{cue_id}:cfg"]
        stats.cues += await new.restore.cues(list(by_p.items()))
        await _delete(old.redis, gone)
        stats.moved += len(gone) // 2
    return owners


async def _move_executions(
    old: Store, new: Store, executions: list[tuple[int, str]], now_us: int, stats: RepartitionStats
) -> dict[str, set[int]]:
    """Each execution written on its cue's new partition with its indexes and queue (as a
    restore does: an attempt in flight is queued again), the old hash deleted when it moved;
    returns {account: its executions' new partitions}."""
    accounts: dict[str, set[int]] = {}
    for chunk in _chunks(executions):
        async with old.redis.pipeline(transaction=False) as pipe:
            for p, eid in chunk:
                pipe.hgetall(old.keys.execution(p, eid))
            rows = await pipe.execute()
        by_p: dict[int, list[str]] = {}
        gone: list[str] = []
        for (p, eid), row in zip(chunk, rows, strict=True):
            if not row:
                continue
            to = new.keys.cue_partition(str(row["cue"]))
            by_p.setdefault(to, []).append(_json({**row, "id": eid}))
            accounts.setdefault(str(row.get("acct", "")), set()).add(to)
            if to != p:
                gone.append(old.keys.execution(p, eid))
        stats.executions += await new.restore.executions(list(by_p.items()), now_us)
        await _delete(old.redis, gone)
        stats.moved += len(gone)
    return accounts


async def _move_alerts(
    old: Store,
    new: Store,
    alerts: list[tuple[int, str]],
    stats: RepartitionStats,
    accounts: dict[str, set[int]],
) -> dict[str, int]:
    """Each alert on its execution's new partition with the account's indexes (noted in
    ``accounts``: {account: partitions}); returns {alert id: partition}."""
    where: dict[str, int] = {}
    for chunk in _chunks(alerts):
        async with old.redis.pipeline(transaction=False) as pipe:
            for p, aid in chunk:
                pipe.hgetall(old.keys.alert(p, aid))
            rows = await pipe.execute()
        out: list[RestoredAlert] = []
        gone: list[str] = []
        for (p, aid), row in zip(chunk, rows, strict=True):
            if not row:
                continue
            to = new.keys.execution_partition(str(row.get("eid", "")))
            to = p % new.keys.partitions if to is None else to
            out.append(RestoredAlert(to, aid, dict(row)))
            where[aid] = to
            accounts.setdefault(str(row.get("acct", "")), set()).add(to)
            if to != p:
                gone.append(old.keys.alert(p, aid))
        await new.restore.alerts(out)
        await _delete(old.redis, gone)
        stats.alerts += len(out)
        stats.moved += len(gone)
    return where


async def _move_idempotency(
    old: Store, new: Store, keys: list[tuple[int, str, str]], stats: RepartitionStats
) -> None:
    """Each remembered fire moved to its cue's new partition with the TTL it has left."""
    for chunk in _chunks(keys):
        async with old.redis.pipeline(transaction=False) as pipe:
            for p, cue_id, digest in chunk:
                pipe.get(f"{old.keys.part(p)}:idem:{cue_id}:{digest}")
                pipe.pttl(f"{old.keys.part(p)}:idem:{cue_id}:{digest}")
            res = await pipe.execute()
        async with old.redis.pipeline(transaction=False) as pipe:
            for i, (p, cue_id, digest) in enumerate(chunk):
                value, ttl = res[2 * i], int(res[2 * i + 1])
                stats.idempotency += value is not None
                to = new.keys.idempotency(cue_id, digest)
                src = f"{old.keys.part(p)}:idem:{cue_id}:{digest}"
                if value is None or to == src:
                    continue
                pipe.set(to, value, px=ttl if ttl > 0 else None)
                pipe.execute_command("UNLINK", src)
            await pipe.execute()


async def _move_usage(old: Store, new: Store, usage: list[tuple[int, str]]) -> None:
    """A partition's monthly counters added into partition ``p % N`` when ``p`` is no more."""
    for p, tail in usage:
        to = p % new.keys.partitions
        if to == p:
            continue
        src, dst = f"{old.keys.part(p)}:usage:{tail}", f"{new.keys.part(to)}:usage:{tail}"
        counts = await old.redis.hgetall(src)
        async with old.redis.pipeline(transaction=False) as pipe:
            for f, v in counts.items():
                pipe.hincrby(dst, f, int(v))
            pipe.execute_command("UNLINK", src)
            await pipe.execute()


def _notice_partition(new: Keys, kind: str, ident: str, alert_parts: dict[str, int]) -> int | None:
    """Where a notice belongs: an alert's on its alert's partition, else on its execution's."""
    if kind == "a":
        return alert_parts.get(ident)
    return new.execution_partition(ident)


async def _move_notices(
    old: Store, new: Store, found: Found, alert_parts: dict[str, int], stats: RepartitionStats
) -> None:
    """Notices (stream entries) and their retries moved to their alert's or execution's partition."""
    for p in sorted(found.notices):
        src = f"{old.keys.part(p)}:notices"
        entries: list[tuple[str, dict[str, str]]] = await old.redis.xrange(src)  # type: ignore[assignment]
        async with old.redis.pipeline(transaction=False) as pipe:
            for entry_id, fields in entries:
                to = _notice_partition(new.keys, fields.get("k", ""), fields.get("i", ""), alert_parts)
                if to is None or to == p:
                    continue
                pipe.xadd(new.keys.notices(to), dict(fields))  # type: ignore[arg-type]
                pipe.xdel(src, entry_id)
                stats.notices += 1
            await pipe.execute()
    for p in sorted(found.notice_retries):
        src = f"{old.keys.part(p)}:noticeretry"
        members: list[tuple[str, float]] = await old.redis.zrange(src, 0, -1, withscores=True)  # type: ignore[assignment]
        async with old.redis.pipeline(transaction=False) as pipe:
            for member, score in members:
                kind, ident, _ = member.split("|", 2)
                to = _notice_partition(new.keys, kind, ident, alert_parts)
                if to is None or to == p:
                    continue
                pipe.zadd(new.keys.notice_retries(to), {member: score})
                pipe.zrem(src, member)
                stats.notices += 1
            await pipe.execute()


async def _move_dirty(old: Store, new: Store, sets: list[str], alert_parts: dict[str, int]) -> None:
    """Unsnapshotted marks (``cue:…``, ``exec:…``, ``alert:…``) moved to their object's new slot
    (a taken but uncommitted batch is simply dirty again: snapshotting twice is harmless)."""
    k = new.keys
    for key in sets:
        members = await old.redis.smembers(key)
        async with old.redis.pipeline(transaction=False) as pipe:
            for m in members:
                kind, _, ident = str(m).partition(":")
                ident = ident.removesuffix(":cfg")
                to: int | None = None
                if kind == "cue" and is_cue_id(ident):
                    to = k.cue_partition(ident)
                elif kind == "exec":
                    to = k.execution_partition(ident)
                elif kind == "alert":
                    to = alert_parts.get(ident)
                if to is None:
                    continue
                dst = k.dirty(k.part(to))
                if dst != key:
                    pipe.sadd(dst, m)
                    pipe.srem(key, m)
            await pipe.execute()


async def _rewrite_cue_partitions(
    redis: aioredis.Redis, k: Keys, owners: dict[str, str], exec_accounts: dict[str, set[int]]
) -> None:
    """Each account's partition bitmap (``{aNN}:cparts:<account>``) set to the partitions of
    its cues, executions and alerts under the new count (an account without one keeps none: any partition)."""
    parts: dict[str, set[int]] = {acct: set(ps) for acct, ps in exec_accounts.items()}
    for cue_id, acct in owners.items():
        parts.setdefault(acct, set()).add(k.cue_partition(cue_id))
    # one walk for the bitmaps of every auth shard ``{aNN}`` (not the ``{a:<acct>}`` slots)
    match = _glob_escape(f"{k.prefix}:") + "{a[0-9][0-9]}:cparts:*"
    bitmaps = [str(key) async for key in redis.scan_iter(match=match, count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in bitmaps:
            pipe.execute_command("UNLINK", key)
            pipe.setbit(key, 0, 0)  # present and empty: no partition
            for p in parts.get(key.split(":cparts:", 1)[1], ()):
                pipe.setbit(key, p, 1)
        await pipe.execute()


def _json(doc: dict[str, Any]) -> str:
    return msgspec.json.encode(doc).decode()
