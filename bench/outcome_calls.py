"""Redis commands of one ``POST /v1/executions/{id}/outcome``: fires ``N`` executions of a worker
cue on a ``cuefast api`` of this checkout, reports their outcomes one after another, and prints
the ``INFO commandstats`` deltas (calls and µs per outcome, nested script commands included).

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.outcome_calls [N]

Exact only on a Redis nobody else uses (a private ``redis-server``): the deltas count every
client's commands. ``MONITOR`` on that Redis while it runs lists each nested command.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple
from urllib.parse import urlsplit

import redis

from bench.__main__ import ROOT, _cleanup, _fire_many, _free_port, _post, _server_env, _wait_healthy


def _stats(r: redis.Redis) -> dict[str, tuple[int, int]]:
    info = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in info.items()}


def _direct(r: redis.Redis, prefix: str, ids: list[str]) -> float:
    """Redis's µs per call of outcomes_record.lua alone (EVALSHA with the arguments the API
    sends, in pipelines of 100: no HTTP, no auth script), over ``ids``."""
    from cuefast.store.scripts import load_lua

    sha = r.script_load(load_lua("outcomes_record"))
    states = ["none", "reported_success", "require_external_id", "verification_failed", "manual", "x"]
    before = _stats(r)
    for i in range(0, len(ids), 100):
        pipe = r.pipeline(transaction=False)
        for eid in ids[i : i + 100]:
            keys = [k.decode() if isinstance(k, bytes) else k for k in r.keys(f"{prefix}:{{p*}}:exec:{eid}")]
            part = keys[0].rsplit("exec:", 1)[0]
            args: list[int | str] = [
                time.time_ns() // 1000,
                part,
                "",
                eid,
                '{"success":true}',
                "1",
                "verification_failed",
                "",
            ]
            pipe.evalsha(sha, 1, part + "claims", *args, len(states) // 2, *states)
        pipe.execute()
    after = _stats(r)
    return (after["evalsha"][1] - before["evalsha"][1]) / (after["evalsha"][0] - before["evalsha"][0])


class Served(NamedTuple):
    """A ``cuefast api`` of this checkout with one registered account."""

    url: str
    key: str
    redis: redis.Redis
    prefix: str
    pid: int


@contextmanager
def served() -> Iterator[Served]:
    """Start a ``cuefast api`` on a free port with its own key prefix, register an account;
    stop the server and delete the prefix's keys afterwards."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _server_env(f"bench{uuid.uuid4().hex[:8]}")
    r = redis.Redis.from_url(env["CUEFAST_REDIS_URL"])
    server = subprocess.Popen(
        [sys.executable, "-m", "cuefast", "api", "--port", str(port)], env=env, cwd=ROOT
    )
    try:
        _wait_healthy(url)
        key = str(
            _post(url + "/v1/auth/register", {"email": f"bench-{uuid.uuid4().hex}@example.com"})["api_key"]
        )
        yield Served(url, key, r, env["CUEFAST_KEY_PREFIX"], server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
        _cleanup(env["CUEFAST_REDIS_URL"], env["CUEFAST_KEY_PREFIX"])


def print_deltas(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], n: int, what: str
) -> None:
    """The commandstats deltas per request as a table, then the nested + plain commands count."""
    print("| command | calls | µs |\n|---|---|---|")
    total_calls = 0.0
    for cmd in sorted(after, key=lambda c: -(after[c][1] - before.get(c, (0, 0))[1])):
        calls = (after[cmd][0] - before.get(cmd, (0, 0))[0]) / n
        us = (after[cmd][1] - before.get(cmd, (0, 0))[1]) / n
        if calls >= 0.01:
            print(f"| {cmd} | {calls:.2f} | {us:.1f} |")
            if not cmd.startswith(("evalsha", "eval", "info")):
                total_calls += calls
    print(f"nested + plain commands per {what}: {total_calls:.1f}")


def main(n: int) -> None:
    with served() as srv:
        url, key, r = srv.url, srv.key, srv.redis
        cue_body: dict[str, object] = {
            "name": "calls",
            "schedule": {"type": "once", "at": "2199-01-01T00:00:00Z"},
            "transport": "worker",
            "payload": {"task": "bench"},
        }
        cue = str(_post(url + "/v1/cues", cue_body, key)["id"])
        ids = _fire_many(url, key, cue, n + 1)
        conn = http.client.HTTPConnection(urlsplit(url).netloc)
        headers = {
            "Authorization": f"Bearer {key}",
            "X-Worker-Id": "bench-calls",
            "Content-Type": "application/json",
        }
        body = json.dumps({"success": True, "result": "ok"}).encode()

        def report(eid: str) -> None:
            conn.request("POST", f"/v1/executions/{eid}/outcome", body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            if res.status != 200:
                raise SystemExit(f"outcome answered {res.status}")

        report(ids.pop())  # warm (script cache, connections)
        before = _stats(r)
        for eid in ids:
            report(eid)
        after = _stats(r)
        print(f"{n} outcomes; per outcome:")
        print_deltas(before, after, n, "outcome")
        alone = _direct(r, srv.prefix, _fire_many(url, key, cue, n))
        print(f"outcomes_record.lua alone: {alone:.1f} µs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
