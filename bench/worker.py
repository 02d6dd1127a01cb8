"""Worker throughput: claim → outcome cycles per second with no-op handlers.

``./dev bench worker [--executions N] [--modes batch single] [--role serve|api] [--caps 0 10000] ...``

Starts ``cuefast <role>`` as its own process (the local Redis/PostgreSQL by default), queues
N claimable executions of a worker cue (through the store; not measured), then drains them:

* ``batch``  — the ``cuefast worker`` daemon (``cuefast.Worker``, in this process) with a
  no-op async handler: batch claim (``POST /v1/worker/claim``), batched outcomes
  (``POST /v1/worker/outcomes``);
* ``single`` — the CueAPI door: ``--clients`` concurrent loops of
  ``POST /v1/executions/claim`` + ``POST /v1/executions/{id}/outcome`` (what one claim per
  execution costs, as the official worker does it).

Prints one markdown row per mode and ``--caps`` value: cycles/s from the first claim to the last
recorded outcome. ``--caps 0 10000`` runs each mode without a task claim cap and with one that
never binds (``PUT /v1/worker/task-caps/{task}``), in the same run: the cost of the cap itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.__main__ import ROOT, _free_port, _git_sha, _wait_healthy
from cuefast import AsyncCueFast, CueAPIConnectionError, CueAPIError, Worker

REDIS = os.environ.get("CUEFAST_REDIS_URL", "redis://127.0.0.1:6379/0")
PARTITIONS = 16


def _register(url: str) -> str:
    import httpx

    res = httpx.post(url + "/v1/auth/register", json={"email": f"bench-{uuid.uuid4().hex[:8]}@example.com"})
    res.raise_for_status()
    return str(res.json()["api_key"])


async def _setup(url: str, prefix: str, n: int, task: str, cap: int = 0) -> str:
    """A fresh account with one worker cue and ``n`` claimable executions of it, queued
    straight through the store (setup is not measured; firing them over HTTP is slower)."""
    import hashlib

    import httpx

    from cuefast.ids import new_execution_id
    from cuefast.store import Store, connect
    from cuefast.store.keys import Keys

    key = _register(url)
    if cap:
        res = httpx.put(
            f"{url}/v1/worker/task-caps/{task}",
            json={"max_concurrency": cap},
            headers={"Authorization": f"Bearer {key}"},
        )
        res.raise_for_status()
    async with AsyncCueFast(key, base_url=url) as client:
        cue = await client.cues.create(
            f"bench-{task}", cron="0 0 1 1 *", transport="worker", payload={"task": task}
        )
    store = Store(connect(REDIS), Keys(prefix, PARTITIONS))
    account_id = str(await store.accounts.account_of_key(hashlib.sha256(key.encode()).hexdigest()))
    p = store.keys.cue_partition(cue.id)
    now = time.time_ns() // 1000
    sem = asyncio.Semaphore(256)
    payload = json.dumps({"task": task})

    async def one() -> None:
        async with sem:
            await store.executions.create(
                execution_id=new_execution_id(p),
                cue_id=cue.id,
                account_id=account_id,
                scheduled_us=now,
                payload_json=payload,
                triggered_by="manual_fire",
                now_us=now,
            )

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    await store.close()
    print(f"  queued {n} executions in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return key


async def run_batch(url: str, prefix: str, n: int, concurrency: int, prefetch: int, cap: int) -> float:
    key = await _setup(url, prefix, n, "noop", cap)
    worker = Worker(
        api_key=key,
        base_url=url,
        worker_id="bench-batch",
        concurrency=concurrency,
        prefetch=prefetch,
        wait_seconds=1,
    )

    @worker.handler("noop")
    async def noop(payload: dict[str, Any], ctx: Any) -> None:
        return None

    serving = asyncio.create_task(worker.serve())
    started = time.monotonic()
    while worker.stats.reported < n:
        if serving.done():
            serving.result()
            raise SystemExit("worker stopped early")
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - started
    worker.stop()
    await serving
    return n / elapsed


async def run_single(url: str, prefix: str, n: int, clients: int, cap: int) -> float:
    key = await _setup(url, prefix, n, "noop1", cap)
    done = errors = 0
    async with AsyncCueFast(key, base_url=url, max_retries=0, max_connections=clients) as client:

        async def loop(i: int) -> None:
            nonlocal done, errors
            while done < n:
                try:
                    claim = await client.executions.claim_next(f"bench-single-{i}", task="noop1")
                    await client.executions.report_outcome(claim.execution_id, True)
                except CueAPIConnectionError:
                    errors += 1  # a dropped connection under load; that cycle is not counted
                    continue
                except CueAPIError as exc:
                    if exc.code == "claim_failed":
                        return
                    raise
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop(i) for i in range(clients)))
        elapsed = time.monotonic() - started
    if errors:
        print(f"  {errors} connection errors", file=sys.stderr)
    return done / elapsed


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench worker")
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--modes", nargs="+", default=["batch", "single"], choices=["batch", "single"])
    parser.add_argument("--concurrency", type=int, default=500, help="batch: handlers at once")
    parser.add_argument("--prefetch", type=int, default=500, help="batch: claims waiting for a slot")
    parser.add_argument("--clients", type=int, default=32, help="single: concurrent claim/outcome loops")
    parser.add_argument("--role", default="serve", choices=["serve", "api"])
    parser.add_argument(
        "--caps", nargs="+", type=int, default=[0], help="task claim caps to run with (0: none), in turn"
    )
    args = parser.parse_args(argv)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")},
        "CUEFAST_KEY_PREFIX": prefix,
        "CUEFAST_LOG_LEVEL": "WARNING",
        "CUEFAST_REDIS_URL": REDIS,
        "CUEFAST_PARTITIONS": str(PARTITIONS),
        "CUEFAST_DATABASE_URL": os.environ.get(
            "CUEFAST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        "CUEFAST_DATABASE_SCHEMA": "cuefast_bench",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cuefast", args.role, "--port", str(port)], env=env, cwd=ROOT
    )
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run  # type: ignore[assignment]
    try:
        _wait_healthy(url)
        sha = _git_sha()
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
        print("| git | mode | role | executions | settings | task cap | cycles/s |")
        print("|---|---|---|---|---|---|---|")
        for mode in args.modes:
            for cap in args.caps:
                if mode == "batch":
                    rate = run(run_batch(url, prefix, args.executions, args.concurrency, args.prefetch, cap))
                    settings = f"concurrency {args.concurrency}, prefetch {args.prefetch}"
                else:
                    rate = run(run_single(url, prefix, args.executions, args.clients, cap))
                    settings = f"{args.clients} clients"
                row = f"| {sha} | {mode} | {args.role} | {args.executions} | {settings} | {cap or '-'} |"
                print(f"{row} {rate:,.0f} |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        import redis

        r = redis.Redis.from_url(env["CUEFAST_REDIS_URL"])
        batch = list(r.scan_iter(match=prefix + ":*", count=5000))
        for i in range(0, len(batch), 1000):
            r.delete(*batch[i : i + 1000])
