"""Locust load for ``./dev bench api``: one scenario per run, chosen by ``BENCH_MODE``.

Scenarios: ``ceiling`` (the bare endpoint of bench/ceiling.py), ``get`` (GET a cue),
``create`` (POST a cue), ``list`` (GET /v1/executions?limit=20), ``list_distinct`` (the
same, each user at its own offset 0-49: no two users' listings are identical, so none is
shared in flight), ``fire`` (fire a worker cue), ``outcome`` (report the outcome of an
execution fired before the run), ``fire_outcome``
(fire, then report its outcome), ``claim`` (fire, claim the execution, report its outcome).
``BENCH_KEY`` set: every user shares that API key (how a fleet uses one account) and the
cue ``BENCH_CUE``; unset: each user registers its own account and creates its own cue.
``outcome`` reads its accounts and executions from the JSON file ``BENCH_POOL`` instead
(``[{"key": …, "ids": […]}, …]``, written by bench/__main__.py): user n takes entry n modulo
their number; a user whose entry runs dry fires one more (request ``refill``, not counted).

Run through ``./dev bench api`` (see bench/README.md). Never import this module from app
or test code: locust monkey-patches the standard library on import.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from typing import Any

from locust import FastHttpUser, events, task

from cuefast.heap import settle_heap

MODE = os.environ.get("BENCH_MODE", "get")
SHARED_KEY = os.environ.get("BENCH_KEY", "")
SHARED_CUE = os.environ.get("BENCH_CUE", "")
_counter = itertools.count()
_users = itertools.count()
_offsets = itertools.count()
POOL: list[dict[str, Any]] = []
if MODE == "outcome":
    with open(os.environ["BENCH_POOL"]) as fh:
        POOL = json.load(fh)
WORKER_MODES = ("fire", "outcome", "fire_outcome", "claim")
LIST_FIRES = {"list": 20, "list_distinct": 70}
"""fires of the listed cue before a list run: every page is full (offsets up to 49)"""


def webhook_cue(name: str) -> dict[str, object]:
    """A recurring webhook cue with a timezone, headers and a payload: a create runs every
    check (schema, name reservation, limit, SSRF, payload, timezone, cron)."""
    return {
        "name": name,
        "schedule": {"type": "recurring", "cron": "*/5 * * * *", "timezone": "America/New_York"},
        "callback": {"url": "http://127.0.0.1:9/hook", "headers": {"X-Team": "bench"}},
        "payload": {"task": "bench", "n": 1},
    }


def worker_cue(name: str) -> dict[str, object]:
    """A worker cue far in the future: executions come only from fires."""
    return {
        "name": name,
        "schedule": {"type": "once", "at": "2199-01-01T00:00:00Z"},
        "transport": "worker",
        "payload": {"task": "bench"},
    }


# the load generator's own full GC passes would land in the latencies it records
events.init.add_listener(lambda **_: settle_heap())  # type: ignore[no-untyped-call]  # locust: unannotated


class CueUser(FastHttpUser):
    def on_start(self) -> None:
        self.prefix = uuid.uuid4().hex[:8]
        self.offset = next(_offsets) % 50
        if MODE == "ceiling":
            self.headers = {"Authorization": "Bearer bench"}
            return
        if MODE == "outcome":
            entry = POOL[next(_users) % len(POOL)]
            self.headers = {"Authorization": f"Bearer {entry['key']}", "X-Worker-Id": f"bench-{self.prefix}"}
            self.cue_id = str(entry["cue"])
            self.pool: list[str] = entry["ids"]  # shared by the users of one entry
            return
        key = SHARED_KEY
        if not key:
            res = self.client.post(
                "/v1/auth/register", json={"email": f"bench-{uuid.uuid4().hex}@example.com"}, name="register"
            )
            key = res.json()["api_key"]
        self.headers = {"Authorization": f"Bearer {key}", "X-Worker-Id": f"bench-{self.prefix}"}
        self.cue_id = SHARED_CUE
        if not self.cue_id:
            body = worker_cue if MODE in WORKER_MODES else webhook_cue
            res = self.client.post(
                "/v1/cues", json=body(f"{self.prefix}-seed"), headers=self.headers, name="seed"
            )
            self.cue_id = res.json()["id"]
            if MODE in ("list", "list_distinct"):
                for _ in range(LIST_FIRES[MODE]):
                    self.client.post(
                        f"/v1/cues/{self.cue_id}/fire", json={}, headers=self.headers, name="seed"
                    )

    def _fire(self, name: str = "POST /v1/cues/{id}/fire") -> str | None:
        res = self.client.post(f"/v1/cues/{self.cue_id}/fire", json={}, headers=self.headers, name=name)
        return str(res.json()["id"]) if res.status_code == 200 else None

    def _outcome(self, execution_id: str) -> None:
        self.client.post(
            f"/v1/executions/{execution_id}/outcome",
            json={"success": True, "result": "ok"},
            headers=self.headers,
            name="POST /v1/executions/{id}/outcome",
        )

    @task
    def work(self) -> None:
        if MODE == "ceiling":
            self.client.get(f"/ceiling/{self.prefix}", headers=self.headers, name="GET /ceiling/{id}")
        elif MODE == "create":
            self.client.post(
                "/v1/cues",
                json=webhook_cue(f"{self.prefix}-{next(_counter)}"),
                headers=self.headers,
                name="POST /v1/cues",
            )
        elif MODE == "list":
            self.client.get("/v1/executions?limit=20", headers=self.headers, name="GET /v1/executions")
        elif MODE == "list_distinct":
            path = f"/v1/executions?limit=20&offset={self.offset}"
            self.client.get(path, headers=self.headers, name="GET /v1/executions")
        elif MODE == "fire":
            self._fire()
        elif MODE == "outcome":
            execution_id = self.pool.pop() if self.pool else self._fire("refill")
            if execution_id:
                self._outcome(execution_id)
        elif MODE == "fire_outcome":
            execution_id = self._fire()
            if execution_id:
                self._outcome(execution_id)
        elif MODE == "claim":
            execution_id = self._fire()
            if execution_id:
                self.client.post(
                    f"/v1/executions/{execution_id}/claim",
                    json={"worker_id": f"bench-{self.prefix}"},
                    headers=self.headers,
                    name="POST /v1/executions/{id}/claim",
                )
                self._outcome(execution_id)
        else:
            self.client.get(f"/v1/cues/{self.cue_id}", headers=self.headers, name="GET /v1/cues/{id}")
