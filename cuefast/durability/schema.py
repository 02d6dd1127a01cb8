"""PostgreSQL: connection pool and schema (applied idempotently at start, ``cuefast migrate``).

PostgreSQL holds durable snapshots (accounts, cues, executions, alerts) and history
beyond Redis retention. The snapshotter that fills these tables is its own role; this
module owns the schema so that every role starts on an up-to-date store.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

# Version 1 declared typed tables that nothing ever wrote (no snapshotter existed); version 2
# keeps each object's Redis hash verbatim in ``doc`` (restore writes it back as it was) next to
# the columns that history listings filter and sort on. ``doc`` is ``json``, not ``jsonb``:
# nothing queries inside it, and text in, text out is cheaper both ways (snapshot and restore).
# Upgrading from 1 drops the empty v1 tables.
_V1_DROP = "DROP TABLE IF EXISTS accounts, cues, executions, alerts"

DDL = """
CREATE TABLE IF NOT EXISTS cuefast_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id text PRIMARY KEY,
    email_lc text NOT NULL,
    key_sha text NOT NULL,
    slug text NOT NULL,
    updated_us bigint NOT NULL,
    doc json NOT NULL
);
CREATE TABLE IF NOT EXISTS cues (
    id text PRIMARY KEY,
    account_id text NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    next_run_us bigint,
    created_us bigint NOT NULL,
    updated_us bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    doc json NOT NULL
);
CREATE INDEX IF NOT EXISTS cues_account_created ON cues (account_id, created_us DESC, id DESC);
CREATE TABLE IF NOT EXISTS executions (
    id uuid PRIMARY KEY,
    cue_id text NOT NULL,
    account_id text NOT NULL,
    scheduled_for_us bigint NOT NULL,
    status text NOT NULL,
    triggered_by text NOT NULL,
    worker_id text NOT NULL DEFAULT '',
    outcome_state text NOT NULL DEFAULT '',
    created_us bigint NOT NULL,
    updated_us bigint NOT NULL,
    in_redis boolean NOT NULL DEFAULT true,
    doc json NOT NULL
);
-- history listings read only what Redis no longer holds: rows still in Redis stay out of these
-- indexes (cheaper upserts, and counts that do not scan the recent rows)
CREATE INDEX IF NOT EXISTS executions_account_history ON executions (account_id, created_us DESC, id DESC)
    WHERE NOT in_redis;
CREATE INDEX IF NOT EXISTS executions_cue_history ON executions (cue_id, created_us DESC, id DESC)
    WHERE NOT in_redis;
CREATE INDEX IF NOT EXISTS executions_trim ON executions (updated_us)
    WHERE in_redis AND status IN ('success', 'failed', 'missed', 'outcome_timeout');
CREATE TABLE IF NOT EXISTS alerts (
    id text PRIMARY KEY,
    account_id text NOT NULL,
    created_us bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    doc json NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_account_created ON alerts (account_id, created_us DESC, id DESC);
"""


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> Any:
    """A pool whose connections use ``schema`` (created if missing)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    finally:
        await conn.close()
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, server_settings={"search_path": schema}
    )


async def migrate(pool: Any) -> None:
    """Apply the schema idempotently (safe to run from several processes at once)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(7301457291)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS cuefast_meta (key text PRIMARY KEY, value text NOT NULL)"
        )
        stored = await conn.fetchval("SELECT value FROM cuefast_meta WHERE key = 'schema_version'")
        if stored == "1":
            await conn.execute(_V1_DROP)
        await conn.execute(DDL)
        await conn.execute(
            "INSERT INTO cuefast_meta (key, value) VALUES ('schema_version', $1) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            str(SCHEMA_VERSION),
        )
    log.info("postgres schema at version %d", SCHEMA_VERSION)


async def ping(pool: Any) -> bool:
    try:
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
        return True
    except Exception:
        return False
