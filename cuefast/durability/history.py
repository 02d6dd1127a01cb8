"""Execution history beyond Redis retention, read from PostgreSQL.

Listings are Redis first (newest first), then the executions only PostgreSQL still holds
(``in_redis = false``: trimmed by retention, plus the ids a trim has removed from Redis whose
rows are not yet marked — ``store.snapshots.history_state``), newest first: one stable order, so offsets
page through both without gaps or repeats, and ``total`` counts both. Filters apply to both sides.
Without PostgreSQL (not configured, or down) the history part is empty: Redis keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from cuefast.durability.schema import POSTGRES
from cuefast.services.executions import ExecutionFilters
from cuefast.store import Store
from cuefast.store.outage import Outage

log = logging.getLogger(__name__)


Cell = tuple[str, str, str]
"""(status, outcome_state, triggered_by): a history row's place in each of its scopes"""


def _matches(cell: Cell, filters: ExecutionFilters) -> bool:
    st, os, tb = cell
    return (
        (filters.statuses is None or st in filters.statuses)
        and (filters.outcome_state is None or os == filters.outcome_state)
        and (filters.triggered_by is None or tb == filters.triggered_by)
    )


class _Sql:
    """Numbered parameters for a statement being built."""

    def __init__(self, *first: Any) -> None:
        self.args: list[Any] = list(first)

    def __call__(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


async def _counts(conn: Any, account_id: str, cue: str, worker: str) -> list[tuple[Cell, int]]:
    """A scope's non-empty cells and their counts: folded plus not yet folded."""
    changes = ["account_id = $1"]
    if cue:
        changes.append("cue_id = $2")
    if worker:
        changes.append("worker_id = $3")
    rows = await conn.fetch(
        "SELECT status, outcome_state, triggered_by, sum(n)::bigint AS n FROM ("
        "SELECT status, outcome_state, triggered_by, n FROM history_counts "
        "WHERE account_id = $1 AND cue_id = $2 AND worker_id = $3 UNION ALL "
        "SELECT status, outcome_state, triggered_by, n FROM history_count_changes "
        f"WHERE {' AND '.join(changes)}) c GROUP BY 1, 2, 3 HAVING sum(n) > 0",
        account_id,
        cue,
        worker,
    )
    return [((r[0], r[1], r[2]), int(r[3])) for r in rows]


def _filtered(sql: _Sql, filters: ExecutionFilters) -> list[str]:
    cond = []
    if filters.statuses is not None:
        cond.append(f"status = ANY({sql(sorted(filters.statuses))}::text[])")
    if filters.outcome_state is not None:
        cond.append(f"outcome_state = {sql(filters.outcome_state)}")
    if filters.triggered_by is not None:
        cond.append(f"triggered_by = {sql(filters.triggered_by)}")
    return cond


async def history_page(
    conn: Any,
    account_id: str,
    filters: ExecutionFilters,
    offset: int,
    limit: int,
    *,
    handed: Sequence[str] = (),
) -> tuple[list[dict[str, str]], int]:
    """``History.page`` on a connection: every filter answered from indexes, never a scan.

    1. The total: the scope's cells and their counts (``history_counts`` plus the changes not
       yet folded; the scope is the account, the cue, the worker, or the worker within the cue,
       as in the Redis registries), the filter applied to the cells — a few dozen rows, however
       long the history.
    2. The page: unfiltered, one range of the scope's ``_all`` index; filtered (or a worker's),
       one range per matching cell of its ``_cell`` index, merged in order (a Merge Append), so
       the work is offset + limit index entries (index-only) whatever the filter's
       selectivity (a page past the middle: read from the oldest end, so at most total / 2);
       then the page's docs by primary key.
    ``handed`` (rows a trim is moving, still ``in_redis``: rarely any) join both by primary key."""
    worker = filters.worker_id
    if worker == "":  # no execution is claimed by "" (Redis has no such registry either)
        return [], 0
    cue = filters.cue_id or ""
    cells = [(c, n) for c, n in await _counts(conn, account_id, cue, worker or "") if _matches(c, filters)]
    total = sum(n for _, n in cells)
    sql = _Sql(account_id)
    scope = [f"cue_id = {sql(cue)}"] if cue else []
    scope.append("account_id = $1")
    if worker:
        scope.append(f"worker_id = {sql(worker)}")
    kept = len(sql.args)
    moving: list[str] = []
    if handed:
        moving = [*scope, f"id = ANY({sql(list(handed))}::uuid[])", "in_redis", *_filtered(sql, filters)]
        more = await conn.fetchval(f"SELECT count(*) FROM executions WHERE {' AND '.join(moving)}", *sql.args)
        total += int(more)
        if not more:
            moving, sql.args = [], sql.args[:kept]
    if limit <= 0 or offset >= total:
        return [], total
    scope.append("NOT in_redis")
    if worker:
        scope.append("worker_id <> ''")  # the worker indexes' predicate
    # a page past the middle is read from the oldest end (``total`` is exact, from the counts):
    # the rows skipped are then fewer than total / 2
    skip, take, order = int(offset), min(int(limit), total - int(offset)), "DESC"
    if total - offset - take < offset:
        skip, order = total - offset - take, "ASC"
    # each branch a subquery of its own, ordered and bounded: planned alone, it reads its index in
    # order (its equalities make the index's leading columns constant), and the union of
    # ordered branches is a Merge Append (a pulled-up UNION ALL branch would be sorted whole)
    newest = f"ORDER BY created_us {order}, id {order} LIMIT {skip + take}"
    ranges: list[str] = []
    unfiltered = filters.statuses is None and filters.outcome_state is None and filters.triggered_by is None
    if unfiltered and not worker:
        ranges.append(" AND ".join(scope))  # the scope's one range
    else:  # one range per matching cell
        for (st, os, tb), _ in cells:
            cell = [f"status = {sql(st)}", f"outcome_state = {sql(os)}", f"triggered_by = {sql(tb)}"]
            ranges.append(" AND ".join([*scope, *cell]))
    if moving:
        ranges.append(" AND ".join(moving))
    union = " UNION ALL ".join(f"(SELECT created_us, id FROM executions WHERE {w} {newest})" for w in ranges)
    found = await conn.fetch(
        f"SELECT p.doc FROM (SELECT created_us, id FROM ({union}) u "
        f"ORDER BY created_us {order}, id {order} OFFSET {skip} LIMIT {take}) k "
        "CROSS JOIN LATERAL (SELECT doc::text AS doc FROM executions e WHERE e.id = k.id) p "
        "ORDER BY k.created_us DESC, k.id DESC",
        *sql.args,
    )
    return [dict(msgspec.json.decode(r["doc"])) for r in found], total


class History:
    def __init__(self, pool_getter: Callable[[], Any], store: Store) -> None:
        self._pool = pool_getter
        self.store = store
        # a PostgreSQL outage is one warning, not a line per request that reads history
        self.outage = Outage(
            log, "execution history", stores=POSTGRES, then="answering from Redis alone until it is back"
        )

    async def get(self, account_id: str, execution_id: str) -> dict[str, str] | None:
        """A snapshotted execution's hash (trimmed from Redis, or Redis lost it)."""
        pool = self._pool()
        if pool is None:
            return None
        try:
            async with pool.acquire() as conn:
                doc = await conn.fetchval(
                    "SELECT doc::text FROM executions WHERE id = $1::uuid AND account_id = $2",
                    execution_id,
                    account_id,
                )
        except Exception as exc:
            self.outage.failed(exc, "execution history read failed; answered from Redis alone")
            return None
        self.outage.ok()
        return None if doc is None else dict(msgspec.json.decode(doc))

    async def forget_cue(self, cue_id: str) -> None:
        """A deleted cue's history goes at once (the cue row marked deleted, its executions
        dropped), so neither a get nor a listing serves it until the next snapshot does the
        same. Best effort: with PostgreSQL away, the snapshot that sees the cue gone does it
        (and ``ExecutionService.get`` checks the cue in Redis meanwhile)."""
        pool = self._pool()
        if pool is None:
            return
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("UPDATE cues SET deleted = true WHERE id = $1", cue_id)
                await conn.execute("DELETE FROM executions WHERE cue_id = $1", cue_id)
        except Exception as exc:  # the snapshot that sees the cue gone does it
            self.outage.failed(exc, "history of a deleted cue left to the snapshotter")
            return
        self.outage.ok()

    async def page(
        self,
        account_id: str,
        filters: ExecutionFilters,
        offset: int,
        limit: int,
        handed: Sequence[str] = (),
    ) -> tuple[list[dict[str, str]], int]:
        """A page of the account's PostgreSQL-only executions (newest first) and their total;
        ``handed``: ids trimmed from Redis whose rows still say ``in_redis``."""
        pool = self._pool()
        if pool is None:
            return [], 0
        try:
            async with pool.acquire() as conn:
                found = await history_page(conn, account_id, filters, offset, limit, handed=handed)
        except Exception as exc:
            self.outage.failed(exc, "execution history read failed; listed from Redis alone")
            return [], 0
        self.outage.ok()
        return found

    async def merge(
        self,
        account_id: str,
        filters: ExecutionFilters,
        offset: int,
        limit: int,
        redis_total: int,
        *,
        flags: tuple[int, int] | None = None,
    ) -> tuple[list[dict[str, str]], int]:
        """The history rows of a page whose first ``redis_total`` positions Redis holds, and the
        history total (add it to ``redis_total``). ``flags``: the history flags, when the caller
        read them in its own pipeline (``Snapshots.queue_history_flags``)."""
        if self._pool() is None:
            return [], 0
        has, handed = await self.store.snapshots.history_state(account_id, flags)
        if not has:
            return [], 0  # nothing of this account was ever trimmed: Redis holds it all
        in_redis = max(0, min(offset + limit, redis_total) - offset)
        return await self.page(account_id, filters, max(0, offset - redis_total), limit - in_redis, handed)
