"""The worker registry (CONTRACT.md §9.6–§9.8): heartbeats, listing with liveness status, delete.

A worker is alive while its last ``POST /v1/worker/heartbeat`` is younger than
CUEFAST_WORKER_ALIVE_SECONDS; the lease reaper reads the same zset (``workers``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.errors import WorkerNotFound
from cuefast.models import Account
from cuefast.store import Store
from cuefast.times import fmt_z
from cuefast.validate import Checker, require_object
from cuefast.work_input import worker_id_field

STALE_SECONDS = 900
_US = 1_000_000


class WorkerRegistry:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    async def worker_heartbeat(self, account: Account, body: Any) -> dict[str, Any]:
        obj = require_object(body)
        c = Checker()
        worker = worker_id_field(c, obj)
        handlers = obj.get("handlers")
        if handlers is not None:
            if not isinstance(handlers, list):
                c.add("body.handlers", "Input should be a valid list")
            else:
                for i, h in enumerate(handlers):
                    c.string(f"body.handlers.{i}", h, max_len=255)
        c.raise_if_any()
        now = self.clock.now_us()
        await self.store.worker_heartbeat(account.id, worker, msgspec.json.encode(handlers).decode(), now)
        return {"acknowledged": True, "server_time": fmt_z(now)}

    async def list_workers(self, account: Account) -> dict[str, Any]:
        now = self.clock.now_us()
        out: list[dict[str, Any]] = []
        for worker_id, last, since, handlers in await self.store.list_workers(account.id):
            age = max(0, (now - last) // _US)
            status = (
                "active"
                if age < self.settings.worker_alive_seconds
                else "stale"
                if age < STALE_SECONDS
                else "dead"
            )
            out.append(
                {
                    "worker_id": worker_id,
                    "last_heartbeat": fmt_z(last),
                    "seconds_since_heartbeat": age,
                    "heartbeat_status": status,
                    "handlers": msgspec.Raw(handlers if handlers != "null" else "[]"),
                    "registered_since": fmt_z(since),
                }
            )
        return {"workers": out}

    async def delete_worker(self, account: Account, worker_id: str) -> None:
        if not await self.store.delete_worker(account.id, worker_id):
            raise WorkerNotFound()
