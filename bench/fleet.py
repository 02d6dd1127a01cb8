"""Mixed agent-fleet load and soak (issue 14 items 4 and 5): ``./dev bench fleet`` / ``soak``.

One ``cuefast serve`` (API, scheduler, dispatcher, snapshotter in one process) on a private
``redis-server`` (so its memory is ours alone) and the local PostgreSQL (a fresh schema,
dropped afterwards), a local webhook receiver (bench/fleet_receiver.py), N accounts each with
webhook and worker cues on per-minute and per-second crons, and locust (bench/fleet_locust.py)
playing agents, workers and dashboards. Every 10 s a sampler records the server's RSS, Redis
``used_memory`` and the number of retained executions. bench/fleet_report.py turns it all into
the printed report and the checks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.__main__ import ROOT, _free_port, _git_sha, _post, _wait_healthy

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
FAR = "2199-01-01T00:00:00Z"
IDLE_SECONDS = 10.0


def _get(url: str, key: str) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as res:
        answer: dict[str, Any] = json.loads(res.read())
        return answer


@contextlib.contextmanager
def _process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_port(port: int, what: str) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start on port {port}")


def _cues(receiver: str) -> dict[str, dict[str, Any]]:
    """An account's cues: webhook and worker, per-minute and per-second crons, and two
    cues only fired by agents. Worker cues verify outcomes by ``external_id``."""
    hook = {"url": f"{receiver}/hook/cron", "headers": {"X-Team": "fleet"}}
    work = {"transport": "worker", "verification": {"mode": "require_external_id"}}
    every = {"type": "recurring", "timezone": "Europe/Paris"}
    return {
        "minute_hook": {
            "schedule": {**every, "cron": "* * * * *"},
            "callback": hook,
            "payload": {"job": "digest"},
        },
        "second_hook": {
            "schedule": {**every, "cron": "* * * * * *"},
            "callback": hook,
            "payload": {"job": "tick"},
        },
        "fire_hook": {
            "schedule": {"type": "once", "at": FAR},
            "callback": {"url": f"{receiver}/hook/fire"},
            "payload": {"job": "agent-call"},
        },
        "minute_work": {**work, "schedule": {**every, "cron": "* * * * *"}, "payload": {"task": "fleet"}},
        "second_work": {**work, "schedule": {**every, "cron": "* * * * * *"}, "payload": {"task": "fleet"}},
        "agent_work": {**work, "schedule": {"type": "once", "at": FAR}, "payload": {"task": "fleet"}},
    }


def _setup(url: str, receiver: str, n: int) -> list[dict[str, str]]:
    accounts = []
    for i in range(n):
        key = str(
            _post(url + "/v1/auth/register", {"email": f"fleet-{i}-{uuid.uuid4().hex[:8]}@example.com"})[
                "api_key"
            ]
        )
        account = {"key": key}
        for name, body in _cues(receiver).items():
            account[name] = str(_post(url + "/v1/cues", {"name": name, **body}, key)["id"])
        accounts.append(account)
    return accounts


def _usage(pid: int) -> tuple[int, float]:
    """Resident set (KiB) and CPU seconds (user + system) of ``pid`` and its descendants."""
    rss, cpu, todo = 0, 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(stat[11]) + int(stat[12])) / tick
            for task_dir in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task_dir / "children").read_text().split()]
    return rss, cpu


class Sampler(threading.Thread):
    """Every ``interval`` s: server RSS, Redis ``used_memory``, retained executions (sum of
    the unfiltered listing totals of every account)."""

    def __init__(
        self, pid: int, redis_url: str, url: str, accounts: list[dict[str, str]], interval: float = 10.0
    ):
        super().__init__(daemon=True)
        import redis

        self.pid, self.url, self.accounts, self.interval = pid, url, accounts, interval
        self.redis = redis.Redis.from_url(redis_url)
        self.samples: list[dict[str, float]] = []
        self.stopped = threading.Event()

    def sample(self) -> None:
        executions = sum(_get(self.url + "/v1/executions?limit=1", a["key"])["total"] for a in self.accounts)
        t = time.time()  # after the listings, which take seconds on a loaded machine
        memory = self.redis.info("memory")
        rss, cpu = _usage(self.pid)
        self.samples.append(
            {
                "t": t,
                "rss_kb": rss,
                "cpu_s": cpu,
                "used_memory": float(memory["used_memory"]),
                "executions": float(executions),
            }
        )

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sample()


def _locust(url: str, seconds: int, tmp: Path, accounts_file: Path, args: argparse.Namespace) -> Path:
    out = tmp / "latencies.json"
    users = args.agents + args.workers + args.dashboards
    env = {
        **os.environ,
        "FLEET_ACCOUNTS": str(accounts_file),
        "FLEET_OUT": str(out),
        "FLEET_PACE": str(args.pace),
        "FLEET_AGENTS": str(args.agents),
        "FLEET_WORKERS": str(args.workers),
        "FLEET_DASHBOARDS": str(args.dashboards),
    }
    cmd = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "fleet_locust.py"), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", url,
        "--csv", str(tmp / "locust"), "--only-summary", "--stop-timeout", "10",
    ]  # fmt: skip
    with open(tmp / "locust.log", "wb") as log:
        subprocess.run(cmd, env=env, check=False, stdout=log, stderr=subprocess.STDOUT)
    if not out.exists():
        raise SystemExit(f"locust wrote no latencies; see {tmp / 'locust.log'}")
    return out


def _execution_states(url: str, accounts: list[dict[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in ("failed", "missed", "retrying", "outcome_timeout", "pending", "delivering"):
        counts[status] = sum(
            _get(f"{url}/v1/executions?status={status}&limit=1", a["key"])["total"] for a in accounts
        )
    return counts


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(os.environ.get("CUEFAST_DATABASE_URL", PG_URL))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def run(args: argparse.Namespace, seconds: int) -> dict[str, Any]:
    """One fleet run of ``seconds``; returns the raw material of the report."""
    tmp = Path(tempfile.mkdtemp(prefix="cuefast-fleet-"))
    schema = f"fleet_{uuid.uuid4().hex[:8]}"
    redis_port, receiver_port, api_port = _free_port(), _free_port(), _free_port()
    redis_url = args.redis_url or f"redis://127.0.0.1:{redis_port}/0"
    prefix = f"fleet{uuid.uuid4().hex[:6]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")},
        "CUEFAST_REDIS_URL": redis_url,
        "CUEFAST_DATABASE_URL": os.environ.get("CUEFAST_DATABASE_URL", PG_URL),
        "CUEFAST_DATABASE_SCHEMA": schema,
        "CUEFAST_KEY_PREFIX": prefix,
        "CUEFAST_ALLOW_PRIVATE_CALLBACKS": "true",
        "CUEFAST_LOG_LEVEL": "WARNING",
        "CUEFAST_IP_RATE_LIMIT": "1000000",
    }
    url = f"http://127.0.0.1:{api_port}"
    receiver = f"http://127.0.0.1:{receiver_port}"
    with contextlib.ExitStack() as stack:
        if not args.redis_url:
            server = shutil.which("redis-server") or "redis-server"
            cmd = [
                server,
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--hash-max-listpack-value",  # as README "Redis settings" recommends
                "1024",
            ]
            stack.enter_context(_process([*cmd, "--dir", str(tmp)], tmp / "redis.log"))
            _wait_port(redis_port, "redis-server")
        log = tmp / "receiver.log"
        stack.enter_context(
            _process(
                [sys.executable, "-m", "bench.fleet_receiver", str(receiver_port), str(log)], tmp / "recv.out"
            )
        )
        _wait_port(receiver_port, "receiver")
        api = stack.enter_context(
            _process(
                [sys.executable, "-m", "cuefast", "serve", "--port", str(api_port)], tmp / "server.log", env
            )
        )
        try:
            _wait_healthy(url)
            accounts = _setup(url, receiver, args.accounts)
            accounts_file = tmp / "accounts.json"
            accounts_file.write_text(json.dumps(accounts))
            sampler = Sampler(api.pid, redis_url, url, accounts)
            sampler.sample()
            time.sleep(IDLE_SECONDS)  # a measuring window: the crons and deliveries without API load
            sampler.sample()
            idle = sampler.samples[:2]
            sampler.start()
            latencies = _locust(url, seconds, tmp, accounts_file, args)
            sampler.stopped.set()
            sampler.join()
            sampler.sample()
            states = _execution_states(url, accounts)
        finally:
            if args.redis_url:
                from bench.__main__ import _cleanup

                _cleanup(redis_url, prefix)
    with contextlib.suppress(Exception):
        asyncio.run(_drop_schema(schema))
    server_log = (tmp / "server.log").read_text(errors="replace")
    result = {
        "sha": _git_sha(),
        "scratch": str(tmp),
        "latencies": json.loads(latencies.read_text()),
        "deliveries": (tmp / "receiver.log").read_text().splitlines(),
        "samples": sampler.samples,
        "idle": idle,
        "failed_executions": {k: v for k, v in states.items() if k not in ("pending", "delivering")},
        "in_flight_at_end": {k: v for k, v in states.items() if k in ("pending", "delivering")},
        "server_errors": [line for line in server_log.splitlines() if "ERROR" in line or "Traceback" in line],
        "accounts": args.accounts,
        "users": {"agents": args.agents, "workers": args.workers, "dashboards": args.dashboards},
        "pace": args.pace,
    }
    return result


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--agents", type=int, default=12, help="locust users firing with payload overrides")
    p.add_argument("--workers", type=int, default=8, help="locust users batch-claiming and reporting")
    p.add_argument("--dashboards", type=int, default=10, help="locust users listing executions and cues")
    p.add_argument("--pace", type=float, default=0.5, help="seconds per loop of each user")
    p.add_argument("--redis-url", default="", help="use this Redis instead of a private redis-server")
    p.add_argument("--json", default="", help="write the result here")
