"""``./dev bench cluster`` (issue 15): materialisation, delivery, the API; 1 Redis vs a 3-primary cluster."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import redis as sync_redis

from bench import cluster_api, engine
from bench.cluster_api import cpu_us, primaries
from tests.cluster import local_cluster

SINGLE_PORT = int(os.environ.get("BENCH_SINGLE_PORT", "7130"))
CLUSTER_PORT = int(os.environ.get("BENCH_CLUSTER_PORT", "7131"))
"""the first of the cluster's six nodes (7131–7136 by default)"""


@contextlib.contextmanager
def single_redis(port: int) -> Iterator[str]:
    """A private ``redis-server`` (no persistence), shut down afterwards."""
    subprocess.run(
        [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--maxmemory-policy", "noeviction", "--hash-max-listpack-value", "1024", "--daemonize", "yes",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    r = sync_redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            r.ping()
            break
        except sync_redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(sync_redis.RedisError):
            r.shutdown(nosave=True)
        r.close()


def _engine_args(args: argparse.Namespace, what: str, **over: object) -> argparse.Namespace:
    """The arguments of ``./dev bench engine what``: engine's own defaults, this bench's values for
    the options both have, then ``over`` (an option engine gains needs nothing here)."""
    base = vars(engine.arguments().parse_args([what]))
    return argparse.Namespace(**{**base, **{k: v for k, v in vars(args).items() if k in base}, **over})


def _run(what: str, args: argparse.Namespace, url: str, cluster: bool) -> tuple[str, list[float]]:
    """One engine bench against ``url``; its printed line and the Redis CPU µs each primary spent."""
    os.environ["CUEFAST_REDIS_URL"] = url
    os.environ["CUEFAST_REDIS_CLUSTER"] = "true" if cluster else "false"
    nodes = primaries(url, cluster)
    before = cpu_us(nodes)
    out = io.StringIO()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    runner = engine.bench_materialize if what == "materialize" else engine.bench_deliver
    with contextlib.redirect_stdout(out):
        import uvloop

        uvloop.run(runner(_engine_args(args, what), prefix))
    spent = [b - a for a, b in zip(before, cpu_us(nodes), strict=True)]
    for n in nodes:
        n.close()
    return out.getvalue().strip(), spent


CAP_RUNS: tuple[tuple[str, dict[str, object]], ...] = (
    ("caps", {"kind": "host", "cap": 1000}),
    ("caps", {"kind": "rate", "cap": 1_000_000}),
    ("bound", {"kind": "cue", "caps": "4", "executions": 1000}),
    ("bound", {"kind": "host", "caps": "4", "executions": 1000}),
    ("bound", {"kind": "rate", "caps": "50", "executions": 500}),
)
"""``--what caps``: the delivery caps' cost when they do not bind (``deliver-caps``: a host cap of
1,000 and a rate of 1,000,000/s on every cue, ``--rounds`` alternated with no cap) and their rate
when they bind (``deliver-bound``: one cue, a receiver answering in 20 ms)."""


def _run_caps(args: argparse.Namespace, url: str, cluster: bool) -> None:
    """The ``CAP_RUNS`` against ``url``: each one's printed lines and the Redis CPU per primary."""
    os.environ["CUEFAST_REDIS_URL"] = url
    os.environ["CUEFAST_REDIS_CLUSTER"] = "true" if cluster else "false"
    for kind, over in CAP_RUNS:
        run = _engine_args(args, "deliver-caps" if kind == "caps" else "deliver-bound", delay_ms=20.0, **over)
        nodes = primaries(url, cluster)
        before = cpu_us(nodes)
        out = io.StringIO()
        runner = engine.bench_deliver_caps if kind == "caps" else engine.bench_deliver_bound
        with contextlib.redirect_stdout(out):
            import uvloop

            uvloop.run(runner(run, f"bench{uuid.uuid4().hex[:8]}"))
        spent = [b - a for a, b in zip(before, cpu_us(nodes), strict=True)]
        for n in nodes:
            n.close()
        lines = [x for x in out.getvalue().splitlines() if x.startswith(("deliver-caps", "deliver-bound"))]
        print("\n".join(f"{'cluster' if cluster else '1 Redis':>8}: {x}" for x in lines))
        print(f"{'':>8}  Redis CPU s per primary: [{', '.join(f'{us / 1e6:.2f}' for us in spent)}]")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench cluster")
    parser.add_argument("--cues", type=int, default=50_000, help="due cues materialised in one tick")
    parser.add_argument("--executions", type=int, default=10_000, help="webhooks delivered")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--per-host", type=int, default=None)
    modes = cluster_api.API_MODES
    parser.add_argument(
        "--what",
        nargs="+",
        default=["engine", "api"],
        choices=["engine", "api", "caps"],
        help="engine: materialisation and delivery; api: the HTTP scenarios of ./dev bench api (shared key); "
        "caps: the delivery caps (CAP_RUNS)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="caps: rounds of each deliver-caps variant")
    parser.add_argument("--modes", nargs="+", default=list(modes), choices=modes)
    parser.add_argument("--users", type=int, default=50, help="api: locust users")
    parser.add_argument("--seconds", type=int, default=20, help="api: seconds per run")
    parser.add_argument("--pool", type=float, default=0.8, help="api outcome: as ./dev bench api --pool")
    args = parser.parse_args(argv)
    counts = {"materialize": args.cues, "deliver": args.executions}
    with single_redis(SINGLE_PORT) as single, local_cluster(CLUSTER_PORT) as cluster:
        if "engine" in args.what:
            for what, n in counts.items():
                for name, url, is_cluster in (
                    ("1 Redis", single, False),
                    ("3-primary cluster", cluster, True),
                ):
                    line, spent = _run(what, args, url, is_cluster)
                    per = ", ".join(f"{us / n:.1f}" for us in spent)
                    print(f"{name:>18}: {line}")
                    total = sum(spent) / n
                    print(f"{'':>18}  Redis CPU µs per execution, per primary: [{per}] (sum {total:.1f})")
        if "api" in args.what:
            cluster_api.run(args, single, cluster)
        if "caps" in args.what:
            for url, is_cluster in ((single, False), (cluster, True)):
                _run_caps(args, url, is_cluster)
    asyncio.get_event_loop_policy()  # (uvloop.run leaves no loop behind)
