"""PostgreSQL: connection pool and schema (applied idempotently at start, ``cuefast migrate``).

PostgreSQL holds durable snapshots (accounts, cues, executions, alerts) and history
beyond Redis retention. The snapshotter that fills these tables is its own role; this
module owns the schema so that every role starts on an up-to-date store.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from cuefast.errors import OperatorError
from cuefast.store.outage import Classifier

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

# Version 1 declared typed tables that nothing ever wrote (no snapshotter existed); version 2
# keeps each object's Redis hash verbatim in ``doc`` (restore writes it back as it was) next to
# the columns that history listings filter and sort on. ``doc`` is ``json``, not ``jsonb``:
# nothing queries inside it, and text in, text out is cheaper both ways (snapshot and restore).
# Upgrading from 1 drops the empty v1 tables.
_V1_DROP = "DROP TABLE IF EXISTS accounts, cues, executions, alerts"

# Version 3: history listings answer every filter of GET /v1/executions from indexes, and their
# totals from counts (``history_counts``), mirroring the Redis listing registries
# (lua/lib/exec_index.lua): a history row (``NOT in_redis``) is in one *cell* — status,
# outcome_state, triggered_by — of each of its *scopes*: the account (cue_id = worker_id = ''),
# its cue (cue_id), its worker (worker_id, when claimed) and its worker within its cue. Triggers
# on ``executions`` append every change of the history (a row entering or leaving it, or moving
# cell) to ``history_count_changes`` in the writing transaction itself: appends only, so
# concurrent writers never wait on one another's count rows (no lock order to get wrong, no
# deadlock); deletes append one row per cell and statement. ``fold_counts`` (the snapshotter,
# after each trim, in its transaction) moves them into ``history_counts``; a reader adds both.
# The trim itself (``to_history``, the bulk of the history's arrivals) counts its rows into
# ``history_counts`` directly, under the same lock as the fold. Upgrading to 3 drops the v2
# history indexes (replaced) and counts the existing history once, after the triggers exist, in
# the same transaction.
_RECOUNT = """
DELETE FROM history_count_changes;
DELETE FROM history_counts;
INSERT INTO history_counts (account_id, cue_id, worker_id, status, outcome_state, triggered_by, n)
SELECT e.account_id, s.cue_id, s.worker_id, e.status, e.outcome_state, e.triggered_by, count(*)
FROM executions e
CROSS JOIN LATERAL (VALUES ('', '', false), (e.cue_id, '', false), ('', e.worker_id, true),
        (e.cue_id, e.worker_id, true))
    AS s (cue_id, worker_id, by_worker)
WHERE NOT e.in_redis AND (NOT s.by_worker OR e.worker_id <> '')
GROUP BY 1, 2, 3, 4, 5, 6;
"""


def _into_counts(rows: str, n: str) -> str:
    """The statement adding ``rows`` (a CTE of history rows' account_id, cue_id, worker_id,
    status, outcome_state, triggered_by and ``n``) to every scope's cell in ``history_counts``,
    in key order."""
    return f"""{rows},
scoped AS (
    SELECT m.account_id, s.cue_id, s.worker_id, m.status, m.outcome_state, m.triggered_by, {n} AS n
    FROM moved m
    CROSS JOIN LATERAL (VALUES ('', '', false), (m.cue_id, '', false), ('', m.worker_id, true),
        (m.cue_id, m.worker_id, true)) AS s (cue_id, worker_id, by_worker)
    WHERE NOT s.by_worker OR m.worker_id <> ''
    GROUP BY 1, 2, 3, 4, 5, 6
    HAVING {n} <> 0
)
INSERT INTO history_counts AS h (account_id, cue_id, worker_id, status, outcome_state, triggered_by, n)
SELECT * FROM scoped ORDER BY 1, 2, 3, 4, 5, 6
ON CONFLICT (account_id, cue_id, worker_id, status, outcome_state, triggered_by)
DO UPDATE SET n = h.n + EXCLUDED.n"""


_FOLD = _into_counts("WITH moved AS (DELETE FROM history_count_changes RETURNING *)", "sum(m.n)")
# a trim's rows: counted here at once (the row trigger stands aside: ``cuefast.counted``), so a
# trim of thousands of rows adds a few count rows, not a change per row
_TO_HISTORY = _into_counts(
    "WITH moved AS (UPDATE executions SET in_redis = false WHERE id = ANY($1::uuid[]) AND in_redis "
    "RETURNING account_id, cue_id, worker_id, status, outcome_state, triggered_by)",
    "count(*)",
)
_DROP_EMPTY = "DELETE FROM history_counts WHERE n <= 0"
# the transaction-scoped advisory locks that serialise this database's cuefast processes: the
# schema's creation, its migration, the history counts' fold
_FOLD_LOCK = "SELECT pg_advisory_xact_lock(7301457292)"
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(7301457290)"
_MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(7301457291)"


async def to_history(conn: Any, ids: list[str]) -> None:
    """Make the executions ``ids`` history (``in_redis = false``: Redis no longer holds them) and
    count them, inside the caller's transaction; then ``fold_counts``."""
    await conn.execute(_FOLD_LOCK)
    await conn.execute("SET LOCAL cuefast.counted = 'on'")
    await conn.execute(_TO_HISTORY, ids)
    await conn.execute("SET LOCAL cuefast.counted = 'off'")
    await fold_counts(conn)


async def fold_counts(conn: Any) -> None:
    """Move the appended history count changes into ``history_counts`` and drop emptied cells,
    inside the caller's transaction (one folder at a time: an advisory lock; the changes a
    concurrent writer appends meanwhile wait for the next fold)."""
    await conn.execute(_FOLD_LOCK)
    await conn.execute(_FOLD)
    await conn.execute(_DROP_EMPTY)


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
-- indexes (a snapshot's upserts add no entries there). Per scope (the account, a cue, a worker,
-- a worker within a cue) one index per *cell* order (status, outcome_state, triggered_by, then
-- newest first): a filtered page is a merge of the matching cells' ranges, each read in order,
-- so it reads offset + limit entries whatever the filter's selectivity. The unfiltered account
-- and cue listings read one range (``_all``). See durability/history.py.
DROP INDEX IF EXISTS executions_account_history, executions_cue_history;
CREATE INDEX IF NOT EXISTS executions_hist_a_all ON executions (account_id, created_us DESC, id DESC)
    WHERE NOT in_redis;
CREATE INDEX IF NOT EXISTS executions_hist_c_all
    ON executions (cue_id, account_id, created_us DESC, id DESC) WHERE NOT in_redis;
CREATE INDEX IF NOT EXISTS executions_hist_a_cell
    ON executions (account_id, status, outcome_state, triggered_by, created_us DESC, id DESC)
    WHERE NOT in_redis;
CREATE INDEX IF NOT EXISTS executions_hist_c_cell
    ON executions (cue_id, account_id, status, outcome_state, triggered_by, created_us DESC, id DESC)
    WHERE NOT in_redis;
CREATE INDEX IF NOT EXISTS executions_hist_w_cell
    ON executions (account_id, worker_id, status, outcome_state, triggered_by, created_us DESC, id DESC)
    WHERE NOT in_redis AND worker_id <> '';
CREATE INDEX IF NOT EXISTS executions_hist_cw_cell
    ON executions (cue_id, account_id, worker_id, status, outcome_state, triggered_by, created_us DESC,
        id DESC)
    WHERE NOT in_redis AND worker_id <> '';
DROP INDEX IF EXISTS executions_trim;
CREATE INDEX IF NOT EXISTS executions_trim_final ON executions (updated_us)
    WHERE in_redis AND status IN ('success', 'failed', 'missed', 'outcome_timeout', 'skipped', 'cancelled');
CREATE TABLE IF NOT EXISTS alerts (
    id text PRIMARY KEY,
    account_id text NOT NULL,
    created_us bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    doc json NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_account_created ON alerts (account_id, created_us DESC, id DESC);
-- the history's counts: per account, scope (cue_id '' = every cue, worker_id '' = any worker) and
-- cell; and the changes appended to them since the last fold (see _RECOUNT above)
CREATE TABLE IF NOT EXISTS history_counts (
    account_id text NOT NULL,
    cue_id text NOT NULL,
    worker_id text NOT NULL,
    status text NOT NULL,
    outcome_state text NOT NULL,
    triggered_by text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (account_id, cue_id, worker_id, status, outcome_state, triggered_by)
);
-- emptied cells, for the fold to drop (no scan of the table)
CREATE INDEX IF NOT EXISTS history_counts_empty ON history_counts (account_id) WHERE n <= 0;
CREATE TABLE IF NOT EXISTS history_count_changes (
    account_id text NOT NULL,
    cue_id text NOT NULL,
    worker_id text NOT NULL,
    status text NOT NULL,
    outcome_state text NOT NULL,
    triggered_by text NOT NULL,
    n integer NOT NULL
);
CREATE INDEX IF NOT EXISTS history_count_changes_account ON history_count_changes (account_id);
-- a row entering the history counts +1 in its cell, one leaving it -1, one moving both
CREATE OR REPLACE FUNCTION executions_history_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NOT OLD.in_redis THEN
        INSERT INTO history_count_changes VALUES (OLD.account_id, OLD.cue_id, OLD.worker_id,
            OLD.status, OLD.outcome_state, OLD.triggered_by, -1);
    END IF;
    IF NOT NEW.in_redis THEN
        INSERT INTO history_count_changes VALUES (NEW.account_id, NEW.cue_id, NEW.worker_id,
            NEW.status, NEW.outcome_state, NEW.triggered_by, 1);
    END IF;
    RETURN NULL;
END $$;
-- deletes are counted per statement (a deleted cue drops its whole history at once)
CREATE OR REPLACE FUNCTION executions_history_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO history_count_changes
    SELECT account_id, cue_id, worker_id, status, outcome_state, triggered_by, -count(*)
    FROM gone WHERE NOT in_redis GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END $$;
-- the WHEN clauses keep the snapshot's upserts (rows Redis holds) free of any trigger call
CREATE OR REPLACE TRIGGER executions_history_insert AFTER INSERT ON executions
    FOR EACH ROW WHEN (NOT NEW.in_redis) EXECUTE FUNCTION executions_history_row();
CREATE OR REPLACE TRIGGER executions_history_update AFTER UPDATE ON executions
    FOR EACH ROW WHEN ((NOT OLD.in_redis OR NOT NEW.in_redis)
        AND current_setting('cuefast.counted', true) IS DISTINCT FROM 'on'
        AND (OLD.in_redis, OLD.account_id, OLD.cue_id, OLD.worker_id, OLD.status, OLD.outcome_state,
            OLD.triggered_by)
        IS DISTINCT FROM (NEW.in_redis, NEW.account_id, NEW.cue_id, NEW.worker_id, NEW.status,
            NEW.outcome_state, NEW.triggered_by))
    EXECUTE FUNCTION executions_history_row();
CREATE OR REPLACE TRIGGER executions_history_delete AFTER DELETE ON executions
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION executions_history_deleted();
CREATE OR REPLACE FUNCTION executions_history_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM history_count_changes;
    DELETE FROM history_counts;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER executions_history_truncate AFTER TRUNCATE ON executions
    FOR EACH STATEMENT EXECUTE FUNCTION executions_history_truncated();
"""


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> Any:
    """A pool whose connections use ``schema`` (created if missing). A server that cannot be
    used raises ``OperatorError`` (``problem``)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
        try:
            # one creator at a time: CREATE SCHEMA IF NOT EXISTS racing another one fails with a
            # unique violation on pg_namespace (processes that start together)
            async with conn.transaction():
                await conn.execute(_SCHEMA_LOCK)
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        finally:
            await conn.close()
    except Exception as exc:
        raise problem(exc, dsn, schema) from exc
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, server_settings={"search_path": schema}
    )


CONNECT_TIMEOUT = 10.0
"""seconds the first connection of a process may take (a wrong port can otherwise hang 60 s)"""


def _where(dsn: str) -> str:
    try:
        parts = urlsplit(dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:
        return "the configured address"


def problem(exc: BaseException, dsn: str, schema: str = "public") -> OperatorError:  # noqa: PLR0911 (one return per case)
    """The one-line, actionable account of why PostgreSQL at ``dsn`` could not be used."""
    at = f"PostgreSQL at {_where(dsn)}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return OperatorError(
            f"{at} refused the password in CUEFAST_DATABASE_URL ({text}): fix it "
            "(postgresql://USER:PASSWORD@host:port/db)"
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return OperatorError(
            f"{at} refused the user in CUEFAST_DATABASE_URL ({text}): create that role, fix the user, "
            "or allow it in pg_hba.conf"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return OperatorError(
            f"{at}: {text}: create it (createdb) or fix the database name in CUEFAST_DATABASE_URL"
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return OperatorError(
            f"{at}: the CUEFAST_DATABASE_URL user may not create or use schema {schema!r} ({text}): "
            "grant it CREATE on the database, or create the schema for it (CUEFAST_DATABASE_SCHEMA)"
        )
    if isinstance(exc, asyncpg.ClientConfigurationError | ValueError):
        return OperatorError(f"CUEFAST_DATABASE_URL is not a usable PostgreSQL DSN ({text}): fix it")
    if isinstance(exc, ssl.SSLError):
        return OperatorError(
            f"TLS with {at} failed ({text}): check sslmode / sslrootcert in CUEFAST_DATABASE_URL"
        )
    if isinstance(exc, socket.gaierror):
        return OperatorError(
            f"cannot resolve the host of CUEFAST_DATABASE_URL ({_where(dsn)}: {exc.strerror}): "
            "fix the host name",
            transient=True,
        )
    if isinstance(exc, ConnectionRefusedError | FileNotFoundError):
        return OperatorError(
            f"{at} refused the connection (nothing listens there): start PostgreSQL, or fix "
            "CUEFAST_DATABASE_URL",
            transient=True,
        )
    if "rejected SSL upgrade" in text:
        return OperatorError(f"{at} does not speak TLS: remove sslmode=require from CUEFAST_DATABASE_URL")
    if isinstance(exc, TimeoutError):
        return OperatorError(
            f"{at} did not answer within {CONNECT_TIMEOUT:g} s: check the host and port in "
            "CUEFAST_DATABASE_URL and the network between them",
            transient=True,
        )
    return OperatorError(  # not known to be a wrong setting: a serving role rides it out
        f"cannot use {at} ({type(exc).__name__}: {text}): check CUEFAST_DATABASE_URL", transient=True
    )


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it (tests and benchmarks clean up their own)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def migrate(pool: Any) -> None:
    """Apply the schema idempotently (safe to run from several processes at once)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_MIGRATE_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS cuefast_meta (key text PRIMARY KEY, value text NOT NULL)"
        )
        stored = await conn.fetchval("SELECT value FROM cuefast_meta WHERE key = 'schema_version'")
        if stored == "1":
            await conn.execute(_V1_DROP)
        await conn.execute(DDL)  # the count triggers first: no history change is missed below
        if stored is None or int(stored) < 3:
            await conn.execute(_RECOUNT)
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


PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, no route (a socket error; also ConnectionError and its kin)
    TimeoutError,  # a connect or a pool acquire that timed out
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08: the connection failed or is gone
    asyncpg.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,  # 57P01: terminated by an administrator or a fast shutdown
    asyncpg.CrashShutdownError,  # 57P02: another backend crashed
    asyncpg.InsufficientResourcesError,  # class 53: disk full, out of memory, too many connections
    asyncpg.ReadOnlySQLTransactionError,  # 25006: a standby since a failover
)
"""what asyncpg raises when PostgreSQL cannot be reached or cannot serve now (the statement
failed whole, or the connection died under it: its transaction is rolled back)"""


def pg_unavailable(exc: BaseException) -> str:
    """Why PostgreSQL could not serve a call now (``PG_UNAVAILABLE``), as a log line's cause: the
    error's type, and a server error's own first line (no secret in either); "" for any other
    error (a bug, or a statement PostgreSQL rejected: log it whole). ``create_pool``'s
    ``OperatorError`` is one when ``transient`` (its message names the server and the setting);
    an asyncpg ``InterfaceError`` raised while a connection died is one when what it was raised
    from is."""
    if isinstance(exc, OperatorError):  # create_pool's account of a first connection that failed
        return str(exc) if exc.transient else ""
    if isinstance(exc, asyncpg.InterfaceError) and (inner := exc.__cause__ or exc.__context__):
        # asyncpg's own error about a connection that died under it ("cannot call
        # Transaction.__aexit__(): the underlying connection is closed"): the death is the cause
        return pg_unavailable(inner)
    if not isinstance(exc, PG_UNAVAILABLE):
        return ""
    if isinstance(exc, asyncpg.PostgresError) and (text := str(exc).splitlines()[0] if str(exc) else ""):
        return f"{type(exc).__name__}: {text}"
    return type(exc).__name__


POSTGRES: Mapping[str, Classifier] = {"PostgreSQL": pg_unavailable}
"""the data store a loop that uses PostgreSQL can find unavailable (``cuefast.store.outage``)"""
