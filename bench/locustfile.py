"""Locust load for the cues API: ``BENCH_MODE=create`` (POST /v1/cues) or ``get`` (GET /v1/cues/{id}).

Run through ``./dev bench api`` (see bench/README.md), which starts the server, registers
accounts and runs locust headless. Never import this module from app or test code: locust
monkey-patches the standard library on import.
"""

from __future__ import annotations

import itertools
import os
import uuid

from locust import FastHttpUser, task

MODE = os.environ.get("BENCH_MODE", "get")
_counter = itertools.count()


class CueUser(FastHttpUser):
    def on_start(self) -> None:
        res = self.client.post(
            "/v1/auth/register", json={"email": f"bench-{uuid.uuid4().hex}@example.com"}, name="register"
        )
        self.headers = {"Authorization": f"Bearer {res.json()['api_key']}"}
        self.prefix = uuid.uuid4().hex[:8]
        res = self.client.post(
            "/v1/cues",
            json=self._body(f"{self.prefix}-seed"),
            headers=self.headers,
            name="seed",
        )
        self.cue_id = res.json()["id"]

    def _body(self, name: str) -> dict[str, object]:
        return {
            "name": name,
            "schedule": {"type": "recurring", "cron": "*/5 * * * *", "timezone": "America/New_York"},
            "callback": {"url": "http://127.0.0.1:9/hook", "headers": {"X-Team": "bench"}},
            "payload": {"task": "bench", "n": 1},
        }

    @task
    def work(self) -> None:
        if MODE == "create":
            self.client.post(
                "/v1/cues",
                json=self._body(f"{self.prefix}-{next(_counter)}"),
                headers=self.headers,
                name="POST /v1/cues",
            )
        else:
            self.client.get(f"/v1/cues/{self.cue_id}", headers=self.headers, name="GET /v1/cues/{id}")
