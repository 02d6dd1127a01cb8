"""The snapshotter role: changed accounts, cues, executions and alerts → PostgreSQL, and retention.

Every mutating script marks what it changed in its slot's dirty set (``lua/lib/dirty.lua``).
One snapshotter at a time (a Redis lease, renewed while it works; another one idles and takes
over when the lease lapses) repeatedly, per slot:

1. ``snapshots_take.lua`` moves a bounded batch from the dirty set to the processing set in one
   step (or hands back an earlier batch that was never committed: a crash retries it first);
2. gets the current hashes with it, each as one JSON object (encoded by the script);
3. in one transaction, binary-COPYs them into temporary staging tables and upserts each table
   with one ``INSERT … SELECT … ON CONFLICT`` (a row never goes back to an older
   ``updated_us``), and marks gone cues deleted / drops gone executions;
4. drops the batch from the processing set.

An id changed again meanwhile is in the dirty set again and goes out with a later batch.
After the snapshot it trims finished executions older than ``CUEFAST_REDIS_RETENTION`` from
Redis, but only those PostgreSQL holds at their current version (``snapshots_trim.lua`` checks),
in two re-runnable halves (see "retention" below).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.durability.schema import POSTGRES, fold_counts, to_history
from cuefast.services.executions import triggered_by
from cuefast.store import Store
from cuefast.store.outage import REDIS, Outage

log = logging.getLogger(__name__)

_IDENTITY = {"acct": "id", "cue": "acct", "exec": "id", "alert": "acct"}
"""the field every complete hash of a kind has (one missing it is a fragment, not an object)"""

BATCH = 2000
"""Dirty members per take (and per PostgreSQL transaction): the take script reads their hashes,
so this bounds how long it holds Redis (18 ms measured here, on a loaded 2-core machine)."""
TRIM_BATCH = 1000
REQUEST_POLL = 1.0
"""Seconds between the active snapshotter's checks for ``cuefast snapshot`` requests while idle."""
TRIM_EVERY_S = 60.0
"""the role trims at most this often (retention is counted in days; an idle trim is a query)"""
FINAL = ("success", "failed", "missed", "outcome_timeout", "skipped", "cancelled")

_decode = msgspec.json.Decoder(dict[str, str]).decode

STORES = {**REDIS, **POSTGRES}
"""the data stores a snapshot cycle needs: either one down is an outage (``Outage``), not a bug"""


@dataclass
class SnapshotStats:
    batches: int = 0
    statements: int = 0
    rows: int = 0
    deleted: int = 0
    trimmed: int = 0
    take_s: float = 0.0
    build_s: float = 0.0
    pg_s: float = 0.0
    commit_s: float = 0.0
    """Seconds per stage, summed over batches (concurrent slots overlap): the take script,
    building the rows in Python, the PostgreSQL transaction, the processing-set commit."""

    def add(self, other: SnapshotStats) -> None:
        self.take_s += other.take_s
        self.build_s += other.build_s
        self.pg_s += other.pg_s
        self.commit_s += other.commit_s
        self.batches += other.batches
        self.statements += other.statements
        self.rows += other.rows
        self.deleted += other.deleted
        self.trimmed += other.trimmed


class LeaseLost(Exception):
    """Another snapshotter holds the lease: stop before committing anything more."""


def _i(value: str | None, default: int = 0) -> int:
    return int(value) if value else default


# Each batch goes to PostgreSQL as binary COPY into per-connection temporary staging tables
# (emptied at every commit) and one ``INSERT … SELECT … ON CONFLICT`` per table: COPY encodes a
# row per column codec, where ``unnest($1::text[], …)`` parameters went through asyncpg's
# per-element array encoder (most of the snapshotter's CPU, measured). ``doc`` is staged as text
# and cast to json once, in the insert.
_STAGE = """
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS stage_accounts (id text, email_lc text, key_sha text, slug text,
    updated_us bigint, doc text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_cues (id text, account_id text, name text, status text,
    next_run_us bigint, created_us bigint, updated_us bigint, doc text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_executions (id uuid, cue_id text, account_id text, sf bigint,
    status text, tb text, cw text, os text, ca bigint, ua bigint, doc text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_alerts (id text, account_id text, created_us bigint, doc text)
    ON COMMIT DELETE ROWS;
"""

_UPSERT_ACCOUNTS = """
INSERT INTO accounts (id, email_lc, key_sha, slug, updated_us, doc)
SELECT t.id, t.email_lc, t.key_sha, t.slug, t.updated_us, t.doc::json FROM stage_accounts t
ON CONFLICT (id) DO UPDATE SET email_lc = EXCLUDED.email_lc, key_sha = EXCLUDED.key_sha,
    slug = EXCLUDED.slug, updated_us = EXCLUDED.updated_us, doc = EXCLUDED.doc
"""

_UPSERT_CUES = """
INSERT INTO cues (id, account_id, name, status, next_run_us, created_us, updated_us, deleted, doc)
SELECT t.id, t.account_id, t.name, t.status, t.next_run_us, t.created_us, t.updated_us, false, t.doc::json
FROM stage_cues t
ON CONFLICT (id) DO UPDATE SET account_id = EXCLUDED.account_id, name = EXCLUDED.name,
    status = EXCLUDED.status, next_run_us = EXCLUDED.next_run_us, updated_us = EXCLUDED.updated_us,
    deleted = false, doc = EXCLUDED.doc
"""

# History is never overwritten. A stored execution row is replaced only by a later version of
# the same execution: the same ``created_us`` (an id created again — a slot fired a second
# time — is another execution), an ``updated_us`` not older, a terminal status kept as it is,
# and a recorded outcome kept recorded (``outcome_state`` is set with every outcome; evidence
# and verification may still change it and the outcome JSON). A row refused here is counted
# and logged by the snapshotter.
_UPSERT_EXECUTIONS = f"""
INSERT INTO executions (id, cue_id, account_id, scheduled_for_us, status, triggered_by, worker_id,
    outcome_state, created_us, updated_us, in_redis, doc)
SELECT t.id, t.cue_id, t.account_id, t.sf, t.status, t.tb, t.cw, t.os, t.ca, t.ua, true, t.doc::json
FROM stage_executions t
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, worker_id = EXCLUDED.worker_id,
    outcome_state = EXCLUDED.outcome_state, updated_us = EXCLUDED.updated_us, in_redis = true,
    doc = EXCLUDED.doc
WHERE executions.updated_us <= EXCLUDED.updated_us
    AND executions.created_us = EXCLUDED.created_us
    AND (executions.status NOT IN ({", ".join(f"'{s}'" for s in FINAL)})
        OR executions.status = EXCLUDED.status)
    AND (executions.outcome_state = '' OR EXCLUDED.outcome_state <> '')
"""

_UPSERT_ALERTS = """
INSERT INTO alerts (id, account_id, created_us, deleted, doc)
SELECT t.id, t.account_id, t.created_us, false, t.doc::json FROM stage_alerts t
ON CONFLICT (id) DO UPDATE SET deleted = false, doc = EXCLUDED.doc
"""


class Snapshotter:
    """Copies changed objects to PostgreSQL while it holds the snapshot lease."""

    def __init__(self, store: Store, settings: Settings, clock: Clock, pool: Any = None) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.pool = pool
        self.token = secrets.token_hex(8)
        self.outage = Outage(log, "snapshot cycle", stores=STORES)
        self.interval = settings.snapshot_interval
        self.lease_ms = max(int(self.interval * 3000), 15_000)
        self.active = False
        self.stats = SnapshotStats()
        self.cycles = 0
        self._partitions_recorded = False
        self._requests_seen = 0
        """``asked`` when the last snapshot attempt began: a request it did not serve (it failed)
        waits for the next interval instead of making the idle loop retry at once."""

    # ---- lease ---------------------------------------------------------------------
    async def acquire(self) -> bool:
        self.active = await self.store.snapshots.lease("acquire", self.token, self.lease_ms)
        return self.active

    async def _renew(self) -> None:
        if not await self.store.snapshots.lease("renew", self.token, self.lease_ms):
            self.active = False
            raise LeaseLost()

    async def release(self) -> None:
        if self.active:
            await self.store.snapshots.lease("release", self.token, self.lease_ms)
            self.active = False

    # ---- one snapshot ----------------------------------------------------------------
    async def _record_partitions(self) -> None:
        """The partition count the snapshot was taken with (restore refuses another one)."""
        if self._partitions_recorded:
            return
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO cuefast_meta (key, value) VALUES ('partitions', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                str(self.store.keys.partitions),
            )
        self._partitions_recorded = True

    async def snapshot(self, *, max_batches: int = 1_000_000, concurrency: int = 4) -> SnapshotStats:
        """Write everything dirty now (bounded batches) to PostgreSQL; the lease must be held.
        Slots are independent: up to ``concurrency`` of them are written at once (PostgreSQL
        works while Python builds the next batch). Serves every ``cuefast snapshot`` request made
        before it began."""
        await self._record_partitions()
        await self._renew()  # also when nothing is dirty: an idle holder keeps its lease
        asked, _ = await self.store.snapshots.request("read")  # requests made before it begins
        self._requests_seen = asked
        began = self.clock.now_us()  # every change made before this is in PostgreSQL afterwards
        stats = SnapshotStats()
        gate = asyncio.Semaphore(concurrency)
        slots = await self.store.snapshots.dirty_slots(self.store.keys.slots())  # after ``began``

        async def one_slot(slot: str) -> None:
            async with gate:
                for _ in range(max_batches):
                    await self._renew()
                    t0 = time.perf_counter()
                    batch = await self.store.snapshots.take(slot, BATCH)
                    stats.take_s += time.perf_counter() - t0
                    if not batch:
                        return
                    await self._write(slot, batch, stats)  # until the slot has nothing dirty left

        results = await asyncio.gather(*(one_slot(slot) for slot in slots), return_exceptions=True)
        self.stats.add(stats)
        for res in results:
            if isinstance(res, BaseException):
                raise res
        # the snapshot lag /metrics reports (cuefast_snapshot_lag_seconds)
        await self.store.snapshots.record(began)
        await self.store.snapshots.request("served", asked)
        return stats

    async def _write(self, slot: str, batch: list[tuple[str, str]], stats: SnapshotStats) -> None:
        t0 = time.perf_counter()
        members = [m for m, _ in batch]
        accounts: list[tuple[Any, ...]] = []
        cues: list[tuple[Any, ...]] = []
        execs: list[tuple[Any, ...]] = []
        alerts: list[tuple[Any, ...]] = []
        gone: dict[str, list[str]] = {"cue": [], "exec": [], "alert": []}
        for member, doc in batch:
            kind, _, oid = member.partition(":")
            if not doc:
                if kind in gone:
                    gone[kind].append(oid)
                continue
            h = _decode(doc)  # the take script's JSON of the hash: kept as ``doc`` as it is
            if _IDENTITY.get(kind, "") not in h:
                # a fragment: a counter written after the object itself vanished (e.g. the usage
                # mirror's HINCRBY after a FLUSHDB) — never let it replace the durable copy
                log.warning(
                    "snapshot: %s lacks its %r field (a fragment); not written", member, _IDENTITY[kind]
                )
                continue
            if kind == "exec":
                execs.append(
                    (
                        oid,
                        h.get("cue", ""),
                        h.get("acct", ""),
                        _i(h.get("sf")),
                        h.get("st", ""),
                        triggered_by(h.get("tb")),
                        h.get("cw") or "",
                        h.get("os") or "",
                        _i(h.get("ca")),
                        _i(h.get("ua"), _i(h.get("ca"))),
                        doc,
                    )
                )
            elif kind == "cue":
                nr = h.get("nr")
                cues.append(
                    (
                        oid,
                        h.get("acct", ""),
                        h.get("name", ""),
                        h.get("status", ""),
                        int(nr) if nr else None,
                        _i(h.get("ca")),
                        _i(h.get("ua"), _i(h.get("ca"))),
                        doc,
                    )
                )
            elif kind == "acct":
                accounts.append(
                    (
                        oid,
                        h.get("email_lc", ""),
                        h.get("key_sha", ""),
                        h.get("slug", ""),
                        _i(h.get("updated")),
                        doc,
                    )
                )
            elif kind == "alert":
                alerts.append((oid, h.get("acct") or h.get("account_id") or "", _i(h.get("ca")), doc))
        statements = 0
        t1 = time.perf_counter()
        stats.build_s += t1 - t0
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGE)
            for table, sql, rows in (
                ("stage_accounts", _UPSERT_ACCOUNTS, accounts),
                ("stage_cues", _UPSERT_CUES, cues),
                ("stage_executions", _UPSERT_EXECUTIONS, execs),
                ("stage_alerts", _UPSERT_ALERTS, alerts),
            ):
                if rows:
                    await conn.copy_records_to_table(table, records=rows)
                    done = await conn.execute(sql)  # "INSERT 0 <rows inserted or updated>"
                    statements += 1
                    if rows is execs and (refused := len(rows) - int(done.rsplit(" ", 1)[-1])):
                        log.warning(
                            "snapshot: %d execution row(s) of %s not replaced: PostgreSQL holds "
                            "a later version or a recorded end of the same id",
                            refused,
                            slot,
                        )
            if gone["cue"]:
                await conn.execute("UPDATE cues SET deleted = true WHERE id = ANY($1::text[])", gone["cue"])
                await conn.execute("DELETE FROM executions WHERE cue_id = ANY($1::text[])", gone["cue"])
                statements += 2
            if gone["exec"]:
                await conn.execute("DELETE FROM executions WHERE id = ANY($1::uuid[])", gone["exec"])
                statements += 1
            if gone["alert"]:
                await conn.execute(
                    "UPDATE alerts SET deleted = true WHERE id = ANY($1::text[])", gone["alert"]
                )
                statements += 1
            await self._renew()  # fenced: a snapshotter that lost its lease commits nothing
        t2 = time.perf_counter()
        stats.pg_s += t2 - t1
        await self.store.snapshots.commit(slot, members)
        stats.commit_s += time.perf_counter() - t2
        stats.batches += 1
        stats.statements += statements
        stats.rows += len(members) - sum(len(v) for v in gone.values())
        stats.deleted += sum(len(v) for v in gone.values())

    # ---- retention -------------------------------------------------------------------
    # Two halves, each re-runnable, in this order: Redis (``trim_redis``: snapshots_trim.lua removes
    # an execution and hands its id off in one atomic step), then PostgreSQL (``confirm_trim``:
    # the handed-off rows become history, ``in_redis = false``, then leave the hand-off sets).
    # Listings count an execution from Redis while Redis holds it and from PostgreSQL from the
    # moment it is handed off (``store.snapshots.history_state``), so it is listed once at every point; a
    # crash between or inside the halves leaves hand-offs that the next run confirms first.
    async def trim(self, *, max_batches: int = 20) -> int:
        """Remove finished executions older than the retention window from Redis (only those
        PostgreSQL holds at their current version). Returns how many left Redis in this run."""
        await self.confirm_trim()  # what an interrupted run handed off
        removed = 0
        for _ in range(max_batches):
            gone, picked = await self.trim_redis()
            await self.confirm_trim()
            removed += gone
            if picked < TRIM_BATCH:
                break
        self.stats.trimmed += removed
        return removed

    async def trim_redis(self) -> tuple[int, int]:
        """The Redis half, one batch: (executions removed from Redis and handed off, executions
        picked). PostgreSQL is only read."""
        await self._renew()
        cutoff = self.clock.now_us() - self.settings.redis_retention * 1_000_000
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, updated_us, status, account_id FROM executions WHERE in_redis "
                "AND status = ANY($1::text[]) AND updated_us < $2 ORDER BY updated_us LIMIT $3",
                list(FINAL),
                cutoff,
                TRIM_BATCH,
            )
        if not rows:
            return 0, 0
        keys = self.store.keys
        by_p: dict[int, list[tuple[str, int, str]]] = {}
        for r in rows:
            eid = str(r["id"])
            p = keys.execution_partition(eid)
            if p is not None:
                by_p.setdefault(p, []).append((eid, int(r["updated_us"]), r["status"]))
        await self.store.snapshots.mark_history({r["account_id"] for r in rows})  # before any leaves Redis
        gone, _kept = await self.store.snapshots.trim(by_p)  # kept: changed, dirty again
        return len(gone), len(rows)

    async def confirm_trim(self) -> int:
        """The PostgreSQL half: every handed-off execution's row becomes history (``in_redis =
        false``), then the hand-offs are dropped. Returns how many were confirmed."""
        handed = await self.store.snapshots.trim_handoff()
        ids = [eid for batch in handed.values() for eid in batch]
        if ids:
            await self._renew()
        async with self.pool.acquire() as conn, conn.transaction():
            if ids:  # counted with them; and every other change of the history's counts folded
                await to_history(conn, ids)
            else:
                await fold_counts(conn)
        await self.store.snapshots.trim_confirmed(handed)
        return len(ids)

    async def cycle(self, *, trim: bool = True) -> SnapshotStats:
        stats = await self.snapshot()
        if trim:
            stats.trimmed = await self.trim()
        self.cycles += 1
        return stats

    # ---- the role ----------------------------------------------------------------------
    async def _idle(self, stopping: asyncio.Event) -> None:
        """Wait ``interval`` seconds, less when stopping or — while this one holds the lease —
        when ``cuefast snapshot`` makes a new request (checked every ``REQUEST_POLL`` s)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.interval
        while (left := until - loop.time()) > 0:
            try:
                await asyncio.wait_for(stopping.wait(), timeout=min(left, REQUEST_POLL))
                return
            except TimeoutError:
                pass
            if self.active:
                try:
                    asked, served = await self.store.snapshots.request("read")
                except Exception:  # Redis unreachable: the next cycle reports it
                    continue
                if asked > max(served, self._requests_seen):
                    return

    async def run(self, stopping: asyncio.Event, pool_getter: Any = None) -> None:
        """Idle until the lease is free, then snapshot every ``interval`` seconds until stopped."""
        loop = asyncio.get_running_loop()
        next_trim = loop.time()
        try:
            while not stopping.is_set():
                if self.pool is None and pool_getter is not None:
                    self.pool = pool_getter()
                if self.pool is not None:
                    try:
                        if self.active or await self.acquire():
                            trim = loop.time() >= next_trim
                            await self.cycle(trim=trim)
                            if trim:
                                next_trim = loop.time() + TRIM_EVERY_S
                        self.outage.ok()
                    except LeaseLost:
                        log.warning("snapshot lease lost; idling")
                    except Exception as exc:  # Redis or PostgreSQL unavailable: a warning, no traceback
                        self.outage.failed(exc, "snapshot cycle failed; retrying next interval")
                await self._idle(stopping)
            if self.active and self.pool is not None:  # a last snapshot on a clean shutdown
                try:
                    await self.snapshot()
                except Exception:
                    log.exception("final snapshot failed")
        finally:
            try:
                await self.release()
            except Exception:  # pragma: no cover - Redis gone at shutdown
                pass
