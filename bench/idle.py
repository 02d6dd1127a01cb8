"""Idle CPU of ``cuefast serve``: no cues, no traffic; CPU-seconds per wall second, as a percentage.

``./dev bench idle [--seconds 60] [--warmup 5] [--embedded] [--role serve] [--partitions N ...]
[--compare CHECKOUT ...]``

Starts ``cuefast serve`` (every role) against the local Redis/PostgreSQL under a fresh key
prefix and schema (``--embedded``: the embedded Valkey/PostgreSQL in a temporary directory),
waits for ``/health``, lets it settle ``--warmup`` seconds, then reads utime + stime of the
server process from ``/proc/<pid>/stat`` before and after ``--seconds`` seconds. With
``--embedded`` the child processes (Valkey, PostgreSQL) are reported on a second line.
``--compare`` measures other checkouts (each with its own ``.venv``, or this one's) right
after, in the same run; ``--partitions 16 256`` measures each partition count (a new install
with ``CUEFAST_PARTITIONS=N``) in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import ROOT, _cleanup, _free_port, _git_sha, _server_env, _wait_healthy
from bench.cpu import process_seconds


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, …)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            kids = []
        found += kids
        todo += kids
    return found


def _tree_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += process_seconds(pid)
        except OSError:
            pass
    return total


def measure(
    checkout: Path,
    seconds: float,
    warmup: float,
    embedded: bool,
    role: str = "serve",
    partitions: int | None = None,
) -> tuple[float, float]:
    """(server %, children %) of one core while ``cuefast <role>`` from ``checkout`` idles."""
    python = checkout / ".venv" / "bin" / "python"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    prefix = f"benchidle{os.getpid()}{port}"
    env = _server_env(prefix)
    env["CUEFAST_DATABASE_SCHEMA"] = "cuefast_bench_idle"
    if partitions is not None:
        env["CUEFAST_PARTITIONS"] = str(partitions)
    with tempfile.TemporaryDirectory() as tmp:
        if embedded:
            env.pop("CUEFAST_REDIS_URL")
            env.pop("CUEFAST_DATABASE_URL")
            env["CUEFAST_DATA_DIR"] = tmp
        exe = str(python if python.exists() else sys.executable)
        server = subprocess.Popen(
            [exe, "-m", "cuefast", role, *(["--port", str(port)] if role in ("serve", "api") else [])],
            env=env,
            cwd=checkout,
        )
        try:
            if role in ("serve", "api"):
                _wait_healthy(url, timeout=120)
            time.sleep(warmup)
            kids = descendants(server.pid)
            own0, kids0, t0 = process_seconds(server.pid), _tree_seconds(kids), time.monotonic()
            time.sleep(seconds)
            own1, kids1, t1 = process_seconds(server.pid), _tree_seconds(kids), time.monotonic()
        finally:
            server.terminate()
            server.wait(timeout=30)
            if not embedded:
                _cleanup(env["CUEFAST_REDIS_URL"], prefix)
    wall = t1 - t0
    return 100 * (own1 - own0) / wall, 100 * (kids1 - kids0) / wall


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench idle")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--embedded", action="store_true", help="embedded Valkey/PostgreSQL")
    parser.add_argument("--compare", nargs="*", default=[], metavar="CHECKOUT")
    parser.add_argument(
        "--role", default="serve", choices=["serve", "api", "scheduler", "dispatcher", "snapshotter"]
    )
    parser.add_argument("--partitions", nargs="*", type=int, default=[], metavar="N")
    args = parser.parse_args(argv)
    print(f"idle `cuefast {args.role}`, {args.seconds:g} s after {args.warmup:g} s, % of one core")
    for checkout in [ROOT, *(Path(p).resolve() for p in args.compare)]:
        sha = _git_sha() if checkout == ROOT else _sha(checkout)
        for parts in args.partitions or [None]:
            own, kids = measure(checkout, args.seconds, args.warmup, args.embedded, args.role, parts)
            what = "" if parts is None else f" (CUEFAST_PARTITIONS={parts})"
            print(f"{sha}: cuefast {args.role}{what} {own:.2f} %", flush=True)
            if args.embedded:
                print(f"{sha}: embedded Valkey + PostgreSQL {kids:.2f} %", flush=True)


def _sha(checkout: Path) -> str:
    return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, text=True).strip()


if __name__ == "__main__":
    main(sys.argv[1:])
