"""Benchmark runner: ``./dev bench api`` (also ``engine``, ``worker``, ``snapshots``, ``scale``, ``history``,
``fleet``, ``soak``, ``idle``, ``client``, ``burst``).

``api`` first measures the ceiling (bench/ceiling.py: a bare Litestar + msgspec endpoint
doing one Redis call), then starts ``cuefast serve`` once per scenario against the local
Redis/PostgreSQL and runs locust headless (bench/locustfile.py) with a shared API key and
with one account per user; every row is printed with its ratio to the ceiling of the same
round. ``--compare DIR`` runs the same scenarios against another checkout in the same round.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
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

from bench.cpu import process_seconds, redis_url_seconds

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


def _redis_url() -> str:
    """The Redis the benchmarks use: ``CUEFAST_REDIS_URL``, else the local one."""
    return os.environ.get("CUEFAST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _cpu_us_per_request(cpu_s: float, rows: dict[str, dict[str, float]]) -> float:
    """The server's CPU µs per request served in a run (every request row of the scenario)."""
    served = sum(r["requests"] for r in rows.values())
    return cpu_s * 1e6 / served if served else 0.0


def _settle(pid: int, timeout: float = 90.0) -> None:
    """Wait until ``pid`` is idle (under 10 % of a core over half a second): the snapshotter of
    ``serve`` has written what the seeding made dirty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cpu0 = process_seconds(pid)
        time.sleep(0.5)
        if process_seconds(pid) - cpu0 < 0.05:
            return


def _git_sha() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


MODES = ("get", "create", "list", "list_distinct", "fire", "outcome", "fire_outcome", "claim")
WORKER_MODES = ("fire", "outcome", "fire_outcome", "claim")
REQUESTS = {
    "ceiling": ["GET /ceiling/{id}"],
    "get": ["GET /v1/cues/{id}"],
    "create": ["POST /v1/cues"],
    "list": ["GET /v1/executions"],
    "list_distinct": ["GET /v1/executions"],
    "fire": ["POST /v1/cues/{id}/fire"],
    "outcome": ["POST /v1/executions/{id}/outcome", "refill"],
    "fire_outcome": ["POST /v1/cues/{id}/fire", "POST /v1/executions/{id}/outcome"],
    "claim": [
        "POST /v1/cues/{id}/fire",
        "POST /v1/executions/{id}/claim",
        "POST /v1/executions/{id}/outcome",
    ],
}


def _run_locust(
    url: str, mode: str, users: int, seconds: int, env: dict[str, str]
) -> dict[str, dict[str, float]]:
    """One locust run of one scenario; the stats row of each request the scenario makes."""
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
        subprocess.run(cmd, env={**os.environ, **env, "BENCH_MODE": mode}, check=True, capture_output=True)
        with open(prefix + "_stats.csv") as fh:
            rows = {r["Name"]: r for r in csv.DictReader(fh)}
    return {
        name: {
            "rps": float(rows[name]["Requests/s"]),
            "p50": float(rows[name]["50%"]),
            "p99": float(rows[name]["99%"]),
            "failures": float(rows[name]["Failure Count"]),
            "requests": float(rows[name]["Request Count"]),
        }
        for name in REQUESTS[mode]
        if name in rows
    }


def _server_env(prefix: str) -> dict[str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")},
        "CUEFAST_ALLOW_PRIVATE_CALLBACKS": "true",
        "CUEFAST_KEY_PREFIX": prefix,
        "CUEFAST_LOG_LEVEL": "WARNING",
        "CUEFAST_IP_RATE_LIMIT": "1000000",  # every locust user registers from 127.0.0.1
        "CUEFAST_DEFAULT_RATE_LIMIT_PER_MINUTE": "100000000",  # a shared key carries every user
    }
    env["CUEFAST_REDIS_URL"] = _redis_url()
    env["CUEFAST_DATABASE_URL"] = os.environ.get(
        "CUEFAST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    env["CUEFAST_DATABASE_SCHEMA"] = "cuefast_bench"
    return env


def _post(url: str, body: dict[str, object], key: str = "") -> dict[str, object]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        answer: dict[str, object] = json.loads(res.read())
        return answer


def _shared_account(url: str, mode: str) -> dict[str, str]:
    """The locust env of a shared-key run: one account, one cue (fired first for the listings)."""
    from bench.locustfile import LIST_FIRES, webhook_cue, worker_cue

    key = str(_post(url + "/v1/auth/register", {"email": f"bench-{uuid.uuid4().hex}@example.com"})["api_key"])
    body = worker_cue("shared") if mode in WORKER_MODES else webhook_cue("shared")
    cue = str(_post(url + "/v1/cues", body, key)["id"])
    for _ in range(LIST_FIRES.get(mode, 0)):
        _post(url + f"/v1/cues/{cue}/fire", {}, key)
    return {"BENCH_KEY": key, "BENCH_CUE": cue}


def _fire_many(url: str, key: str, cue: str, n: int) -> list[str]:
    """``n`` fires of ``cue`` (8 keep-alive connections in parallel): the execution ids."""
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    host, port = url.removeprefix("http://").split(":")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def fire(count: int) -> list[str]:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        ids = []
        for _ in range(count):
            conn.request("POST", f"/v1/cues/{cue}/fire", body=b"{}", headers=headers)
            res = conn.getresponse()
            body = res.read()
            if res.status != 200:
                raise SystemExit(f"seeding fire answered {res.status}: {body[:200]!r}")
            ids.append(str(json.loads(body)["id"]))
        conn.close()
        return ids

    with ThreadPoolExecutor(8) as pool:
        return [eid for ids in pool.map(fire, [n // 8 + (i < n % 8) for i in range(8)]) for eid in ids]


def _outcome_pool(url: str, keys: str, users: int, count: int, path: str) -> None:
    """Write ``BENCH_POOL`` for the outcome scenario: ``count`` fired executions of one shared
    account, or of one account per user (``count // users`` each)."""
    from bench.locustfile import worker_cue

    pool = []
    for _ in range(1 if keys == "shared" else users):
        email = f"bench-{uuid.uuid4().hex}@example.com"
        key = str(_post(url + "/v1/auth/register", {"email": email})["api_key"])
        cue = str(_post(url + "/v1/cues", worker_cue("pool"), key)["id"])
        n = count if keys == "shared" else -(-count // users)
        pool.append({"key": key, "cue": cue, "ids": _fire_many(url, key, cue, n)})
    with open(path, "w") as fh:
        json.dump(pool, fh)


def _cleanup(redis_url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    batch = list(r.scan_iter(match=prefix + ":*", count=5000))
    for i in range(0, len(batch), 1000):
        r.delete(*batch[i : i + 1000])


def _ceiling(args: argparse.Namespace) -> float:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.ceiling", str(port)], cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/ceiling/x", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the ceiling server did not start") from None
                time.sleep(0.2)
        cpu0, redis0 = process_seconds(server.pid), redis_url_seconds(_redis_url())
        rows = _run_locust(url, "ceiling", args.users, args.seconds, {})
        cpu_us = _cpu_us_per_request(process_seconds(server.pid) - cpu0, rows)
        redis_us = _cpu_us_per_request(redis_url_seconds(_redis_url()) - redis0, rows)
        r = rows["GET /ceiling/{id}"]
        print(
            f"| ceiling | bare Litestar + msgspec, one HGETALL | {r['rps']:.0f} | {r['p50']:.0f} | "
            f"{r['p99']:.0f} | {r['failures']:.0f}/{r['requests']:.0f} | 1.00 | {cpu_us:.0f} | "
            f"{redis_us:.0f} |",
            flush=True,
        )
        return r["rps"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def _variant_env(variant: str) -> dict[str, str]:
    """``"K=V,K2=V2"`` (a ``--variants`` entry) as a dict; ``""`` is the server's defaults."""
    pairs = [item.split("=", 1) for item in variant.split(",") if item]
    if any(len(p) != 2 or not p[0].startswith("CUEFAST_") for p in pairs):
        raise SystemExit(f"--variants: {variant!r} is not CUEFAST_NAME=value[,CUEFAST_NAME=value]")
    return dict((k, v) for k, v in pairs)


def _target(args: argparse.Namespace, checkout: Path, ceiling: float, variant: str = "") -> None:
    """Every scenario against ``cuefast <role>`` run from ``checkout`` (its own .venv), with the
    server settings of ``variant`` on top of the bench's own."""
    python = checkout / ".venv" / "bin" / "python"
    sha = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, text=True).strip()
    if variant:
        sha = f"{sha} {variant}"
    for mode in args.modes:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**_server_env(f"bench{uuid.uuid4().hex[:8]}"), **_variant_env(variant)}
        server = subprocess.Popen(
            [
                str(python if python.exists() else sys.executable),
                "-m",
                "cuefast",
                args.role,
                "--port",
                str(port),
            ],
            env=env,
            cwd=checkout,
        )
        try:
            _wait_healthy(url)
            for keys in args.keys:
                if mode == "outcome":  # outcomes are write-once: executions fired before the run
                    pool_path = os.path.join(tempfile.gettempdir(), f"cuefast-pool-{uuid.uuid4().hex}.json")
                    _outcome_pool(url, keys, args.users, int(ceiling * args.seconds * args.pool), pool_path)
                    shared = {"BENCH_POOL": pool_path}
                    _settle(server.pid)
                else:
                    shared = _shared_account(url, mode) if keys == "shared" else {}
                cpu0, redis0 = process_seconds(server.pid), redis_url_seconds(_redis_url())
                try:
                    rows = _run_locust(url, mode, args.users, args.seconds, shared)
                finally:
                    if mode == "outcome":
                        os.unlink(shared["BENCH_POOL"])
                cpu_us = _cpu_us_per_request(process_seconds(server.pid) - cpu0, rows)
                redis_us = _cpu_us_per_request(redis_url_seconds(_redis_url()) - redis0, rows)
                for name, r in rows.items():
                    ratio = r["rps"] / ceiling
                    print(
                        f"| {sha} | {mode}, {keys} key: {name} | {r['rps']:.0f} | {r['p50']:.0f} | "
                        f"{r['p99']:.0f} | {r['failures']:.0f}/{r['requests']:.0f} | {ratio:.2f} | "
                        f"{cpu_us:.0f} | {redis_us:.0f} |",
                        flush=True,
                    )
        finally:
            server.terminate()
            server.wait(timeout=30)
            _cleanup(env["CUEFAST_REDIS_URL"], env["CUEFAST_KEY_PREFIX"])


def bench_api(args: argparse.Namespace) -> None:
    checkouts = [ROOT, *(Path(p).resolve() for p in args.compare)]
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.users} users, {args.seconds} s per run, role {args.role}"
    )
    print(
        "| git | scenario: request | requests/s | p50 ms | p99 ms | failures | ÷ ceiling "
        "| server CPU µs/request | Redis CPU µs/request |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for _ in range(args.rounds):
        ceiling = _ceiling(args)
        for checkout in checkouts:
            for variant in args.variants:
                _target(args, checkout, ceiling, variant)


# ./dev bench <name> …: the module whose main() takes the rest of the arguments (with the
# name itself for the modules that serve two names)
_MODULES = {
    "engine": ("bench.engine", False),
    "burst": ("bench.burst", False),
    "worker": ("bench.worker", False),
    "scale": ("bench.scale", False),
    "history": ("bench.history", False),
    "fleet": ("bench.fleet_report", True),
    "soak": ("bench.fleet_report", True),
    "snapshots": ("bench.snapshots", False),
    "idle": ("bench.idle", False),
    "client": ("bench.client", False),
    "cluster": ("bench.cluster", False),
}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in _MODULES:
        module, with_name = _MODULES[sys.argv[1]]
        importlib.import_module(module).main(sys.argv[1:] if with_name else sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="./dev bench")
    sub = parser.add_subparsers(dest="bench", required=True)
    api = sub.add_parser("api", help="HTTP API scenarios with locust, as ratios of a bare ceiling")
    api.add_argument("--users", type=int, default=50)
    api.add_argument("--seconds", type=int, default=20)
    api.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    api.add_argument("--keys", nargs="+", default=["shared", "per-user"], choices=["shared", "per-user"])
    api.add_argument("--workers", type=int, default=1, help="cuefast API processes (--workers)")
    api.add_argument("--rounds", type=int, default=1, help="repeat ceiling + every checkout")
    api.add_argument(
        "--pool",
        type=float,
        default=0.8,
        help="outcome: executions fired before each run, × ceiling req/s × seconds (past them: refills)",
    )
    api.add_argument(
        "--compare",
        nargs="*",
        default=[],
        metavar="CHECKOUT",
        help="also run each scenario against these checkouts (each with its own .venv), in the same run",
    )
    api.add_argument(
        "--variants",
        nargs="+",
        default=[""],
        metavar="K=V[,K=V]",
        help="run every checkout once per variant with these server settings "
        "(e.g. CUEFAST_PARTITIONS=16 CUEFAST_PARTITIONS=128; '' = the defaults)",
    )
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
