"""Worker pull benchmark: claim → outcome cycles per second through the batch pull API.

``python -m bench.worker_pull --executions 20000 --workers 4 --max 500``

Starts ``cuefast api`` as its own process (local Redis and PostgreSQL, a fresh key prefix
deleted afterwards), queues ``--executions`` worker executions straight through the store
(setup, not measured), then runs ``--workers`` concurrent pull loops over HTTP: ``POST
/v1/worker/claim`` (``--max`` per call) followed by one ``POST /v1/worker/outcomes`` for
everything claimed, until nothing is left. Reports cycles/s and per-call latencies; the
``--single`` mode uses the CueAPI door instead (claim-next + outcome per execution).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid

import httpx
import redis as sync_redis

from bench.__main__ import _free_port
from bench.cpu import process_seconds, redis_url_seconds
from bench.scale import wait_healthy
from cuefast.ids import new_execution_id
from cuefast.store import Store, connect
from cuefast.store.keys import Keys

REDIS = os.environ.get("CUEFAST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG = os.environ.get("CUEFAST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
PARTITIONS = 16


async def setup(base: str, prefix: str, n: int) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        key = (await client.post("/v1/auth/register", json={"email": f"{prefix}@bench.test"})).json()[
            "api_key"
        ]
        auth = {"Authorization": f"Bearer {key}"}
        res = await client.post(
            "/v1/cues",
            headers=auth,
            json={
                "name": "bench",
                "transport": "worker",
                "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
                "payload": {"task": "bench"},
            },
        )
        cue = res.json()
    store = Store(connect(REDIS), Keys(prefix, PARTITIONS))
    account_id = await store.accounts.account_of_key(_sha(key))
    p = store.keys.cue_partition(cue["id"])
    now = time.time_ns() // 1000
    sem = asyncio.Semaphore(256)

    async def one() -> None:
        async with sem:
            await store.executions.create(
                execution_id=new_execution_id(p),
                cue_id=cue["id"],
                account_id=str(account_id),
                scheduled_us=now,
                payload_json='{"task": "bench"}',
                triggered_by="manual_fire",
                now_us=now,
            )

    await asyncio.gather(*(one() for _ in range(n)))
    await store.close()
    return str(key)


def _sha(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


async def drop_schema(schema: str) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG)
    except Exception:
        return
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def batch_loop(client: httpx.AsyncClient, worker: str, n_max: int, lat: dict[str, list[float]]) -> int:
    done = 0
    while True:
        t = time.perf_counter()
        res = await client.post("/v1/worker/claim", json={"worker_id": worker, "max": n_max})
        lat["claim"].append(time.perf_counter() - t)
        items = res.json()["executions"]
        if not items:
            return done
        t = time.perf_counter()
        res = await client.post(
            "/v1/worker/outcomes",
            json={
                "worker_id": worker,
                "outcomes": [
                    {"execution_id": i["execution_id"], "success": True, "result": "ok"} for i in items
                ],
            },
        )
        lat["outcomes"].append(time.perf_counter() - t)
        assert all(r["outcome_recorded"] for r in res.json()["results"]), res.text
        done += len(items)


async def single_loop(client: httpx.AsyncClient, worker: str, lat: dict[str, list[float]]) -> int:
    done = 0
    while True:
        t = time.perf_counter()
        res = await client.post("/v1/executions/claim", json={"worker_id": worker})
        lat["claim"].append(time.perf_counter() - t)
        if res.status_code == 409:
            return done
        eid = res.json()["execution_id"]
        t = time.perf_counter()
        await client.post(f"/v1/executions/{eid}/outcome", json={"success": True, "result": "ok"})
        lat["outcomes"].append(time.perf_counter() - t)
        done += 1


async def run(args: argparse.Namespace) -> None:
    prefix = f"bw{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")},
        "CUEFAST_REDIS_URL": REDIS,
        "CUEFAST_DATABASE_URL": PG,
        "CUEFAST_DATABASE_SCHEMA": f"{prefix}",
        "CUEFAST_KEY_PREFIX": prefix,
        "CUEFAST_PARTITIONS": str(PARTITIONS),
        "CUEFAST_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "cuefast", "api", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            await wait_healthy(client, proc)
        t = time.perf_counter()
        key = await setup(base, prefix, args.executions)
        print(f"queued {args.executions} worker executions in {time.perf_counter() - t:.1f} s")
        lat: dict[str, list[float]] = {"claim": [], "outcomes": []}
        limits = httpx.Limits(max_connections=args.workers * 2)
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60, limits=limits
        ) as client:
            cpu_api0, cpu_client0, cpu_redis0 = (
                process_seconds(proc.pid),
                time.process_time(),
                redis_url_seconds(REDIS),
            )
            t = time.perf_counter()
            if args.single:
                counts = await asyncio.gather(
                    *(single_loop(client, f"w{i}", lat) for i in range(args.workers))
                )
            else:
                counts = await asyncio.gather(
                    *(batch_loop(client, f"w{i}", args.max, lat) for i in range(args.workers))
                )
            elapsed = time.perf_counter() - t
            cpu_api = process_seconds(proc.pid) - cpu_api0
            cpu_client = time.process_time() - cpu_client0
            cpu_redis = redis_url_seconds(REDIS) - cpu_redis0
        total = sum(counts)
        mode = "single (CueAPI door)" if args.single else f"batch max={args.max}"
        rate = total / elapsed
        print(
            f"{mode}, {args.workers} workers: {total} claim→outcome cycles in {elapsed:.2f} s = {rate:,.0f}/s"
        )
        print(
            f"  CPU: api process {cpu_api:.2f} s, redis-server {cpu_redis:.2f} s (all its clients), "
            f"bench client {cpu_client:.2f} s; wall {elapsed:.2f} s"
        )
        for name, values in lat.items():
            if values:
                q = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
                print(f"  {name}: {len(values)} calls, p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")
        assert total == args.executions, (total, args.executions)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        await drop_schema(prefix)
        r = sync_redis.Redis.from_url(REDIS)
        batch = list(r.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(batch), 500):
            r.delete(*batch[i : i + 500])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max", type=int, default=500)
    parser.add_argument(
        "--single", action="store_true", help="CueAPI door: claim-next + outcome per execution"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
