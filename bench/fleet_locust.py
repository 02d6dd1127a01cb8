"""Locust load for ``./dev bench fleet`` / ``soak``: agents, workers and dashboards over many accounts.

``FLEET_ACCOUNTS`` names a JSON file written by bench/fleet.py: one object per account with its
``key`` and cue ids (``fire_hook``, ``agent_work``, ``second_hook``, ...). ``FLEET_OUT`` is where
the per-minute latencies of every request type go when the run stops (JSON, see ``_dump``).
``FLEET_PACE`` is the seconds each user takes per loop (default 0.5), from its own phase: user i
of n starts its first loop i/n of a pace after the others and keeps that phase
(``FleetUser.wait_time``). Locust starts every user within ~10 ms, and its
``constant_pacing`` measures from that start, so with it every user sent at the same instant of
every loop — a herd of 30 requests, whose queue was most of what the latencies measured
(p50 ~20 ms on a server 8 % busy; bench/README.md "Sixteenth session").

* ``Agent``: fires a cue of one account with a ``payload_override`` (a webhook cue delivered
  to the local receiver, or a worker cue the workers claim), then GETs the execution.
* ``Worker``: batch-claims (``POST /v1/worker/claim``) the ``fleet`` task of the next account
  in its rotation and reports every outcome with evidence (``external_id``, ``result_url``,
  ``summary``): the first through ``POST /v1/executions/{id}/outcome``, the rest as one batch
  (``POST /v1/worker/outcomes``, as the cuefast daemon does); every 30 s per account it sends
  the registry heartbeat.
* ``Dashboard``: lists executions filtered by ``status``, ``cue_id`` or ``outcome_state``,
  unfiltered, or the account's cues.

Never import this module from app or test code: locust monkey-patches the standard library.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import defaultdict
from typing import Any

from locust import FastHttpUser, events, task

from cuefast.heap import settle_heap

with open(os.environ["FLEET_ACCOUNTS"]) as _fh:
    ACCOUNTS: list[dict[str, str]] = json.load(_fh)
PACE = float(os.environ.get("FLEET_PACE", "0.5"))
CLAIM_MAX = 25
_ids = itertools.count()
_starts = itertools.count()  # the users' start order: each one's phase of the pace
AGENTS = int(os.environ.get("FLEET_AGENTS", "12"))
WORKERS = int(os.environ.get("FLEET_WORKERS", "8"))
DASHBOARDS = int(os.environ.get("FLEET_DASHBOARDS", "10"))
USERS = AGENTS + WORKERS + DASHBOARDS
_times: dict[tuple[int, str], list[float]] = defaultdict(list)
_failures: dict[tuple[int, str], int] = defaultdict(int)
_clock = {"start": 0.0, "end": 0.0}


# the load generator's own full GC passes would land in the latencies it records
events.init.add_listener(lambda **_: settle_heap())  # type: ignore[no-untyped-call]  # locust: unannotated


@events.test_start.add_listener  # type: ignore[untyped-decorator]  # locust: add_listener is unannotated
def _on_start(**_: Any) -> None:
    _clock["start"] = time.time()


@events.request.add_listener  # type: ignore[untyped-decorator]  # locust: add_listener is unannotated
def _on_request(name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
    minute = int((time.time() - _clock["start"]) // 60)
    _times[minute, name].append(response_time)
    if exception is not None:
        _failures[minute, name] += 1


@events.test_stop.add_listener  # type: ignore[untyped-decorator]  # locust: add_listener is unannotated
def _dump(**_: Any) -> None:
    """``{"start", "end", "rows": [[minute, name, [response ms, ...], failures], ...]}``."""
    _clock["end"] = time.time()
    rows = [[m, n, ts, _failures.get((m, n), 0)] for (m, n), ts in sorted(_times.items())]
    with open(os.environ["FLEET_OUT"], "w") as fh:
        json.dump({"start": _clock["start"], "end": _clock["end"], "rows": rows}, fh)


class FleetUser(FastHttpUser):
    abstract = True
    due: float
    """when this user's current loop was due (``time.monotonic``), set by ``on_start``"""

    def wait_time(self) -> float:
        """Until this user's next loop: one pace after its last one was due (at once, and from
        now on, if that has passed)."""
        now = time.monotonic()
        self.due = max(self.due + PACE, now)
        return self.due - now

    def on_start(self) -> None:
        time.sleep(PACE * next(_starts) / max(USERS, 1))  # its phase (gevent's sleep: locust patches it)
        self.due = time.monotonic()  # its first loop's start
        self.n = next(_ids)
        self.account = ACCOUNTS[self.n % len(ACCOUNTS)]
        self.headers = {"Authorization": f"Bearer {self.account['key']}"}

    def auth(self, account: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {account['key']}"}


class Agent(FleetUser):
    """An agent: fires with a payload override, then reads the execution it created."""

    fixed_count = AGENTS

    fires = 0
    """this agent's fires so far (its own count: the shared ``_ids`` advances twice per loop, so
    alternating by it picked the worker cue every time)"""

    def next_cue(self) -> str:
        """The cue of this agent's next fire: the webhook cue on its 1st, 3rd, … fire, the worker
        cue on its 2nd, 4th, …"""
        self.fires += 1
        return self.account["fire_hook"] if self.fires % 2 else self.account["agent_work"]

    @task
    def fire_and_read(self) -> None:
        cue = self.next_cue()
        body = {
            "payload_override": {
                "agent": f"agent-{self.n}",
                "run": next(_ids),
                "prompt": "summarise the inbox",
            },
            "merge_strategy": "merge",
        }
        res = self.client.post(
            f"/v1/cues/{cue}/fire", json=body, headers=self.headers, name="POST /v1/cues/{id}/fire"
        )
        if res.status_code == 200:
            self.client.get(
                f"/v1/executions/{res.json()['id']}", headers=self.headers, name="GET /v1/executions/{id}"
            )


class Worker(FleetUser):
    """A worker process serving every account in turn (one key per account)."""

    fixed_count = WORKERS

    def on_start(self) -> None:
        super().on_start()
        self.worker_id = f"fleet-worker-{self.n}"
        self.turn = self.n
        self.beats: dict[str, float] = {}

    @task
    def claim_and_report(self) -> None:
        self.turn += 1
        account = ACCOUNTS[self.turn % len(ACCOUNTS)]
        headers = self.auth(account)
        now = time.monotonic()
        if now - self.beats.get(account["key"], 0.0) >= 30:
            self.beats[account["key"]] = now
            self.client.post(
                "/v1/worker/heartbeat",
                json={"worker_id": self.worker_id, "handlers": ["fleet"]},
                headers=headers,
                name="POST /v1/worker/heartbeat",
            )
        res = self.client.post(
            "/v1/worker/claim",
            json={"worker_id": self.worker_id, "tasks": ["fleet"], "max": CLAIM_MAX, "wait_seconds": 0},
            headers=headers,
            name="POST /v1/worker/claim",
        )
        if res.status_code != 200:
            return
        outcomes = [_outcome(e["execution_id"]) for e in res.json()["executions"]]
        if not outcomes:
            return
        first = outcomes.pop(0)
        self.client.post(
            f"/v1/executions/{first.pop('execution_id')}/outcome",
            json=first,
            headers=headers,
            name="POST /v1/executions/{id}/outcome",
        )
        if outcomes:
            self.client.post(
                "/v1/worker/outcomes",
                json={"worker_id": self.worker_id, "outcomes": outcomes},
                headers=headers,
                name="POST /v1/worker/outcomes",
            )


def _outcome(execution_id: str) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "success": True,
        "result": "processed 12 items",
        "external_id": f"job-{execution_id[:8]}",
        "result_url": f"https://results.example.com/{execution_id}",
        "summary": "inbox summarised",
    }


class Dashboard(FleetUser):
    """A dashboard page: one listing per loop, filtered like a UI does."""

    fixed_count = DASHBOARDS

    @task
    def look(self) -> None:
        pick = next(_ids) % 5
        h = self.headers
        if pick == 0:
            self.client.get(
                "/v1/executions?status=success&limit=20", headers=h, name="GET /v1/executions?status"
            )
        elif pick == 1:
            cue = self.account["second_hook"]
            self.client.get(
                f"/v1/executions?cue_id={cue}&limit=20", headers=h, name="GET /v1/executions?cue_id"
            )
        elif pick == 2:
            self.client.get(
                "/v1/executions?outcome_state=verified_success&limit=20",
                headers=h,
                name="GET /v1/executions?outcome_state",
            )
        elif pick == 3:
            self.client.get("/v1/executions?limit=20", headers=h, name="GET /v1/executions")
        else:
            self.client.get("/v1/cues?limit=50", headers=h, name="GET /v1/cues")
