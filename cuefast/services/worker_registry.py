"""The worker registry (CONTRACT.md §9.6–§9.8): heartbeats, listing with liveness status, delete.

A worker is alive while its last ``POST /v1/worker/heartbeat`` is younger than
CUEFAST_WORKER_ALIVE_SECONDS; the lease reaper reads the same zset (``workers``).

Bounded: a record holds an id of at most 255 characters and at most ``MAX_HANDLERS`` handler
names of at most 255 characters (~26 KB at worst); an account holds at most
CUEFAST_WORKER_REGISTRY_LIMIT workers; a worker not seen for ``EXPIRE_SECONDS`` is forgotten
(not listed, then dropped by a later heartbeat's bounded sweep, or with the whole registry
when the account sends none for that long). At the limit, a new worker takes the place of the
longest-silent one if that one is no longer alive; otherwise it gets 403
``worker_limit_exceeded``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.errors import WorkerLimitExceeded, WorkerNotFound
from cuefast.models import Account
from cuefast.services.claim_input import worker_id_field
from cuefast.services.validate import Checker, require_object
from cuefast.store import Store
from cuefast.times import fmt_z

STALE_SECONDS = 900
MAX_HANDLERS = 100
EXPIRE_SECONDS = 86_400
"""a worker not seen for this long (and at least CUEFAST_WORKER_ALIVE_SECONDS) is forgotten"""
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
            elif len(handlers) > MAX_HANDLERS:
                c.add("body.handlers", f"List should have at most {MAX_HANDLERS} items")
            else:
                for i, h in enumerate(handlers):
                    c.string(f"body.handlers.{i}", h, max_len=255)
        c.raise_if_any()
        now = self.clock.now_us()
        limit = self.settings.worker_registry_limit
        registered = await self.store.workers.heartbeat(
            account.id,
            worker,
            msgspec.json.encode(handlers).decode(),
            now,
            limit=limit,
            expire_us=self.expire_us,
            alive_us=self.settings.worker_alive_seconds * _US,
        )
        if registered is None:
            raise WorkerLimitExceeded(limit)
        return {"acknowledged": True, "server_time": fmt_z(now)}

    @property
    def expire_us(self) -> int:
        return max(EXPIRE_SECONDS, self.settings.worker_alive_seconds) * _US

    async def list_workers(self, account: Account) -> dict[str, Any]:
        now = self.clock.now_us()
        out: list[dict[str, Any]] = []
        for worker_id, last, since, handlers in await self.store.workers.seen(
            account.id, now - self.expire_us
        ):
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
        if not await self.store.workers.delete(account.id, worker_id):
            raise WorkerNotFound()
