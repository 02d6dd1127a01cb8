"""Redis commands and CPU of one hot request — ``list`` (``GET /v1/executions?limit=20`` of a cue
fired 20 times, as ``./dev bench api --modes list``) or ``create`` (``POST /v1/cues``, the
bench's webhook cue) — sent ``N`` times one after another to a ``cuefast api`` of this checkout:
the ``INFO commandstats`` deltas per request (nested script commands included) and Redis's
CPU per request (``INFO cpu``).

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.route_calls list|create [N]

Exact only on a Redis nobody else uses (a private ``redis-server``): the deltas count every
client's commands. ``bench/outcome_calls.py`` does the same for an outcome.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import redis

from bench.__main__ import ROOT, _cleanup, _free_port, _post, _server_env, _wait_healthy
from bench.locustfile import webhook_cue


def _stats(r: redis.Redis) -> dict[str, tuple[int, int]]:
    info = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in info.items()}


def _cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main(mode: str, n: int) -> None:
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
        cue = str(_post(url + "/v1/cues", webhook_cue("calls"), key)["id"])
        for _ in range(20):
            _post(url + f"/v1/cues/{cue}/fire", {}, key)
        conn = http.client.HTTPConnection(urlsplit(url).netloc)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        count = iter(range(10**9))

        def request() -> None:
            if mode == "list":
                conn.request("GET", "/v1/executions?limit=20", headers=headers)
            else:
                body = json.dumps(webhook_cue(f"calls-{next(count)}")).encode()
                conn.request("POST", "/v1/cues", body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            if res.status not in (200, 201):
                raise SystemExit(f"{mode} answered {res.status}")

        for _ in range(20):
            request()  # warm (script cache, connections, rendered rows)
        before, cpu0 = _stats(r), _cpu(r)
        for _ in range(n):
            request()
        after, cpu1 = _stats(r), _cpu(r)
        print(f"{n} × {mode}; Redis CPU per request {(cpu1 - cpu0) / n * 1e6:.1f} µs; per request:")
        print("| command | calls | µs |\n|---|---|---|")
        total_calls = 0.0
        for cmd in sorted(after, key=lambda c: -(after[c][1] - before.get(c, (0, 0))[1])):
            calls = (after[cmd][0] - before.get(cmd, (0, 0))[0]) / n
            us = (after[cmd][1] - before.get(cmd, (0, 0))[1]) / n
            if calls >= 0.01:
                print(f"| {cmd} | {calls:.2f} | {us:.1f} |")
                if not cmd.startswith(("evalsha", "eval", "info")):
                    total_calls += calls
        print(f"nested + plain commands per request: {total_calls:.1f}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        _cleanup(env["CUEFAST_REDIS_URL"], env["CUEFAST_KEY_PREFIX"])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
