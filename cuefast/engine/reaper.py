"""The worker transport's scheduler steps: expired claim leases and unclaimed work.

CONTRACT.md §9.5, §12.1: expired leases are renewed
(worker alive, under the ceiling), re-offered as ``retry_ready`` or failed; claimable work
nobody claimed in time becomes ``missed``. A final failure runs on_failure inside the script
that decides it (``lua/lib/alert.lua``: the pause, and the webhook and e-mail notices queued on
the partition's notices stream, which ``cuefast.engine.notices`` sends), so a crash cannot lose it.
Bounded batches per partition; every state change is a Lua script that re-checks what was
judged."""

from __future__ import annotations

import logging

from cuefast import metrics as m
from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.models import CONFIG_DECODER, CueConfig
from cuefast.services.usage import count_failed
from cuefast.store import Store
from cuefast.store.claims import ExpiredClaim

log = logging.getLogger(__name__)

BATCH = 500
_US = 1_000_000


class WorkReaper:
    def __init__(
        self, store: Store, settings: Settings, clock: Clock, metrics: m.Metrics | None = None
    ) -> None:
        self.metrics = metrics or m.Metrics()
        self.store = store
        self.settings = settings
        self.clock = clock
        self.lease_us = settings.worker_lease_seconds * _US

    async def reap_leases(self, p: int, now: int, batch: int = BATCH) -> int:
        """Expired leases of partition ``p`` (§9.5): renewed while the worker is alive and under
        the ceiling; otherwise re-offered as ``retry_ready``, or ``failed`` (+ on_failure) when
        its attempts are exhausted. Returns the number of claims judged."""
        alive_us = self.settings.worker_alive_seconds * _US
        ceiling_us = self.settings.worker_max_claim_seconds * _US
        judged = 0
        for _ in range(100):  # bounded: each round removes or renews what it judged
            rows = await self.store.claims.expired_leases(p, batch, now)
            if not rows:
                break
            seen = await self.store.workers.last_seen([(r.account_id, r.worker_id) for r in rows])
            cfgs = await self._configs([r.cue_id for r in rows])
            decisions: list[tuple[str, str, str]] = []
            for r in rows:
                last = seen.get((r.account_id, r.worker_id))
                start = max(r.claimed_at, r.heartbeat_at or 0)
                if last is not None and last >= now - alive_us and now < start + ceiling_us:
                    decisions.append(
                        (
                            r.execution_id,
                            r.lease_until,
                            f"renew:{now + (self.lease_us if r.lease_us is None else r.lease_us)}",
                        )
                    )
                    continue
                cfg = cfgs.get(r.cue_id)
                attempts_left = cfg is not None and r.attempts < cfg.retry.max_attempts
                decisions.append((r.execution_id, r.lease_until, "reoffer" if attempts_left else "fail"))
            results = await self.store.claims.reap_leases(p, decisions, now)
            await self._task_caps(rows, decisions, results, now)
            for _, _, decision in decisions:
                self.metrics.inc(m.LEASE_EXPIRIES, (decision.split(":", 1)[0],))
            failed = [r.execution_id for r, res in zip(rows, results, strict=True) if res == "failed"]
            self.metrics.inc(m.EXECUTIONS_FAILED, ("worker", "lease_exhausted"), len(failed))
            await count_failed(self.store, failed)  # usage `failed`
            judged += len(rows)
            if len(rows) < batch:
                break
        return judged

    async def _task_caps(
        self,
        rows: list[ExpiredClaim],
        decisions: list[tuple[str, str, str]],
        results: list[str],
        now: int,
    ) -> None:
        """Permits of per-task claim caps follow what the reaper did (``claim_caps``)."""
        per: dict[str, tuple[list[tuple[str, int]], list[str]]] = {}
        for r, (_, _, decision), res in zip(rows, decisions, results, strict=True):
            if not res:  # changed meanwhile: not ours to judge
                continue
            renewed, ended = per.setdefault(r.account_id, ([], []))
            if decision.startswith("renew:"):
                renewed.append((r.execution_id, int(decision[6:])))
            else:
                ended.append(r.execution_id)
        for account_id, (renewed, ended) in per.items():
            await self.store.task_caps.after_reap(account_id, renewed, ended, now)

    async def expire_unclaimed(self, p: int, now: int, batch: int = BATCH) -> int:
        """Claimable executions nobody claimed within CUEFAST_WORKER_UNCLAIMED_SECONDS → missed."""
        cutoff = now - self.settings.worker_unclaimed_seconds * _US
        missed = 0
        for _ in range(100):
            taken, rows = await self.store.claims.expire_unclaimed(p, cutoff, batch, now)
            if rows:
                await count_failed(self.store, [r.execution_id for r in rows])  # usage `failed`
            missed += len(rows)
            self.metrics.inc(m.EXECUTIONS_FAILED, ("worker", "missed"), len(rows))
            if taken < batch:
                break
        return missed

    async def _configs(self, cue_ids: list[str]) -> dict[str, CueConfig]:
        rows = await self.store.cues.fields(cue_ids, ("cfg",))
        return {c: CONFIG_DECODER.decode(cfg) for c, r in rows.items() if (cfg := r["cfg"])}
