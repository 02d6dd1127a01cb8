"""The services one process needs, built once from Settings and shared by its roles."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cuefast import metrics
from cuefast.clock import Clock, SystemClock
from cuefast.config import DEFAULT_PARTITIONS, Settings
from cuefast.durability import schema as pg
from cuefast.durability.history import History
from cuefast.engine import webhooks as outbound
from cuefast.engine.mail import Mailer
from cuefast.engine.reaper import WorkReaper
from cuefast.engine.webhooks import Webhooks
from cuefast.errors import ConfigError, OperatorError
from cuefast.services.accounts import AccountService
from cuefast.services.claims import WorkService
from cuefast.services.cues import CueService
from cuefast.services.executions import ExecutionService
from cuefast.services.login import LoginService
from cuefast.services.outcomes import OutcomeService
from cuefast.services.replays import ReplayService
from cuefast.services.worker_registry import WorkerRegistry
from cuefast.store import Store, connect
from cuefast.store.connect import Tls, problem
from cuefast.store.keys import Keys
from cuefast.store.outage import Outage
from cuefast.store.system import CURRENT_LAYOUT
from cuefast.store.wire import Replicas

RECOMMENDED_LISTPACK_VALUE = 1024
"""``hash-max-listpack-value`` that keeps an execution hash with an outcome a listpack (bench/README.md)"""
log = logging.getLogger(__name__)


class Runtime:
    """Redis store, PostgreSQL pool and the domain services of one process.

    ``refuse_eviction``: ``start`` raises ConfigError when Redis may evict keys (the server
    roles; overridden by ``CUEFAST_ALLOW_EVICTION=true``). Every process logs that as an error.
    """

    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        roles: str = "api",
        *,
        refuse_eviction: bool = False,
    ) -> None:
        self.settings = settings
        self.refuse_eviction = refuse_eviction
        self.clock: Clock = clock or SystemClock()
        self.keys = Keys(settings.key_prefix, settings.partitions or DEFAULT_PARTITIONS)
        """``partitions`` becomes the stored count at ``start`` when CUEFAST_PARTITIONS is unset"""
        self.tls = tls = Tls(settings.redis_tls_ca, settings.redis_tls_cert, settings.redis_tls_key)
        replicas = Replicas(settings.redis_wait_replicas, settings.redis_wait_timeout_ms)
        self.store = Store(
            connect(settings.redis_url, cluster=settings.redis_cluster, tls=tls),
            self.keys,
            replicas=replicas if replicas.needed else None,
        )
        self.pg_pool: Any = None
        self.metrics = metrics.Metrics(roles)
        """this process's counts, flushed to the install's hash (cuefast/metrics.py)"""
        self.metrics_flusher = metrics.Flusher(self.metrics, self.store.system, self.clock)
        self.accounts = AccountService(self.store, settings, self.clock)
        mailer = Mailer(settings.smtp_url, settings.notify_timeout_seconds) if settings.smtp_url else None
        self.login = LoginService(self.store, settings, self.clock, self.accounts, mailer)
        """device codes, magic links, sessions (§16); authenticates session JWTs for ``accounts``"""
        self.executions = ExecutionService(self.store, self.clock, self.metrics)
        self.executions.history = History(lambda: self.pg_pool, self.store)  # beyond Redis retention
        self.outcomes = OutcomeService(self.store, self.clock, self.metrics)
        self.cues = CueService(self.store, settings, self.clock, self.executions)
        self.replays = ReplayService(self.store, self.clock, self.executions)
        self.work = WorkService(self.store, settings, self.clock, self.outcomes, self.metrics)
        self.workers = WorkerRegistry(self.store, settings, self.clock)
        self.reaper = WorkReaper(self.store, settings, self.clock, self.metrics)
        self.webhooks: Webhooks = outbound.client(settings)
        """the process's outbound HTTP client (deliveries, notices); its pool opens at the first send"""
        self._pg_task: asyncio.Task[None] | None = None
        self._pg_outage = Outage(
            log,
            "startup",
            stores=pg.POSTGRES,
            then="retrying in the background (the API serves from Redis meanwhile)",
        )

    async def reach_redis(self) -> None:
        """The process's first Redis command: ``OperatorError`` when Redis cannot be used."""
        try:
            await self.store.system.ping()
        except Exception as exc:
            raise problem(exc, self.settings.redis_url, self.tls) from exc

    async def start(self, *, need_pg: bool = False) -> None:
        """Check Redis (``OperatorError`` when it cannot be used), upgrade its layout, connect
        PostgreSQL. A PostgreSQL that is only unreachable (refused, timed out) is retried in the
        background — the API serves from Redis meanwhile — unless ``need_pg``; a wrong setting
        (password, database, DSN) raises ``OperatorError`` either way."""
        await self.reach_redis()
        await self.check_eviction()
        await self.check_hash_encoding()
        new_install = await self.store.system.check_partitions(explicit=bool(self.settings.partitions))
        await self.store.preload()
        layout = CURRENT_LAYOUT if new_install else await self.store.system.layout()
        if layout < 2:
            log.warning("upgrading the execution listing indexes (once per install)")
            n = await self.store.executions.upgrade_indexes()
            await self.store.system.set_layout(2)
            log.warning("upgraded the listing indexes of %d executions", n)
        if layout < 3:
            log.warning("moving the accounts to the auth shards (once per install)")
            n = await self.store.account_layout.upgrade()
            await self.store.system.set_layout(3)
            log.warning("moved %d accounts to the auth shards", n)
        if layout < 4:
            log.warning("moving the cue-names hashes to the auth shards (once per install)")
            n = await self.store.account_layout.move_names()
            await self.store.system.set_layout(4)
            log.warning("moved the cue names of %d accounts", n)
        if layout < 5:
            log.warning("bounding the execution listing cells (once per install)")
            n = await self.store.executions.upgrade_bounds()
            await self.store.system.set_layout(5)
            log.warning("bounded %d listing cells", n)
        self.metrics_flusher.start()
        if self.settings.database_url:
            try:
                await self._connect_pg()
            except Exception as exc:  # the API keeps serving from Redis; /status says degraded
                if need_pg or (isinstance(exc, OperatorError) and not exc.transient):
                    raise
                self._pg_outage.failed(exc, "could not start using PostgreSQL")
                self._pg_task = asyncio.create_task(self._retry_pg())

    async def check_eviction(self) -> None:
        """Keys vanishing silently is data loss: Redis must run with ``noeviction``."""
        evicting = sorted(p for p in await self.store.system.eviction_policies() if p != "noeviction")
        if not evicting:
            return
        policy = ", ".join(evicting)
        log.error(
            "Redis maxmemory-policy is %s, not noeviction: under memory pressure Redis deletes "
            "keys (cues, executions, claims) without a trace. Run Redis with "
            "'maxmemory-policy noeviction'%s",
            policy,
            " (CUEFAST_ALLOW_EVICTION=true: starting anyway)"
            if self.settings.allow_eviction
            else (" (CUEFAST_ALLOW_EVICTION=true starts anyway)" if self.refuse_eviction else ""),
        )
        if self.refuse_eviction and not self.settings.allow_eviction:
            raise ConfigError(
                f"Redis maxmemory-policy is {policy}; cuefast needs noeviction "
                "(set CUEFAST_ALLOW_EVICTION=true to start anyway and accept losing data)"
            )

    async def check_hash_encoding(self) -> None:
        """An execution hash holding one value over ``hash-max-listpack-value`` bytes (an outcome,
        a payload: most of them, with Redis's default of 64) is stored as a hashtable of ~2 KB
        instead of a listpack of ~1 KB: say so once at start (the embedded Valkey runs with 1024)."""
        limit = await self.store.system.listpack_value_limit()
        if limit is not None and limit < RECOMMENDED_LISTPACK_VALUE:
            log.warning(
                "Redis hash-max-listpack-value is %d: an execution with an outcome or a payload over "
                "%d bytes takes about twice the memory; set 'hash-max-listpack-value %d' in redis.conf "
                "(or CONFIG SET) to keep it compact",
                limit,
                limit,
                RECOMMENDED_LISTPACK_VALUE,
            )

    async def _connect_pg(self) -> None:
        pool = await pg.create_pool(self.settings.database_url, self.settings.database_schema)
        try:
            await pg.migrate(pool)
        except BaseException:
            pool.terminate()  # a retry opens a new one
            raise
        self.pg_pool = pool

    async def _retry_pg(self) -> None:
        """Until PostgreSQL can be used: every 1 s, doubling to 30 s. The outage is logged as any
        background loop's (``Outage``: a reminder a minute, one line when it ends); an error that
        is no outage — a migration PostgreSQL rejects — with its traceback each time."""
        delay = 1.0
        while self.pg_pool is None:
            await asyncio.sleep(delay)
            try:
                await self._connect_pg()
                self._pg_outage.ok()
            except Exception as exc:
                self._pg_outage.failed(exc, "could not start using PostgreSQL")
                delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        await self.work.close()
        await self.webhooks.close()
        await self.metrics_flusher.stop()
        if self._pg_task is not None:
            self._pg_task.cancel()
        if self.pg_pool is not None:
            await self.pg_pool.close()
        await self.store.close()
