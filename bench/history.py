"""History listings at scale (issue 14): one account's PostgreSQL history grown to 300k rows;
p50/p99 per filter of CONTRACT.md §8.3 and the plan of each query.

``./dev bench history [--sizes 10000,100000,300000] [--requests 200] [--legacy [--legacy-requests 30]]
[--explain PATH] [--json PATH]``

Works on the local PostgreSQL (``CUEFAST_DATABASE_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``) in a schema of its own, dropped afterwards; no
Redis (the history part of a listing is PostgreSQL alone: ``durability.history.history_page``).
Seeds one account (50 cues, half of them worker cues served by four workers) plus a neighbour
account of 50k rows, straight into ``executions`` as a snapshot would, then moved to history by
``to_history`` in batches of 1,000 as the trim does (so counted as a trim counts): statuses
85 % success, 10 % failed, 3 % missed, 2 % outcome_timeout; ``triggered_by`` 90 % scheduled,
8 % manual_fire, 2 % replay; worker executions mostly with an outcome. After each step
(``VACUUM ANALYZE``, as autovacuum would) every filter is read ``--requests`` times at offset 0
("first") and at a uniformly random offset within its total ("any"), one connection,
sequentially, ``limit`` 20; every
``total`` is checked against ``count(*)``.
``--legacy`` also measures the v2 query (``count(*)`` + ``OFFSET`` on the v2 indexes, swapped in
for the run and out again). ``--explain`` writes ``EXPLAIN (ANALYZE, BUFFERS)`` of each filter's
queries at the last size (first page, a page at half the total, the last page) and fails on a sequential
scan of ``executions``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.__main__ import _git_sha
from cuefast.durability.history import history_page
from cuefast.durability.schema import DDL, create_pool, drop_schema, migrate, to_history
from cuefast.services.executions import ExecutionFilters

ACCOUNT = "acct_bench_history"
NEIGHBOUR = "acct_bench_neighbour"
N_CUES = 50
WORKERS = ("hist-w0", "hist-w1", "hist-w2", "hist-w3")
T0_US = 1_900_000_000_000_000

# one history row per series number: status, triggered_by, worker and outcome from hashes of it
_SEED = """
INSERT INTO executions (id, cue_id, account_id, scheduled_for_us, status, triggered_by, worker_id,
    outcome_state, created_us, updated_us, in_redis, doc)
SELECT id, cue, $1::text, ca, st, tb, cw, os, ca, ca + 2000000, true,
    json_build_object('id', id, 'cue', cue, 'acct', $1::text, 'sf', ca, 'st', st, 'tb', tb, 'cw', cw,
        'os', os,
        'ca', ca, 'ua', ca + 2000000, 'att', '1', 'http', CASE WHEN cw = '' THEN '200' ELSE '' END,
        'out', CASE WHEN os = '' THEN '' ELSE '{"success": true, "result": "done in 41 ms", '
            || '"metadata": {"rows": 1200}}' END,
        'payload', '{"task": "summarise the inbox", "priority": 2}')
FROM (
    SELECT gen_random_uuid() AS id, $3::bigint + i * 1000 AS ca,
        $5::text || lpad((c % 50)::text, 5, '0') AS cue,
        CASE WHEN s < 85 THEN 'success' WHEN s < 95 THEN 'failed' WHEN s < 98 THEN 'missed'
            ELSE 'outcome_timeout' END AS st,
        CASE WHEN t < 90 THEN 'scheduled' WHEN t < 98 THEN 'manual_fire' ELSE 'replay' END AS tb,
        CASE WHEN c % 2 = 1 AND s < 98 THEN 'hist-w' || (w % 4) ELSE '' END AS cw,
        CASE WHEN c % 2 = 1 AND s < 85 THEN 'reported_success'
            WHEN c % 2 = 1 AND s < 95 THEN 'reported_failure' ELSE '' END AS os
    FROM (
        SELECT i, (hashtext(i::text) & 1023) % 100 AS s, (hashtext('t' || i) & 1023) % 100 AS t,
            CASE WHEN (hashtext('c' || i) & 1023) % 10 = 0 THEN 1
                ELSE (hashtext('k' || i) & 1023) % 50 END AS c,
            hashtext('w' || i) & 1023 AS w
        FROM generate_series($2::bigint, $4::bigint - 1) AS i
    ) g
) r
"""

FILTERS: dict[str, ExecutionFilters] = {
    "none": ExecutionFilters(),
    "status=success": ExecutionFilters(statuses=frozenset({"success"})),
    "status=missed": ExecutionFilters(statuses=frozenset({"missed"})),
    "status__in=failed,outcome_timeout": ExecutionFilters(statuses=frozenset({"failed", "outcome_timeout"})),
    "cue_id (busy, 12%)": ExecutionFilters(cue_id="cue_bench00001"),
    "cue_id (2%)": ExecutionFilters(cue_id="cue_bench00002"),
    "outcome_state=reported_failure": ExecutionFilters(outcome_state="reported_failure"),
    "triggered_by=replay": ExecutionFilters(triggered_by="replay"),
    "worker_id": ExecutionFilters(worker_id="hist-w1"),
    "cue_id+status=failed": ExecutionFilters(cue_id="cue_bench00002", statuses=frozenset({"failed"})),
    "cue_id+worker_id": ExecutionFilters(cue_id="cue_bench00001", worker_id="hist-w2"),
    "worker_id+outcome_state": ExecutionFilters(worker_id="hist-w0", outcome_state="reported_failure"),
    "status+triggered_by": ExecutionFilters(statuses=frozenset({"failed"}), triggered_by="manual_fire"),
    "all five": ExecutionFilters(
        cue_id="cue_bench00003",
        statuses=frozenset({"success", "failed"}),
        worker_id="hist-w3",
        outcome_state="reported_success",
        triggered_by="scheduled",
    ),
}

_V3_INDEXES = (
    "executions_hist_a_all",
    "executions_hist_c_all",
    "executions_hist_a_cell",
    "executions_hist_c_cell",
    "executions_hist_w_cell",
    "executions_hist_cw_cell",
)
_V2_INDEXES = (
    "CREATE INDEX executions_account_history ON executions (account_id, created_us DESC, id DESC) "
    "WHERE NOT in_redis",
    "CREATE INDEX executions_cue_history ON executions (cue_id, created_us DESC, id DESC) WHERE NOT in_redis",
)


async def legacy_page(
    conn: Any, account_id: str, filters: ExecutionFilters, offset: int, limit: int
) -> tuple[list[dict[str, str]], int]:
    """The v2 query (before this change), for comparison: ``count(*)`` then ``OFFSET``."""
    args: list[Any] = [account_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = ["account_id = $1", "NOT in_redis"]
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
    total = int(await conn.fetchval(f"SELECT count(*) FROM executions WHERE {cond}", *args))
    if limit <= 0 or offset >= total:
        return [], total
    rows = await conn.fetch(
        f"SELECT doc::text AS doc FROM executions WHERE {cond} "
        f"ORDER BY created_us DESC, id DESC OFFSET {int(offset)} LIMIT {int(limit)}",
        *args,
    )
    return [json.loads(r["doc"]) for r in rows], total


class Explaining:
    """A connection whose queries are run under ``EXPLAIN (ANALYZE, BUFFERS)`` first."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.plans: list[str] = []

    async def _explain(self, sql: str, args: Sequence[Any]) -> None:
        rows = await self.conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
        self.plans.append("\n".join(r[0] for r in rows))

    async def fetch(self, sql: str, *args: Any) -> Any:
        await self._explain(sql, args)
        return await self.conn.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        await self._explain(sql, args)
        return await self.conn.fetchval(sql, *args)


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _true_total(conn: Any, f: ExecutionFilters) -> int:
    _, total = await legacy_page(conn, ACCOUNT, f, 0, 0)
    return total


async def _measure(conn: Any, page: Any, f: ExecutionFilters, total: int, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    rng = random.Random(7)
    for kind in ("first", "any"):
        times = []
        for _ in range(n):
            offset = 0 if kind == "first" else rng.randrange(max(total, 1))
            t0 = time.perf_counter()
            rows, got = await page(conn, ACCOUNT, f, offset, 20)
            times.append((time.perf_counter() - t0) * 1000)
            if got != total or (total > offset and not rows):
                raise SystemExit(f"total {got} != {total} or an empty page at {offset}")
        out[f"{kind}_p50_ms"] = round(_pct(times, 0.5), 2)
        out[f"{kind}_p99_ms"] = round(_pct(times, 0.99), 2)
    return out


async def _trim(conn: Any) -> None:
    """Every row still ``in_redis`` becomes history, 1,000 per transaction, as the trim does."""
    ids = [r[0] for r in await conn.fetch("SELECT id::text FROM executions WHERE in_redis")]
    for i in range(0, len(ids), 1000):
        async with conn.transaction():
            await to_history(conn, ids[i : i + 1000])


async def _swap(conn: Any, legacy: bool) -> None:
    if legacy:
        for name in _V3_INDEXES:
            await conn.execute(f"DROP INDEX {name}")
        for ddl in _V2_INDEXES:
            await conn.execute(ddl)
    else:  # the v3 schema's DDL drops the v2 indexes and builds its own
        await conn.execute(DDL)
    await conn.execute("ANALYZE executions")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    dsn = os.environ.get("CUEFAST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"bench_history_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(dsn, schema, min_size=1, max_size=2)
    results: dict[str, Any] = {"sizes": {}}
    try:
        await migrate(pool)
        async with pool.acquire() as conn:
            results["postgres"] = await conn.fetchval("SHOW server_version")
            await conn.execute(_SEED, NEIGHBOUR, 10_000_000, T0_US, 10_050_000, "cue_neigh")
            await _trim(conn)
            have = 0
            for size in args.sizes:
                t0 = time.perf_counter()
                await conn.execute(_SEED, ACCOUNT, have, T0_US, size, "cue_bench")
                await _trim(conn)
                await conn.execute("VACUUM ANALYZE executions")
                have = size
                seed_s = time.perf_counter() - t0
                print(f"\n## {size:,} history rows in the account (seeded in {seed_s:.1f} s)")
                print(
                    "| filter | total | first p50 / p99 ms | any page p50 / p99 ms |"
                    + (" v2: first p50 / p99 | v2: any p50 / p99 |" if args.legacy else "")
                )
                print("|---|---:|---:|---:|" + ("---:|---:|" if args.legacy else ""))
                step: dict[str, Any] = {}
                totals = {name: await _true_total(conn, f) for name, f in FILTERS.items()}
                for name, f in FILTERS.items():
                    step[name] = {
                        "total": totals[name],
                        **await _measure(conn, history_page, f, totals[name], args.requests),
                    }
                if args.legacy:
                    await _swap(conn, True)
                    for name, f in FILTERS.items():
                        old = await _measure(conn, legacy_page, f, totals[name], args.legacy_requests)
                        step[name].update({f"v2_{k}": v for k, v in old.items()})
                    await _swap(conn, False)
                for name, r in step.items():
                    line = (
                        f"| {name} | {r['total']:,} | {r['first_p50_ms']} / {r['first_p99_ms']} "
                        f"| {r['any_p50_ms']} / {r['any_p99_ms']} |"
                    )
                    if args.legacy:
                        line += (
                            f" {r['v2_first_p50_ms']} / {r['v2_first_p99_ms']} "
                            f"| {r['v2_any_p50_ms']} / {r['v2_any_p99_ms']} |"
                        )
                    print(line)
                results["sizes"][size] = step
            if args.explain:
                await _explain_all(
                    conn, args.explain, {n: s["total"] for n, s in results["sizes"][have].items()}
                )
    finally:
        await pool.close()
        await drop_schema(dsn, schema)
    return results


async def _explain_all(conn: Any, path: Path, totals: dict[str, int]) -> None:
    out: list[str] = []
    bad: list[str] = []
    for name, f in FILTERS.items():
        pages = (("first page", 0), ("page at half the total", totals[name] // 2))
        for label, offset in (*pages, ("last page", max(0, totals[name] - 20))):
            ex = Explaining(conn)
            await history_page(ex, ACCOUNT, f, offset, 20)
            out.append(f"### {name}: {label} (offset {offset:,})\n")
            for plan in ex.plans:
                out.append("```\n" + plan + "\n```\n")
                if "Seq Scan on executions" in plan:
                    bad.append(f"{name} / {label}")
    path.write_text("\n".join(out))
    print(f"\nplans written to {path}")
    if bad:
        raise SystemExit(f"sequential scan of executions in: {', '.join(bad)}")


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench history")
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--legacy", action="store_true", help="also measure the v2 query and indexes")
    parser.add_argument("--legacy-requests", type=int, default=30, help="per filter and kind, with --legacy")
    parser.add_argument("--explain", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    print(
        f"# history bench — git {_git_sha()}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    results = asyncio.run(run(args))
    results["git"] = _git_sha()
    print(f"PostgreSQL {results['postgres']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
