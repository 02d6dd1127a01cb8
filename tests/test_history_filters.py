"""The PostgreSQL part of execution listings (``durability.history``) against the real
PostgreSQL: every filter of CONTRACT.md §8.3 and every combination of them pages exactly as a
plain filter-sort-slice of the same rows would, its ``total`` comes from counts the triggers and
the trim keep exact through every kind of write, each query reads indexes (no sequential scan
of ``executions``), and a v2 database is migrated at start."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from bench.history import Explaining
from cuefast.durability.history import history_page
from cuefast.durability.schema import create_pool, drop_schema, fold_counts, migrate, to_history
from cuefast.services.executions import ExecutionFilters
from tests.snap_env import counts_exact

ACCT, OTHER = "acct_hist_a", "acct_hist_b"
CUES = ("cue_hista00001", "cue_hista00002", "cue_hista00003")
WORKERS = ("w-1", "w-2")
STATUSES = ("success", "failed", "missed", "outcome_timeout")
OUTCOMES = ("", "reported_success", "reported_failure")
TRIGGERS = ("scheduled", "manual_fire", "replay")

Row = dict[str, Any]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    schema = f"cfhist_{uuid.uuid4().hex[:10]}"
    p = await create_pool(database_url, schema, min_size=1, max_size=2)
    try:
        await migrate(p)
        yield p
    finally:
        await p.close()
        await drop_schema(database_url, schema)


def _rows(n: int, seed: int, account: str = ACCT, cues: tuple[str, ...] = CUES) -> list[Row]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        worker = rng.choice(("", *WORKERS))
        out.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "cue_id": rng.choice(cues),
                "account_id": account,
                "status": rng.choice(STATUSES),
                "triggered_by": rng.choice(TRIGGERS),
                "worker_id": worker,
                "outcome_state": rng.choice(OUTCOMES) if worker else "",
                # a few equal instants: ties are ordered by id
                "created_us": 1_900_000_000_000_000 + (i // 3) * 1000,
            }
        )
    return out


async def _insert(conn: Any, rows: list[Row], *, in_redis: bool = True) -> None:
    await conn.executemany(
        "INSERT INTO executions (id, cue_id, account_id, scheduled_for_us, status, triggered_by, worker_id, "
        "outcome_state, created_us, updated_us, in_redis, doc) "
        "VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $4, $4, $9, json_build_object('id', $1::text))",
        [
            (
                r["id"],
                r["cue_id"],
                r["account_id"],
                r["created_us"],
                r["status"],
                r["triggered_by"],
                r["worker_id"],
                r["outcome_state"],
                in_redis,
            )
            for r in rows
        ],
    )


def _expected(rows: list[Row], f: ExecutionFilters) -> list[str]:
    """The plain answer: filter, newest first (ties: id descending)."""
    keep = [
        r
        for r in rows
        if r["account_id"] == ACCT
        and (f.cue_id is None or r["cue_id"] == f.cue_id)
        and (f.statuses is None or r["status"] in f.statuses)
        and (f.worker_id is None or r["worker_id"] == f.worker_id != "")
        and (f.outcome_state is None or r["outcome_state"] == f.outcome_state)
        and (f.triggered_by is None or r["triggered_by"] == f.triggered_by)
    ]
    keep.sort(key=lambda r: (r["created_us"], uuid.UUID(r["id"])), reverse=True)
    return [r["id"] for r in keep]


def _all_filters() -> list[ExecutionFilters]:
    """Every combination of every filter (status and status__in are one field), each with a
    value that matches rows and one that matches none."""
    cues = (None, CUES[0], CUES[1], "cue_nonexist01")
    statuses = (None, frozenset({"success"}), frozenset({"failed", "missed"}), frozenset({"pending"}))
    workers = (None, WORKERS[0], "", "w-none")
    outcomes = (None, "", "reported_failure")
    triggers = (None, "scheduled", "replay")
    return [
        ExecutionFilters(cue_id=c, statuses=s, worker_id=w, outcome_state=o, triggered_by=t)
        for c, s, w, o, t in itertools.product(cues, statuses, workers, outcomes, triggers)
    ]


async def _check_pages(conn: Any, rows: list[Row], f: ExecutionFilters, handed: Sequence[str] = ()) -> None:
    want = _expected(rows, f)
    n = len(want)
    # from the newest end, and past the middle from the oldest end
    pages = [(0, 20), (0, 7), (5, 3), (n // 2 - 3, 7), (n // 2, 7), (n - 9, 7), (n - 2, 5), (n - 1, 1)]
    for offset, limit in [(max(0, o), li) for o, li in pages] + [(n, 5), (0, 0), (0, n + 5)]:
        got, total = await history_page(conn, ACCT, f, offset, limit, handed=handed)
        assert total == len(want), f
        assert [h["id"] for h in got] == want[offset : offset + limit], (f, offset, limit)


async def test_every_filter_and_combination_pages_like_a_plain_filter(pool: Any) -> None:
    rows = _rows(600, seed=1)
    live = _rows(100, seed=2)  # still in Redis: never part of the history
    theirs = _rows(150, seed=3, account=OTHER)
    async with pool.acquire() as conn:
        await _insert(conn, rows + live + theirs)
        async with conn.transaction():
            await to_history(conn, [r["id"] for r in rows + theirs])
        for f in _all_filters():
            await _check_pages(conn, rows, f)


async def test_handed_off_rows_are_listed_and_counted_with_the_history(pool: Any) -> None:
    """Rows a trim removed from Redis but has not yet marked (``handed``) join every filter."""
    rows = _rows(200, seed=4)
    async with pool.acquire() as conn:
        await _insert(conn, rows)
        async with conn.transaction():
            await to_history(conn, [r["id"] for r in rows[:150]])
        handed = [r["id"] for r in rows[150:]]
        for f in _all_filters()[::7]:
            await _check_pages(conn, rows, f, handed)
        # without them, only the marked rows
        f = ExecutionFilters(statuses=frozenset({"success", "failed"}))
        got, total = await history_page(conn, ACCT, f, 0, 500)
        assert total == len(_expected(rows[:150], f)) == len(got)


async def test_counts_stay_exact_through_every_kind_of_write(pool: Any) -> None:
    rows = _rows(300, seed=5)
    theirs = _rows(50, seed=6, account=OTHER)
    ids = [r["id"] for r in rows]
    async with pool.acquire() as conn:
        await _insert(conn, rows + theirs)
        await counts_exact(conn)
        async with conn.transaction():  # the trim: counted at once
            await to_history(conn, ids[:200] + [r["id"] for r in theirs])
        await counts_exact(conn)
        # a row written straight as history (the insert trigger) and a plain UPDATE of in_redis
        extra = _rows(5, seed=7)
        await _insert(conn, extra, in_redis=False)
        await conn.execute("UPDATE executions SET in_redis = false WHERE id = ANY($1::uuid[])", ids[200:220])
        await counts_exact(conn)
        # a history row moving cell, and one taken back by a snapshot's upsert (in_redis again)
        await conn.execute(
            "UPDATE executions SET outcome_state = 'verified_success', worker_id = 'w-9' WHERE id = $1::uuid",
            ids[0],
        )
        await conn.execute("UPDATE executions SET in_redis = true WHERE id = ANY($1::uuid[])", ids[1:4])
        await conn.execute("UPDATE executions SET doc = doc WHERE id = ANY($1::uuid[])", ids[:50])  # no move
        await counts_exact(conn)
        # deletes: one execution, a whole cue (the snapshot; History.forget_cue)
        await conn.execute("DELETE FROM executions WHERE id = $1::uuid", ids[10])
        await conn.execute("DELETE FROM executions WHERE cue_id = ANY($1::text[])", [CUES[2]])
        await counts_exact(conn)
        async with conn.transaction():
            await fold_counts(conn)
        assert await conn.fetchval("SELECT count(*) FROM history_count_changes") == 0
        assert await conn.fetchval("SELECT count(*) FROM history_counts WHERE n <= 0") == 0
        await counts_exact(conn)
        # and the listings agree with the rows, through the folded counts
        now = await conn.fetch(
            "SELECT id::text AS id, cue_id, account_id, status, triggered_by, worker_id, outcome_state, "
            "created_us FROM executions WHERE NOT in_redis"
        )
        history = [dict(r) for r in now]
        for f in _all_filters()[::5]:
            await _check_pages(conn, history, f)
        await conn.execute("TRUNCATE executions")
        await counts_exact(conn)
        assert await conn.fetchval("SELECT count(*) FROM history_counts") == 0


async def test_a_trim_counts_with_no_change_per_row(pool: Any) -> None:
    """``to_history`` adds its rows to ``history_counts`` itself: the row trigger stands aside
    (readers would otherwise sum, and vacuum chase, one change per trimmed row)."""
    rows = _rows(400, seed=8)
    async with pool.acquire() as conn:
        await _insert(conn, rows)
        async with conn.transaction():
            await conn.execute("INSERT INTO history_count_changes VALUES ('a', 'c', '', 's', '', 't', 0)")
            await to_history(conn, [r["id"] for r in rows])
        assert await conn.fetchval("SELECT count(*) FROM history_count_changes") == 0
        assert await conn.fetchval("SELECT current_setting('cuefast.counted', true)") in (None, "", "off")
        await counts_exact(conn)


async def test_every_filter_reads_indexes(pool: Any) -> None:
    rows = _rows(3000, seed=9)
    async with pool.acquire() as conn:
        await _insert(conn, rows + _rows(3000, seed=10, account=OTHER))
        async with conn.transaction():
            await to_history(conn, [r["id"] for r in rows])
        await conn.execute("VACUUM ANALYZE executions")
        for f in _all_filters()[::3]:
            for offset in (0, 500):
                ex = Explaining(conn)
                await history_page(ex, ACCT, f, offset, 20)
                for plan in ex.plans:
                    # (at this size a bitmap scan and a sort may win; bench history shows the
                    # ordered index-only scans at 300k)
                    assert "Seq Scan on executions" not in plan, (f, plan)


_V2 = """
CREATE TABLE cuefast_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO cuefast_meta VALUES ('schema_version', '2');
CREATE TABLE executions (
    id uuid PRIMARY KEY, cue_id text NOT NULL, account_id text NOT NULL,
    scheduled_for_us bigint NOT NULL, status text NOT NULL, triggered_by text NOT NULL,
    worker_id text NOT NULL DEFAULT '', outcome_state text NOT NULL DEFAULT '',
    created_us bigint NOT NULL, updated_us bigint NOT NULL, in_redis boolean NOT NULL DEFAULT true,
    doc json NOT NULL
);
CREATE INDEX executions_account_history ON executions (account_id, created_us DESC, id DESC)
    WHERE NOT in_redis;
CREATE INDEX executions_cue_history ON executions (cue_id, created_us DESC, id DESC) WHERE NOT in_redis;
"""


async def test_a_v2_database_is_migrated_at_start(database_url: str) -> None:
    schema = f"cfhist_{uuid.uuid4().hex[:10]}"
    p = await create_pool(database_url, schema, min_size=1, max_size=2)
    try:
        rows = _rows(250, seed=11)
        async with p.acquire() as conn:
            await conn.execute(_V2)
            await _insert(conn, rows[:180], in_redis=False)  # history written by v2, uncounted
            await _insert(conn, rows[180:])
        await migrate(p)
        await migrate(p)  # a second process starting: nothing counted twice
        async with p.acquire() as conn:
            assert await conn.fetchval("SELECT value FROM cuefast_meta WHERE key = 'schema_version'") == "3"
            names = {
                r[0]
                for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = $1", schema)
            }
            assert "executions_account_history" not in names and "executions_cue_history" not in names
            assert {"executions_hist_a_all", "executions_hist_a_cell", "executions_hist_cw_cell"} <= names
            await counts_exact(conn)
            assert (
                await conn.fetchval("SELECT sum(n) FROM history_counts WHERE cue_id = '' AND worker_id = ''")
                == 180
            )
            for f in _all_filters()[::4]:
                await _check_pages(conn, rows[:180], f)
            # and the triggers count what comes next
            async with conn.transaction():
                await to_history(conn, [r["id"] for r in rows[180:]])
            await conn.execute("DELETE FROM executions WHERE cue_id = $1", CUES[0])
            await counts_exact(conn)
    finally:
        await p.close()
        await drop_schema(database_url, schema)
