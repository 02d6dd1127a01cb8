"""Top-of-minute burst: N webhook cues due at one instant, delivered by real processes.

``./dev bench burst [--cues 10000] [--dispatchers 1 2] [--per-host 256] [--receiver raw|aiohttp]
[--jitter-seconds S …]``

For each dispatcher count in ``--dispatchers`` (one run each, same invocation, fresh key
prefix and PostgreSQL schema): a receiver process that logs every request's arrival time and
``X-CueAPI-Scheduled-For``; ``--cues`` webhook cues of one account written straight into
Redis (as a create writes them), all due at the same whole second a few seconds ahead; then
``cuefast serve`` (API, scheduler, dispatcher, snapshotter in one process) plus
``dispatchers - 1`` more ``cuefast dispatcher`` processes. When every webhook has arrived (or
``--timeout`` passed) it prints receipt lateness (arrival − ``scheduled_for``) p50/p90/p99/max
and the curve: the share received by 100 ms … 5 s.

``--jitter-seconds S …`` (one run per value and dispatcher count, e.g. ``0 60``): the cues carry
``schedule.jitter_seconds`` S. Lateness is then measured against each execution's ``fire_at``,
recomputed here from the logged cue id and slot with ``cron.jitter_offset_us`` (independent of
what the engine stored), and the spread is printed: the window from the first to the last
arrival, deliveries per second over it (mean and peak second) and the most in any 100 ms —
beside the most the fire_at times themselves put in any 100 ms (the plan's own spread).
Against the local Redis/PostgreSQL (``CUEFAST_REDIS_URL`` / ``CUEFAST_DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.__main__ import ROOT, _cleanup, _free_port, _git_sha, _server_env, _wait_healthy
from bench.engine import _receiver, new_store, seed_cues
from cuefast.cron import jitter_offset_us
from cuefast.durability.schema import drop_schema
from cuefast.times import parse_datetime

CURVE_MS = (100, 250, 500, 750, 1000, 1500, 2000, 3000, 5000)
"""points of the delivery curve: the share of the burst received by each lateness"""
LEAD_S = 6
"""seconds between the end of seeding and the burst: the processes start and settle in between"""


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) of sorted ``values``, nearest rank."""
    return values[max(0, min(len(values) - 1, int(len(values) * q + 0.5) - 1))]


def read_log(path: str) -> list[float]:
    """Lateness in ms of every logged request (arrival µs − its ``scheduled_for``)."""
    return sorted((got - sf) / 1000 for got, sf, _ in read_arrivals(path))


def read_arrivals(path: str) -> list[tuple[int, int, str]]:
    """(arrival µs, ``scheduled_for`` µs, cue id or "") of every logged request."""
    out = []
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2:
                out.append((int(parts[0]), parse_datetime(parts[1]), parts[2] if len(parts) > 2 else ""))
    return out


def spread(arrivals: list[int]) -> dict[str, float]:
    """How a burst's arrivals (µs) spread: window (s, first to last), mean and peak deliveries
    per second (whole seconds from the first arrival), the most in any 100 ms bucket."""
    first = min(arrivals)
    window = (max(arrivals) - first) / 1e6
    per_s: dict[int, int] = {}
    per_100ms: dict[int, int] = {}
    for t in arrivals:
        per_s[(t - first) // 1_000_000] = per_s.get((t - first) // 1_000_000, 0) + 1
        per_100ms[(t - first) // 100_000] = per_100ms.get((t - first) // 100_000, 0) + 1
    return {
        "window_s": window,
        "mean_per_s": len(arrivals) / max(window, 1.0),
        "peak_per_s": max(per_s.values()),
        "max_per_100ms": max(per_100ms.values()),
    }


def _count(path: str) -> int:
    with open(path, "rb") as fh:
        return fh.read().count(b"\n")


async def one_burst(args: argparse.Namespace, dispatchers: int, jitter_s: int = 0) -> dict[str, Any]:
    """Seed, start the processes, wait for every webhook; the run's figures."""
    prefix = f"burst{uuid.uuid4().hex[:8]}"
    schema = f"cuefast_burst_{uuid.uuid4().hex[:8]}"
    port = _free_port()
    log_path = f"/tmp/cuefast-burst-{uuid.uuid4().hex[:6]}.log"
    receiver = await _receiver(port, log_path, args.receiver)
    env = {
        **_server_env(prefix),
        "CUEFAST_DATABASE_SCHEMA": schema,
        "CUEFAST_DELIVERY_PER_HOST": str(args.per_host),
        "CUEFAST_PARTITIONS": str(args.partitions),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        store = new_store(prefix, args.partitions)
        await store.preload()
        t0 = time.time()
        # the due second lies after seeding (~1 s per 5,000 cues here) and the processes' start
        due = (int(t0) + LEAD_S + args.cues // 5000) * 1_000_000
        url = f"http://127.0.0.1:{port}/hook"
        await seed_cues(
            store, args.cues, cron="0 0 1 1 *", transport="webhook", url=url, due=due, jitter_s=jitter_s
        )
        await store.close()
        api_port = _free_port()
        serve = [sys.executable, "-m", "cuefast", "serve", "--host", "127.0.0.1", "--port", str(api_port)]
        procs.append(subprocess.Popen(serve, cwd=ROOT, env=env))
        for _ in range(dispatchers - 1):
            procs.append(subprocess.Popen([sys.executable, "-m", "cuefast", "dispatcher"], cwd=ROOT, env=env))
        _wait_healthy(f"http://127.0.0.1:{api_port}")
        ready_s = due / 1e6 - time.time()
        deadline = due / 1e6 + args.timeout
        while _count(log_path) < args.cues and time.time() < deadline + jitter_s:
            await asyncio.sleep(0.1)
        arrivals = read_arrivals(log_path)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        receiver.terminate()
        receiver.wait()
        _cleanup(env["CUEFAST_REDIS_URL"], prefix)
        await drop_schema(env["CUEFAST_DATABASE_URL"], schema)
        if os.path.exists(log_path):
            os.unlink(log_path)
    if not arrivals:
        raise SystemExit(f"burst with {dispatchers} dispatcher(s): no webhook arrived")
    if jitter_s and not all(cue for _, _, cue in arrivals):
        raise SystemExit("--jitter-seconds needs the cue id in the receiver's log: use --receiver raw")
    # lateness against fire_at (= scheduled_for without jitter), from the pure offset function
    fires = [sf + jitter_offset_us(cue, sf, jitter_s) for _, sf, cue in arrivals]
    late = sorted((got - fire) / 1000 for (got, _, _), fire in zip(arrivals, fires, strict=True))
    return {
        "dispatchers": dispatchers,
        "jitter": jitter_s,
        **spread([got for got, _, _ in arrivals]),
        "planned_max_per_100ms": spread(fires)["max_per_100ms"],
        "received": len(late),
        "ready_s": ready_s,
        "p50": percentile(late, 0.50),
        "p90": percentile(late, 0.90),
        "p99": percentile(late, 0.99),
        "max": late[-1],
        "curve": [sum(v <= ms for v in late) / args.cues for ms in CURVE_MS],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench burst")
    parser.add_argument("--cues", type=int, default=10_000)
    parser.add_argument("--dispatchers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--per-host", type=int, default=256, help="CUEFAST_DELIVERY_PER_HOST (one receiver)")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument(
        "--receiver",
        choices=("raw", "aiohttp"),
        default="raw",
        help="raw: an asyncio protocol + httptools (light, stands in for other machines); aiohttp: a web app",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds after the due time (plus the jitter span)"
    )
    parser.add_argument(
        "--jitter-seconds",
        type=int,
        nargs="+",
        default=[0],
        help="schedule.jitter_seconds of the cues; one run per value (e.g. 0 60)",
    )
    args = parser.parse_args(argv)
    import uvloop

    rows = [uvloop.run(one_burst(args, n, j)) for j in args.jitter_seconds for n in args.dispatchers]
    print(
        f"\nburst of {args.cues:,} webhook cues due at one instant, `cuefast serve` + n-1 "
        f"`cuefast dispatcher`, one {args.receiver} receiver, per host {args.per_host}; git {_git_sha()}"
    )
    print("lateness = arrival − fire_at (fire_at = scheduled_for without jitter); spread over the arrivals")
    curve_heads = " | ".join(f"≤{ms} ms" for ms in CURVE_MS)
    print(
        f"| dispatchers | received | p50 | p90 | p99 | max | jitter | window | mean /s | peak /s | "
        f"max /100 ms | fire_at max /100 ms | {curve_heads} |"
    )
    print("|---" * (12 + len(CURVE_MS)) + "|")
    for r in rows:
        curve = " | ".join(f"{share:.0%}" for share in r["curve"])
        print(
            f"| {r['dispatchers']} | {r['received']:,} | {r['p50']:,.0f} ms | "
            f"{r['p90']:,.0f} ms | {r['p99']:,.0f} ms | {r['max']:,.0f} ms | {r['jitter']} s | "
            f"{r['window_s']:.1f} s | {r['mean_per_s']:,.0f} | {r['peak_per_s']:,} | "
            f"{r['max_per_100ms']:,} | {r['planned_max_per_100ms']:,} | {curve} |"
        )
        if r["ready_s"] < 0:
            print(f"  (the processes were healthy {-r['ready_s']:.1f} s after the due time: raise LEAD_S)")
