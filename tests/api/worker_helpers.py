"""Shared helpers for the worker-transport tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.engine.notices import NoticeSender
from cuefast.engine.scheduler import Scheduler
from tests.conftest import Api, make_api

T0 = 1_795_434_122_000_000


class Env:
    def __init__(self, api: Api, clock: FrozenClock, sched: Scheduler) -> None:
        self.api = api
        self.clock = clock
        self.sched = sched
        self.rt = api.rt

    async def cue(self, key: str, name: str = "w", payload: Any = None, **over: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
            "payload": {"task": "t"} if payload is None else payload,
        }
        body.update(over)
        res = await self.api.request("POST", "/v1/cues", key, json=body)
        assert res.status_code == 201, res.text
        out: dict[str, Any] = res.json()
        return out

    async def fire(self, key: str, cue_id: str, override: Any = None) -> str:
        body = {} if override is None else {"payload_override": override}
        res = await self.api.request("POST", f"/v1/cues/{cue_id}/fire", key, json=body)
        assert res.status_code == 200, res.text
        return str(res.json()["id"])

    async def get(self, key: str, eid: str) -> dict[str, Any]:
        res = await self.api.request("GET", f"/v1/executions/{eid}", key)
        assert res.status_code == 200, res.text
        out: dict[str, Any] = res.json()
        return out

    async def claim(self, key: str, eid: str, worker: str = "w1") -> Any:
        return await self.api.request("POST", f"/v1/executions/{eid}/claim", key, json={"worker_id": worker})

    async def claimable(self, key: str, query: str = "") -> list[dict[str, Any]]:
        res = await self.api.request("GET", f"/v1/executions/claimable{query}", key)
        assert res.status_code == 200, res.text
        items: list[dict[str, Any]] = res.json()["executions"]
        return items

    async def post(self, key: str, path: str, body: Any) -> Any:
        return await self.api.request("POST", path, key, json=body)

    async def tick(self, seconds: float = 0) -> None:
        self.clock.advance(seconds)
        await self.sched.tick()
        await self.send_notices()

    async def send_notices(self) -> int:
        """Send the queued notices (on_failure webhooks and e-mails, alerts) as a dispatcher's
        notice sender does; returns how many were handled."""
        notices = NoticeSender(self.rt.store, self.rt.settings, self.clock, self.rt.webhooks)
        await notices.start()
        return await notices.step()


@asynccontextmanager
async def make_env(settings: Settings) -> AsyncIterator[Env]:
    clock = FrozenClock(T0)
    api, rt = await make_api(settings, clock)
    env = Env(api, clock, Scheduler(rt.store, clock, work=rt.reaper))
    try:
        yield env
    finally:
        await api.client.aclose()
        await rt.close()


@pytest.fixture
async def wenv(settings: Settings) -> AsyncIterator[Env]:
    async with make_env(settings) as env:
        yield env
