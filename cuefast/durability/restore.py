"""``cuefast restore``: rebuild Redis from the PostgreSQL snapshot after Redis lost its data.

Written back: accounts (with their API-key hash, e-mail and slug maps), cues (with due times,
listing indexes and name reservations), the executions Redis held at the last snapshot (state,
outcome, evidence, with their listing indexes and the index their state needs to move on) and
alerts. Executions already trimmed by retention stay in PostgreSQL (history serves them).

What the snapshot interval can lose (docs/DESIGN.md "Snapshots, retention and restore"): the
changes of the last interval. A slot materialised after the last snapshot is fired again once
after a restore: its cue's ``next_run`` comes back from the snapshot, the scheduler re-creates
the slot's execution under the same deterministic id, and a slot whose execution was
snapshotted is never fired twice (that id exists again).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import msgspec

from cuefast.errors import ConfigError
from cuefast.store import Store
from cuefast.store.restore import RestoredAlert

CHUNK = 500
"""Objects per restore script call."""
PIPE = 20
"""Script calls per round trip."""


@dataclass
class RestoreStats:
    accounts: int = 0
    cues: int = 0
    executions: int = 0
    alerts: int = 0
    seconds: float = 0.0


class Progress:
    """A plain-text progress bar on stderr (redrawn in place on a terminal, else every 10 %)."""

    def __init__(self, total: int, out: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self._shown = -1
        self.started = time.monotonic()

    def add(self, n: int, what: str) -> None:
        self.done += n
        pct = min(100, self.done * 100 // self.total)
        step = pct if self.tty else pct // 10 * 10
        if step == self._shown:
            return
        self._shown = step
        bar = "#" * (pct // 4) + "." * (25 - pct // 4)
        secs = time.monotonic() - self.started
        line = f"restore [{bar}] {pct:3d}% {self.done}/{self.total} ({what}, {secs:.1f}s)"
        self.out.write(("\r" + line) if self.tty else line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


class NotEmpty(Exception):
    """Redis already holds data under this prefix (use --force to write over it)."""


async def restore(
    store: Store,
    pool: Any,
    now_us: int,
    *,
    force: bool = False,
    progress_out: TextIO | None = None,
    on_progress: Callable[[int], None] | None = None,
    explicit: bool = True,
) -> RestoreStats:
    """``explicit``: CUEFAST_PARTITIONS was set (else the snapshot's partition count is used)."""
    started = time.monotonic()
    if not force and not await store.restore.keyspace_empty():
        raise NotEmpty()
    keys = store.keys
    stats = RestoreStats()
    async with pool.acquire() as conn:
        await _partitions(conn, store, explicit)
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM accounts) AS a, "
            "(SELECT count(*) FROM cues WHERE NOT deleted) AS c, "
            "(SELECT count(*) FROM executions WHERE in_redis) AS e, "
            "(SELECT count(*) FROM alerts WHERE NOT deleted) AS l"
        )
        progress = Progress(
            int(counts["a"]) + int(counts["c"]) + int(counts["e"]) + int(counts["l"]), progress_out
        )
        await store.system.check_partitions()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # accounts and their lookup maps (auth slot)
            account_ids: list[str] = []
            async for batch in _chunks(conn, "SELECT doc::text AS doc FROM accounts", 2000):
                docs = [msgspec.json.decode(r["doc"]) for r in batch]
                account_ids += [str(d["id"]) for d in docs]
                await store.restore.accounts(docs)
                stats.accounts += len(batch)
                progress.add(len(batch), "accounts")
            # cues: hash, indexes, due time (partition slots) and name reservations (account slots)
            async for batch in _chunks(
                conn,
                "SELECT id, account_id, name, created_us, doc::text AS doc FROM cues WHERE NOT deleted",
                5000,
            ):
                stats.cues += await _restore_cues(store, batch, now_us)
                progress.add(len(batch), "cues")
            # executions Redis held at the last snapshot (claimed ones: their task cap permits after)
            claimed: list[tuple[str, str, str, int]] = []
            async for batch in _chunks(
                conn, "SELECT id, doc::text AS doc FROM executions WHERE in_redis", 10000
            ):
                by_p2: dict[int, list[str]] = {}
                for r in batch:
                    p = keys.execution_partition(str(r["id"]))
                    if p is not None:
                        by_p2.setdefault(p, []).append(r["doc"])
                calls2 = [
                    (p, docs[i : i + CHUNK]) for p, docs in by_p2.items() for i in range(0, len(docs), CHUNK)
                ]
                for i in range(0, len(calls2), PIPE):
                    stats.executions += await store.restore.executions(calls2[i : i + PIPE], now_us, claimed)
                progress.add(len(batch), "executions")
                if on_progress is not None:
                    on_progress(stats.executions)
            await store.task_caps.rebuild(claimed)  # permits are not snapshotted: from the claims
            rows = await conn.fetch("SELECT DISTINCT account_id FROM executions WHERE NOT in_redis")
            await store.snapshots.mark_history(r["account_id"] for r in rows)
            # alerts: each hash back on its execution's partition, with the account's indexes
            async for batch in _chunks(
                conn, "SELECT id, doc::text AS doc FROM alerts WHERE NOT deleted", 2000
            ):
                alerts: list[RestoredAlert] = []
                for r in batch:
                    doc = msgspec.json.decode(r["doc"])
                    p = keys.execution_partition(str(doc.get("eid", "")))
                    if p is not None:
                        alerts.append(RestoredAlert(p, str(r["id"]), doc))
                await store.restore.alerts(alerts)
                stats.alerts += len(batch)
                progress.add(len(batch), "alerts")
            # every account's cue-partition bitmap, from its cues and executions now back
            await store.account_layout.backfill_cue_partitions(account_ids)
    progress.finish()
    stats.seconds = time.monotonic() - started
    return stats


async def _partitions(conn: Any, store: Store, explicit: bool) -> None:
    """Restore with the partition count the snapshot was taken with (the ids name partitions of it)."""
    keys = store.keys
    stored = await conn.fetchval("SELECT value FROM cuefast_meta WHERE key = 'partitions'")
    if stored is not None and int(stored) != keys.partitions:
        if explicit:
            raise ConfigError(
                f"CUEFAST_PARTITIONS={keys.partitions} but the snapshot was taken with {stored} "
                "partitions; unset CUEFAST_PARTITIONS or set it to the stored value"
            )
        keys.partitions = int(stored)


async def _chunks(conn: Any, sql: str, size: int) -> Any:
    """Rows of ``sql`` in lists of ``size`` (a server-side cursor; inside a transaction). The
    next chunk is fetched while the caller writes the current one to Redis."""
    cur = await conn.cursor(sql)
    ahead = asyncio.ensure_future(cur.fetch(size))
    while True:
        rows = await ahead
        if not rows:
            return
        ahead = asyncio.ensure_future(cur.fetch(size))
        try:
            yield rows
        except BaseException:
            ahead.cancel()
            raise


def _cue_labels(doc: str) -> tuple[int, dict[str, str]]:
    """(created µs, labels) of a snapshotted cue (its hash as JSON, the config string as
    ``_cfg``: "<config JSON>" or "<config JSON>\n<payload JSON>")."""
    h = msgspec.json.decode(doc)
    stored = str(h.get("_cfg") or "{}").partition("\n")[0]
    try:
        labels = msgspec.json.decode(stored).get("labels") or {}
    except (msgspec.DecodeError, AttributeError):
        labels = {}
    return int(h.get("ca") or 0), {str(k): str(v) for k, v in dict(labels).items()}


async def _restore_cues(store: Store, batch: list[Any], now_us: int) -> int:
    """One batch of cue rows: hashes, indexes and due times (partition slots), name reservations
    and the label index (account slots). Returns the number of cues written."""
    keys = store.keys
    written = 0
    by_p: dict[int, list[tuple[str, str]]] = {}
    names: dict[str, dict[str, str]] = {}
    labelled: list[tuple[str, str, int, dict[str, str]]] = []
    for r in batch:
        by_p.setdefault(keys.cue_partition(r["id"]), []).append((r["id"], r["doc"]))
        names.setdefault(r["account_id"], {})[r["name"]] = f"{r['id']}:{r['created_us']}"
        if "labels" in r["doc"]:  # the label index (account slot) from the cue's config
            labelled.append((r["account_id"], r["id"], *_cue_labels(r["doc"])))
    calls = [(p, rows[i : i + CHUNK]) for p, rows in by_p.items() for i in range(0, len(rows), CHUNK)]
    for i in range(0, len(calls), PIPE):
        written += await store.restore.cues(calls[i : i + PIPE])
    await store.restore.names(names)
    for i in range(0, len(labelled), CHUNK):
        await store.cues.restore_labels(labelled[i : i + CHUNK], now_us)
    return written
