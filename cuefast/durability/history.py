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

from cuefast.services.executions import ExecutionFilters
from cuefast.store import Store

log = logging.getLogger(__name__)


class History:
    def __init__(self, pool_getter: Callable[[], Any], store: Store) -> None:
        self._pool = pool_getter
        self.store = store

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
            log.warning("history unavailable (%s)", type(exc).__name__)
            return None
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
        except Exception as exc:
            log.warning("history of a deleted cue left to the snapshotter (%s)", type(exc).__name__)

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
        args: list[Any] = [account_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        # rows Redis no longer holds: marked, or handed off by a trim and not yet marked
        visible = f"(NOT in_redis OR id = ANY({arg(list(handed))}::uuid[]))" if handed else "NOT in_redis"
        where = ["account_id = $1", visible]
        if filters.cue_id is not None:
            where.append(f"cue_id = {arg(filters.cue_id)}")
        if filters.statuses is not None:
            where.append(f"status = ANY({arg(sorted(filters.statuses))}::text[])")
        if filters.worker_id is not None:
            where.append(f"worker_id = {arg(filters.worker_id)}")
        if filters.outcome_state is not None:
            where.append(f"outcome_state = {arg(filters.outcome_state)}")
        if filters.triggered_by is not None:
            where.append(f"triggered_by = {arg(filters.triggered_by)}")
        cond = " AND ".join(where)
        try:
            async with pool.acquire() as conn:
                total = int(await conn.fetchval(f"SELECT count(*) FROM executions WHERE {cond}", *args))
                if limit <= 0 or offset >= total:
                    return [], total
                rows = await conn.fetch(
                    f"SELECT doc::text AS doc FROM executions WHERE {cond} "
                    f"ORDER BY created_us DESC, id DESC OFFSET {int(offset)} LIMIT {int(limit)}",
                    *args,
                )
        except Exception as exc:
            log.warning("history unavailable (%s)", type(exc).__name__)
            return [], 0
        return [dict(msgspec.json.decode(r["doc"])) for r in rows], total

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
