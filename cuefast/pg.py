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

SCHEMA_VERSION = 1

DDL = """
CREATE TABLE IF NOT EXISTS cuefast_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    email_lc text NOT NULL UNIQUE,
    plan text NOT NULL,
    cue_limit bigint NOT NULL,
    exec_limit bigint NOT NULL,
    rate_limit bigint NOT NULL,
    wh_secret text NOT NULL,
    alert_secret text NOT NULL,
    alert_url text NOT NULL DEFAULT '',
    key_sha text NOT NULL UNIQUE,
    key_prefix text NOT NULL,
    key_enc text NOT NULL DEFAULT '',
    slug text NOT NULL,
    created_us bigint NOT NULL,
    updated_us bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS cues (
    id text PRIMARY KEY,
    account_id uuid NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    transport text NOT NULL,
    next_run_us bigint,
    last_run_us bigint,
    run_count bigint NOT NULL DEFAULT 0,
    fired_count bigint NOT NULL DEFAULT 0,
    created_us bigint NOT NULL,
    updated_us bigint NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    config jsonb NOT NULL,
    payload text NOT NULL,
    deleted boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS cues_account_created ON cues (account_id, created_us DESC, id DESC);
CREATE TABLE IF NOT EXISTS executions (
    id uuid PRIMARY KEY,
    cue_id text NOT NULL,
    account_id uuid NOT NULL,
    scheduled_for_us bigint NOT NULL,
    status text NOT NULL,
    triggered_by text NOT NULL,
    created_us bigint NOT NULL,
    updated_us bigint NOT NULL,
    doc jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_account_created ON executions (account_id, created_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS executions_cue_created ON executions (cue_id, created_us DESC, id DESC);
CREATE TABLE IF NOT EXISTS alerts (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    cue_id text,
    execution_id uuid,
    alert_type text NOT NULL,
    created_us bigint NOT NULL,
    doc jsonb NOT NULL
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
