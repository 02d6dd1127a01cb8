"""Redis work per webhook delivery: ``INFO commandstats`` around the lease and the result scripts.

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.delivery_calls [--cues N]

Seeds ``N`` webhook cues due at one instant (as ``./dev bench engine materialize`` does), has
one scheduler pass materialise them, reads the outbox as a dispatcher does, then leases every
execution for an attempt (``delivery_start.lua``, batches of ``--batch`` per partition, one
pipeline per round as the dispatcher sends them) and records a 200 for each
(``delivery_finish.lua``, the same batches), and prints per delivery for each step: Redis calls
and µs per command (nested script commands included) and ``EVALSHA`` µs. ``--callgrind``: the
Redis runs under callgrind (as for ``bench.engine_calls``), one dump per step. No HTTP: the
scripts' own cost, which is what bounds a burst on one Redis core (bench/README.md "Engine").
Last, what the snapshotter's ``snapshots_take.lua`` then costs for what they made dirty (every
execution and its cue; per delivery too).

Exact only on a Redis nobody else uses (a private ``redis-server``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Sequence

import redis as sync_redis

from bench.engine import _url, cleanup, new_store, seed_cues
from bench.engine_calls import DUE, _callgrind, _stats
from cuefast.clock import FrozenClock
from cuefast.durability.snapshots import BATCH as SNAPSHOT_BATCH
from cuefast.engine.scheduler import Scheduler
from cuefast.store import Status
from cuefast.store.delivery import AttemptResult, Lease, OutboxEntry


def _print(name: str, before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], n: int) -> None:
    rows = []
    for cmd, (calls, usec) in after.items():
        c0, u0 = before.get(cmd, (0, 0))
        if calls - c0 and cmd not in ("info", "xreadgroup"):
            rows.append((cmd, (calls - c0) / n, (usec - u0) / n))
    rows.sort(key=lambda row: -row[2])
    nested = sum(c for cmd, c, _ in rows if cmd not in ("evalsha", "fcall"))
    print(f"{name}: {n} deliveries; per delivery {nested:.2f} nested commands")
    for cmd, per_calls, per_us in rows:
        print(f"  {cmd:<18} {per_calls:7.3f} calls  {per_us:6.2f} µs")


def _batches(entries: Sequence[OutboxEntry], size: int) -> list[dict[int, list[OutboxEntry]]]:
    """The entries in rounds: each round at most ``size`` per partition (a dispatcher's read)."""
    per: dict[int, list[OutboxEntry]] = {}
    for e in entries:
        per.setdefault(e.partition, []).append(e)
    rounds: list[dict[int, list[OutboxEntry]]] = []
    for p, es in per.items():
        for i in range(0, len(es), size):
            j = i // size
            if j == len(rounds):
                rounds.append({})
            rounds[j][p] = es[i : i + size]
    return rounds


async def run(args: argparse.Namespace) -> None:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    r = sync_redis.Redis.from_url(_url())
    pid = int(r.info("server")["process_id"])

    def measure(on: bool) -> None:  # callgrind counts only the step itself, dumped after it
        if args.callgrind:
            _callgrind(pid, "-i on" if on else "-i off")
            if not on:
                _callgrind(pid, "-d")

    store = new_store(prefix, args.partitions)
    await store.preload()
    clock = FrozenClock(DUE + 100_000)
    try:
        await seed_cues(
            store, args.cues, cron="*/5 * * * *", transport="webhook", url="http://127.0.0.1:9/h", due=DUE
        )
        created = await Scheduler(store, clock, batch=500).tick()
        await store.delivery.ensure_groups()
        entries: list[OutboxEntry] = []
        while len(entries) < created:
            got = await store.delivery.read("bench", 1000, 0)
            if not got:
                break
            entries += got
        rounds = _batches(entries, args.batch)
        now = DUE + 200_000
        leased: list[tuple[OutboxEntry, Lease]] = []
        before = _stats(r)
        measure(True)
        t0 = time.perf_counter()
        for rnd in rounds:
            res = await store.delivery.start(
                {p: [e.execution_id for e in es] for p, es in rnd.items()}, now, timeout_s=30, stale_s=60
            )
            for p, es in rnd.items():
                for e, lease in zip(es, res[p], strict=True):
                    if isinstance(lease, Status):
                        raise SystemExit(f"{e.execution_id} not leased: {lease!r}")
                    leased.append((e, lease))
        dt_start = time.perf_counter() - t0
        measure(False)
        _print(f"delivery_start ({dt_start:.3f} s)", before, _stats(r), len(leased))
        results: dict[int, list[AttemptResult]] = {}
        for e, lease in leased:
            results.setdefault(e.partition, []).append(
                AttemptResult(e.execution_id, True, 200, "", None, None, e.entry_id, lease.lease_until, None)
            )
        before = _stats(r)
        measure(True)
        t0 = time.perf_counter()
        done = 0
        while any(results.values()):
            batch = {p: rs[: args.batch] for p, rs in results.items() if rs}
            out = await store.delivery.finish(batch, now + 50_000)
            for p, fin in out.items():
                if isinstance(fin, Exception):
                    raise fin
                if any(f.status is not Status.OK for f in fin):
                    raise SystemExit(f"partition {p}: a result was not recorded: {fin}")
                done += len(fin)
                results[p] = results[p][args.batch :]
        dt_finish = time.perf_counter() - t0
        measure(False)
        _print(f"delivery_finish ({dt_finish:.3f} s)", before, _stats(r), done)
        # what the snapshotter then takes of them: each execution and its cue (snapshots_take.lua)
        before = _stats(r)
        measure(True)
        t0 = time.perf_counter()
        taken = 0
        for p in range(args.partitions):
            slot = store.keys.part(p)
            while objects := await store.snapshots.take(slot, SNAPSHOT_BATCH):
                await store.snapshots.commit(slot, [m for m, _ in objects])
                taken += len(objects)
        dt_take = time.perf_counter() - t0
        measure(False)
        _print(f"snapshots_take ({dt_take:.3f} s, {taken} objects)", before, _stats(r), done)
    finally:
        await store.close()
        cleanup(prefix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cues", type=int, default=10_000)
    ap.add_argument("--partitions", type=int, default=int(os.environ.get("CUEFAST_PARTITIONS", "16")))
    ap.add_argument("--batch", type=int, default=32, help="executions per partition per script call")
    ap.add_argument("--callgrind", action="store_true", help="the Redis runs under callgrind")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
