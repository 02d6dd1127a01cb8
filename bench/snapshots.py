"""Snapshot and restore benchmark: rows/s upserted to PostgreSQL, and the time to rebuild Redis.

``./dev bench snapshots [--cues 100000] [--executions 1000000] [--partitions 16]``

In-process, against the local Redis and PostgreSQL (a fresh key prefix and PostgreSQL schema,
both deleted afterwards). Setup (not measured): one account, ``--cues`` worker cues and
``--executions`` finished executions with outcomes spread over them, written straight into
Redis by the restore scripts (the fastest bulk loader we have), every object marked dirty.
Measured: (1) one full snapshot — everything dirty → PostgreSQL, the snapshotter's own batches;
(2) Redis keys of the prefix deleted, then ``cuefast restore``'s code path → Redis. Each prints
the CPU seconds it took of this process and of the Redis server (``INFO cpu``: exact only on a
private Redis), so a run shows which side bounds it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import asyncpg
import msgspec
import redis as sync_redis

from bench.cpu import redis_seconds
from cuefast.clock import SystemClock
from cuefast.config import load_settings
from cuefast.durability import schema as pg
from cuefast.durability.restore import restore
from cuefast.durability.snapshots import Snapshotter
from cuefast.ids import new_execution_id
from cuefast.store import Store, connect
from cuefast.store.keys import Keys

REDIS = os.environ.get("CUEFAST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG = os.environ.get("CUEFAST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def _load(store: Store, n_cues: int, n_execs: int, now: int) -> str:
    keys = store.keys
    acct = str(uuid.uuid4())
    account = {
        "id": acct,
        "email": f"{acct}@bench.test",
        "email_lc": f"{acct}@bench.test",
        "plan": "free",
        "cue_limit": "1000000000",
        "exec_limit": "1000000000",
        "rate_limit": "60000",
        "wh_secret": "whsec_x",
        "alert_secret": "x",
        "key_sha": uuid.uuid4().hex,
        "key_prefix": "cue_sk_bench",
        "slug": acct[:8],
        "created": str(now),
        "updated": str(now),
    }
    await store.redis.hset(keys.account(acct), mapping=account)  # type: ignore[arg-type]
    await store.redis.sadd(keys.dirty(keys.account_slot(acct)), f"acct:{acct}")
    cfg = '{"callback":{"method":"POST","headers":{}},"retry":{"max_attempts":3,"backoff_minutes":[1,5,15]}}'
    cue_ids = [f"cue_{uuid.uuid4().hex[:12]}" for _ in range(n_cues)]
    by_p: dict[int, list[tuple[str, str]]] = {}
    for i, cid in enumerate(cue_ids):
        h = {
            "acct": acct,
            "name": f"bench-{i}",
            "status": "active",
            "tr": "worker",
            "nr": str(now + 86_400_000_000),
            "lr": "",
            "rc": "0",
            "fc": "0",
            "ca": str(now - i),
            "ua": str(now - i),
            "v": "1",
            "cfg": cfg,
            "pl": '{"task":"bench"}',
            "sch": "recurring|UTC|false|0 0 * * *",
        }
        by_p.setdefault(keys.cue_partition(cid), []).append((cid, msgspec.json.encode(h).decode()))
    calls = [(p, rows[i : i + 500]) for p, rows in by_p.items() for i in range(0, len(rows), 500)]
    for i in range(0, len(calls), 20):
        await store.restore.cues(calls[i : i + 20])
    enc = msgspec.json.Encoder()
    done = 0
    while done < n_execs:
        chunk = min(50_000, n_execs - done)
        ebatch: dict[int, list[str]] = {}
        members: dict[int, list[str]] = {}
        for j in range(chunk):
            cid = cue_ids[(done + j) % n_cues]
            p = keys.cue_partition(cid)
            eid = new_execution_id(p)
            t = now - (done + j) * 1000
            h = {
                "id": eid,
                "cue": cid,
                "acct": acct,
                "tr": "worker",
                "sf": str(t),
                "st": "success",
                "tb": "scheduled",
                "att": "1",
                "ca": str(t),
                "ua": str(t + 500),
                "cla": str(t + 100),
                "cw": "bench-worker",
                "pl": '{"task":"bench"}',
                "os": "done",
                "oc": '{"success":true,"result":"ok","metadata":{"rows":42}}',
                "da": str(t + 500),
            }
            ebatch.setdefault(p, []).append(enc.encode(h).decode())
            members.setdefault(p, []).append(f"exec:{eid}")
        ecalls = [(p, docs[i : i + 500]) for p, docs in ebatch.items() for i in range(0, len(docs), 500)]
        for i in range(0, len(ecalls), 20):
            await store.restore.executions(ecalls[i : i + 20], now)
        await store.snapshots.mark_dirty({keys.part(p): m for p, m in members.items()})
        done += chunk
    await store.snapshots.mark_dirty(
        {keys.part(p): [f"cue:{cid}" for cid, _ in rows] for p, rows in by_p.items()}
    )
    return acct


async def _wipe(store: Store) -> None:
    batch: list[str] = []
    async for k in store.redis.scan_iter(match=f"{store.keys.prefix}:*", count=10_000):
        batch.append(k)
        if len(batch) >= 5000:
            await store.redis.delete(*batch)
            batch = []
    if batch:
        await store.redis.delete(*batch)


def _cpu(info: sync_redis.Redis) -> tuple[float, float]:
    """(this process's, the Redis server's) CPU seconds so far."""
    return time.process_time(), redis_seconds(info)


def _cpu_text(info: sync_redis.Redis, since: tuple[float, float]) -> str:
    now = _cpu(info)
    return f"CPU: this process {now[0] - since[0]:.1f} s, Redis {now[1] - since[1]:.1f} s"


async def run(n_cues: int, n_execs: int, partitions: int) -> None:
    prefix = f"bsnap{uuid.uuid4().hex[:8]}"
    schema = f"bench_snap_{uuid.uuid4().hex[:8]}"
    settings = load_settings({}, redis_url=REDIS, database_url=PG, key_prefix=prefix, partitions=partitions)
    store = Store(connect(REDIS), Keys(prefix, partitions))
    await store.preload()
    await store.system.check_partitions()
    pool = await pg.create_pool(PG, schema, max_size=4)
    await pg.migrate(pool)
    clock = SystemClock()
    info = sync_redis.Redis.from_url(REDIS)
    try:
        t0 = time.perf_counter()
        await _load(store, n_cues, n_execs, clock.now_us())
        print(f"setup: {n_cues} cues + {n_execs} executions into Redis in {time.perf_counter() - t0:.1f}s")
        snap = Snapshotter(store, settings, clock, pool)
        assert await snap.acquire()
        t0, cpu = time.perf_counter(), _cpu(info)
        stats = await snap.snapshot()
        secs = time.perf_counter() - t0
        await snap.release()
        print(
            f"snapshot: {stats.rows} rows in {secs:.1f}s = {stats.rows / secs:,.0f} rows/s "
            f"({stats.batches} batches, {stats.statements} statements); {_cpu_text(info, cpu)}"
        )
        print(
            f"  stage seconds (summed over concurrent slots): take {stats.take_s:.1f}, "
            f"build {stats.build_s:.1f}, pg {stats.pg_s:.1f}, commit {stats.commit_s:.1f}"
        )
        await _wipe(store)
        t0, cpu = time.perf_counter(), _cpu(info)
        r = await restore(store, pool, clock.now_us())
        secs = time.perf_counter() - t0
        total = r.accounts + r.cues + r.executions
        print(
            f"restore: {r.accounts} accounts, {r.cues} cues, {r.executions} executions in {secs:.1f}s "
            f"= {total / secs:,.0f} objects/s; {_cpu_text(info, cpu)}"
        )
    finally:
        await _wipe(store)
        await pool.close()
        conn = await asyncpg.connect(PG)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        await store.close()
        info.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench snapshots")
    parser.add_argument("--cues", type=int, default=100_000)
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(run(args.cues, args.executions, args.partitions))
    except ImportError:  # pragma: no cover
        asyncio.run(run(args.cues, args.executions, args.partitions))


if __name__ == "__main__":
    main()
