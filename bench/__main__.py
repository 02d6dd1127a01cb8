"""Benchmark runner: ``./dev bench api [--seconds N] [--users U]`` (also ``engine``, ``worker``).

Starts ``cuefast serve`` (one process; the local Redis/PostgreSQL when they answer, else
embedded ones), then runs locust headless from bench/locustfile.py against it, once for
creates and once for gets, and prints one markdown row per run with the git SHA.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as res:
                if res.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not become healthy")


def _git_sha() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _run_locust(url: str, mode: str, users: int, seconds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "stats")
        cmd = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds}s",
            "--host",
            url,
            "--csv",
            prefix,
            "--only-summary",
        ]
        subprocess.run(cmd, env={**os.environ, "BENCH_MODE": mode}, check=True, capture_output=True)
        with open(prefix + "_stats.csv") as fh:
            rows = list(csv.DictReader(fh))
    name = "POST /v1/cues" if mode == "create" else "GET /v1/cues/{id}"
    row = next(r for r in rows if r["Name"] == name)
    return {
        "rps": float(row["Requests/s"]),
        "p50": float(row["50%"]),
        "p99": float(row["99%"]),
        "failures": float(row["Failure Count"]),
        "requests": float(row["Request Count"]),
    }


def bench_api(args: argparse.Namespace) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")},
        "CUEFAST_ALLOW_PRIVATE_CALLBACKS": "true",
        "CUEFAST_KEY_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
        "CUEFAST_LOG_LEVEL": "WARNING",
        "CUEFAST_IP_RATE_LIMIT": "1000000",  # every locust user registers from 127.0.0.1
    }
    env["CUEFAST_REDIS_URL"] = os.environ.get("CUEFAST_REDIS_URL", "redis://127.0.0.1:6379/0")
    env["CUEFAST_DATABASE_URL"] = os.environ.get(
        "CUEFAST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    env["CUEFAST_DATABASE_SCHEMA"] = "cuefast_bench"
    server = subprocess.Popen(
        [sys.executable, "-m", "cuefast", args.role, "--port", str(port)], env=env, cwd=ROOT
    )
    try:
        _wait_healthy(url)
        sha = _git_sha()
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
        print("| git | mode | users | seconds | requests/s | p50 ms | p99 ms | failures |")
        print("|---|---|---|---|---|---|---|---|")
        for mode in args.modes:
            r = _run_locust(url, mode, args.users, args.seconds)
            print(
                f"| {sha} | {mode} | {args.users} | {args.seconds} | {r['rps']:.0f} | {r['p50']:.0f} | "
                f"{r['p99']:.0f} | {r['failures']:.0f}/{r['requests']:.0f} |",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        import redis

        r = redis.Redis.from_url(env["CUEFAST_REDIS_URL"])
        batch = list(r.scan_iter(match=env["CUEFAST_KEY_PREFIX"] + ":*", count=5000))
        for i in range(0, len(batch), 1000):
            r.delete(*batch[i : i + 1000])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "engine":
        from bench.engine import main as engine_main

        engine_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        from bench.worker import main as worker_main

        worker_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "snapshots":
        from bench.snapshots import main as snapshots_main

        snapshots_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="./dev bench")
    sub = parser.add_subparsers(dest="bench", required=True)
    api = sub.add_parser("api", help="HTTP API: POST /v1/cues and GET /v1/cues/{id} with locust")
    api.add_argument("--users", type=int, default=50)
    api.add_argument("--seconds", type=int, default=30)
    api.add_argument("--modes", nargs="+", default=["create", "get"], choices=["create", "get"])
    api.add_argument(
        "--role",
        default="serve",
        choices=["serve", "api"],
        help="serve: every role in the process; api: API only",
    )
    args = parser.parse_args()
    if args.bench == "api":
        bench_api(args)


if __name__ == "__main__":
    main()
