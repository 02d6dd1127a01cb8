"""``cuefast health --role R``: a container probe (exit 0 healthy, 1 not) from what the install records.

* ``api`` — ``GET <url>/status`` answers 200 (readiness: Redis reachable; a PostgreSQL outage or
  a stale scheduler is "degraded", still 200 — the API serves from Redis);
* ``scheduler`` / ``dispatcher`` / ``snapshotter`` — a process **on this host** running that role
  flushed its heartbeat (the metrics flush, every 2 s: ``<roles>|<host>-<pid>`` in the install's
  process set) within ``--max-age`` seconds (30); for ``scheduler`` the install's scheduler pass
  record (the ``/health`` poller) must be that fresh too;
* ``worker`` — the worker registry (``GET /v1/workers`` with ``CUEFAST_API_KEY``) has a worker
  whose id is ``--worker-id`` / ``CUEFAST_WORKER_ID`` (else the default ``<host>-<pid>`` ids of
  this host) that heartbeated within ``--max-age`` seconds (90: three heartbeat intervals).

The server roles' probe reads Redis with the process's own settings (``CUEFAST_REDIS_URL``, TLS);
the api and worker probes need only HTTP. One line says why, on stdout (healthy) or stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import sys
import time
from typing import Any

ROLES = ("api", "scheduler", "dispatcher", "snapshotter", "worker")
DEFAULT_MAX_AGE = {"worker": 90.0}
"""seconds; every other role: ``PROCESS_ALIVE_US`` (30 s)"""


def add_parser(sub: Any) -> None:
    text = "container probe: exit 0 when this host's process of ROLE is healthy, 1 when not"
    p = sub.add_parser("health", help=text, description=text)
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument(
        "--url",
        help="api: the server root to ask /status (default http://127.0.0.1:$CUEFAST_PORT); "
        "worker: the server (default CUEFAST_BASE_URL)",
    )
    p.add_argument("--max-age", type=float, help="seconds a heartbeat may be old (30; worker 90)")
    p.add_argument("--worker-id", help="worker: the id to look for (CUEFAST_WORKER_ID; default this host's)")
    p.add_argument("--any-host", action="store_true", help="count a process of ROLE on any host")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds the check may take (default 5)")


def run(args: argparse.Namespace) -> int:
    """The ``health`` command: 0 healthy, 1 not (2: the settings cannot be read)."""
    from cuefast.errors import ConfigError

    try:
        ok, why = asyncio.run(asyncio.wait_for(_check(args), args.timeout))
    except TimeoutError:
        ok, why = False, f"no answer within {args.timeout:g} s"
    except ConfigError as exc:
        print(f"cuefast health: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a backend that cannot be reached is "not healthy", not a crash
        ok, why = False, f"{type(exc).__name__}: {exc}".splitlines()[0]
    print(f"{args.role}: {'healthy' if ok else 'unhealthy'}: {why}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


async def _check(args: argparse.Namespace) -> tuple[bool, str]:
    if args.role == "api":
        return await _api(args)
    if args.role == "worker":
        return await _worker(args)
    return await _server_role(args)


async def _api(args: argparse.Namespace) -> tuple[bool, str]:
    import httpx

    url = args.url or _local_url()
    async with httpx.AsyncClient(timeout=args.timeout) as client:
        res = await client.get(url.rstrip("/") + "/status")
    status = _json_field(res, "status")
    return res.status_code == 200, f"GET {url}/status answered {res.status_code} ({status})"


def _local_url() -> str:
    """This container's API: CUEFAST_HOST unless it binds every address, CUEFAST_PORT."""
    host = os.environ.get("CUEFAST_HOST", "127.0.0.1")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (an address to connect to, not to bind)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('CUEFAST_PORT', '8000')}"


def _json_field(res: Any, field: str) -> str:
    try:
        return str(res.json().get(field, "?"))
    except ValueError:
        return "not JSON"


async def _worker(args: argparse.Namespace) -> tuple[bool, str]:
    import httpx

    key = os.environ.get("CUEFAST_API_KEY", "")
    if not key:
        return False, "needs CUEFAST_API_KEY (the worker's key) to read the worker registry"
    base = (args.url or os.environ.get("CUEFAST_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
    wanted = args.worker_id or os.environ.get("CUEFAST_WORKER_ID", "")
    prefix = f"{platform.node() or 'cuefast-worker'}-"
    max_age = args.max_age or DEFAULT_MAX_AGE["worker"]
    async with httpx.AsyncClient(timeout=args.timeout) as client:
        res = await client.get(f"{base}/v1/workers", headers={"Authorization": f"Bearer {key}"})
    if res.status_code != 200:
        return False, f"GET {base}/v1/workers answered {res.status_code}"
    ages = {
        str(w["worker_id"]): w.get("seconds_since_heartbeat")
        for w in res.json().get("workers", [])
        if (w["worker_id"] == wanted if wanted else str(w["worker_id"]).startswith(prefix))
    }
    fresh = {w: age for w, age in ages.items() if age is not None and age <= max_age}
    who = repr(wanted) if wanted else f"{prefix}*"
    if fresh:
        worker, age = min(fresh.items(), key=lambda item: item[1])
        return True, f"worker {worker} heartbeated {age} s ago"
    if ages:
        return False, f"worker {who}: last heartbeat over {max_age:g} s ago"
    return False, f"no worker {who} in the registry"


async def _server_role(args: argparse.Namespace) -> tuple[bool, str]:
    from cuefast.config import DEFAULT_PARTITIONS, load_settings
    from cuefast.store.connect import Tls, connect
    from cuefast.store.keys import Keys
    from cuefast.store.system import PROCESS_ALIVE_US

    settings = load_settings()
    if not settings.redis_url:
        return False, "needs CUEFAST_REDIS_URL (a probe cannot read an embedded Redis)"
    tls = Tls(settings.redis_tls_ca, settings.redis_tls_cert, settings.redis_tls_key)
    redis = connect(settings.redis_url, 2, cluster=settings.redis_cluster, tls=tls)
    keys = Keys(settings.key_prefix, settings.partitions or DEFAULT_PARTITIONS)
    max_age = args.max_age or PROCESS_ALIVE_US / 1e6
    try:
        now = time.time()
        members: list[tuple[str, float]] = await redis.zrangebyscore(
            keys.metrics_processes, int((now - max_age) * 1e6), "+inf", withscores=True
        )  # type: ignore[assignment]
        poller = await redis.hget(keys.poller, "last_run") if args.role == "scheduler" else None
    finally:
        await redis.aclose()
    host = socket.gethostname()
    mine = []
    for member, score in members:
        roles, _, where = str(member).partition("|")
        if args.role in roles.split("+") and (args.any_host or where.rpartition("-")[0] == host):
            mine.append((where, now - score / 1e6))
    place = "any host" if args.any_host else f"host {host}"
    if not mine:
        return False, f"no {args.role} process on {place} sent a heartbeat within {max_age:g} s"
    where, age = min(mine, key=lambda m: m[1])
    if args.role == "scheduler":
        if poller is None:
            return False, "no scheduler pass recorded yet"
        pass_age = now - int(poller) / 1e6
        if pass_age > max_age:
            return False, f"process {where} is up but the last scheduler pass was {pass_age:.0f} s ago"
    return True, f"process {where} sent a heartbeat {age:.1f} s ago"
