"""``./dev bench cluster --what api``: ``./dev bench api``'s scenarios, 1 Redis vs a 3-primary cluster."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid

import redis as sync_redis

from bench.__main__ import (
    ROOT,
    _ceiling,
    _cleanup,
    _cpu_us_per_request,
    _free_port,
    _git_sha,
    _outcome_pool,
    _run_locust,
    _server_env,
    _settle,
    _shared_account,
    _wait_healthy,
)
from bench.cpu import info_seconds, process_seconds

API_MODES = ("get", "create", "list", "fire", "outcome")
"""GET cue, create, list, fire, outcome: the shared-key scenarios compared"""


def primaries(url: str, cluster: bool) -> list[sync_redis.Redis]:
    """A client per primary serving ``url`` (the one Redis, or every primary of the cluster)."""
    if not cluster:
        return [sync_redis.Redis.from_url(url)]
    c = sync_redis.RedisCluster.from_url(url)
    try:
        nodes = c.get_primaries()  # type: ignore[no-untyped-call]  # redis-py: the sync one is unannotated
        return [sync_redis.Redis(host=n.host, port=int(n.port)) for n in nodes]
    finally:
        c.close()


def cpu_us(nodes: list[sync_redis.Redis]) -> list[float]:
    """Each node's CPU so far (:func:`bench.cpu.info_seconds`), µs."""
    return [info_seconds(n.info("cpu")) * 1e6 for n in nodes]


def _cleanup_cluster(url: str, prefix: str) -> None:
    for node in primaries(url, True):
        keys = list(node.scan_iter(match=prefix + ":*", count=5000))
        for key in keys:  # one key a call: a cluster node refuses a DEL across slots
            node.delete(key)
        node.close()


def _one(args: argparse.Namespace, mode: str, name: str, url: str, cluster: bool, ceiling: float) -> None:
    """One scenario against ``cuefast serve`` on ``url``: a row per request, with the Redis CPU
    µs per request each primary spent."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = _server_env(f"bench{uuid.uuid4().hex[:8]}")
    env["CUEFAST_REDIS_URL"] = url
    env["CUEFAST_REDIS_CLUSTER"] = "true" if cluster else "false"
    server = subprocess.Popen(
        [sys.executable, "-m", "cuefast", "serve", "--port", str(port)], env=env, cwd=ROOT
    )
    nodes = primaries(url, cluster)
    pool_path = ""
    try:
        _wait_healthy(base)
        if mode == "outcome":  # outcomes are write-once: executions fired before the run
            pool_path = os.path.join(tempfile.gettempdir(), f"cuefast-pool-{uuid.uuid4().hex}.json")
            _outcome_pool(base, "shared", args.users, int(ceiling * args.seconds * args.pool), pool_path)
            shared = {"BENCH_POOL": pool_path}
            _settle(server.pid)
        else:
            shared = _shared_account(base, mode)
        cpu0, redis0 = process_seconds(server.pid), cpu_us(nodes)
        rows = _run_locust(base, mode, args.users, args.seconds, shared)
        server_us = _cpu_us_per_request(process_seconds(server.pid) - cpu0, rows)
        served = sum(r["requests"] for r in rows.values()) or 1.0
        spent = [(b - a) / served for a, b in zip(redis0, cpu_us(nodes), strict=True)]
        per = ", ".join(f"{us:.0f}" for us in spent)
        for request, r in rows.items():
            print(
                f"| {name} | {mode}: {request} | {r['rps']:.0f} | {r['p50']:.0f} | {r['p99']:.0f} | "
                f"{r['failures']:.0f}/{r['requests']:.0f} | {r['rps'] / ceiling:.2f} | {server_us:.0f} | "
                f"{sum(spent):.0f} [{per}] |",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        for n in nodes:
            n.close()
        if pool_path and os.path.exists(pool_path):
            os.unlink(pool_path)
        if cluster:
            _cleanup_cluster(url, env["CUEFAST_KEY_PREFIX"])
        else:
            _cleanup(url, env["CUEFAST_KEY_PREFIX"])


def run(args: argparse.Namespace, single: str, cluster: str) -> None:
    """The ceiling (against the single Redis), then each mode on 1 Redis and on the cluster,
    one after the other so the two rows of a request are measured minutes apart at most."""
    os.environ["CUEFAST_REDIS_URL"] = single  # the ceiling's one HGETALL goes to the private Redis
    print(
        f"git {_git_sha()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores; "
        f"{args.users} users, {args.seconds} s per run, shared key, role serve"
    )
    print(
        "| Redis | scenario: request | requests/s | p50 ms | p99 ms | failures | ÷ ceiling "
        "| server CPU µs/request | Redis CPU µs/request: sum [per primary] |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ceiling = _ceiling(args)
    for mode in args.modes:
        for name, url, is_cluster in (("1 Redis", single, False), ("3-primary cluster", cluster, True)):
            _one(args, mode, name, url, is_cluster, ceiling)
