"""Redis commands and CPU of one hot request — ``list`` (``GET /v1/executions?limit=20`` of a cue
fired 20 times, as ``./dev bench api --modes list``), ``create`` (``POST /v1/cues``, the
bench's webhook cue), ``get`` (``GET /v1/cues/{id}``) or ``fire`` (``POST /v1/cues/{id}/fire``)
— sent ``N`` times one after another to a ``cuefast api`` of this checkout: the ``INFO
commandstats`` deltas per request (nested script commands included), Redis's CPU per request
(``INFO cpu``) and the server process's (``/proc``: CPU time, so less sensitive to a busy
machine than a rate).

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.route_calls list|create|get|fire [N]

Exact only on a Redis nobody else uses (a private ``redis-server``): the deltas count every
client's commands. ``bench/outcome_calls.py`` does the same for an outcome.
"""

from __future__ import annotations

import http.client
import json
import sys
from urllib.parse import urlsplit

from bench.__main__ import _post
from bench.cpu import process_seconds, redis_seconds
from bench.locustfile import webhook_cue
from bench.outcome_calls import _stats, print_deltas, served


def main(mode: str, n: int) -> None:
    with served() as srv:
        url, key, r = srv.url, srv.key, srv.redis
        cue = str(_post(url + "/v1/cues", webhook_cue("calls"), key)["id"])
        for _ in range(20):
            _post(url + f"/v1/cues/{cue}/fire", {}, key)
        conn = http.client.HTTPConnection(urlsplit(url).netloc)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        count = iter(range(10**9))

        def request() -> None:
            if mode == "list":
                conn.request("GET", "/v1/executions?limit=20", headers=headers)
            elif mode == "get":
                conn.request("GET", f"/v1/cues/{cue}", headers=headers)
            elif mode == "fire":
                conn.request("POST", f"/v1/cues/{cue}/fire", body=b"{}", headers=headers)
            else:
                body = json.dumps(webhook_cue(f"calls-{next(count)}")).encode()
                conn.request("POST", "/v1/cues", body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            if res.status not in (200, 201):
                raise SystemExit(f"{mode} answered {res.status}")

        for _ in range(20):
            request()  # warm (script cache, connections, rendered rows)
        before, cpu0, server0 = _stats(r), redis_seconds(r), process_seconds(srv.pid)
        for _ in range(n):
            request()
        after, cpu1, server1 = _stats(r), redis_seconds(r), process_seconds(srv.pid)
        print(
            f"{n} × {mode}; per request: server CPU {(server1 - server0) / n * 1e6:.0f} µs, "
            f"Redis CPU {(cpu1 - cpu0) / n * 1e6:.1f} µs; commands:"
        )
        print_deltas(before, after, n, "request")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
