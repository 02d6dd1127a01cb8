"""Scheduler steps of the worker transport (CONTRACT.md §9.5, §12.1): expired leases are renewed
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
from cuefast.store import Store

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
            rows = await self.store.lease_due(p, batch, now)
            if not rows:
                break
            seen = await self.store.worker_last_seen([(r[1], r[2]) for r in rows])
            cfgs = await self._configs([r[6] for r in rows])
            decisions: list[tuple[str, str, str]] = []
            for eid, acct, worker, cla, lh, att, cue_id, lx, _tb, ls in rows:
                last = seen.get((acct, worker))
                start = max(int(cla or 0), int(lh or 0))
                if last is not None and last >= now - alive_us and now < start + ceiling_us:
                    decisions.append((eid, lx, f"renew:{now + (int(ls) if ls else self.lease_us)}"))
                    continue
                cfg = cfgs.get(cue_id)
                attempts_left = cfg is not None and int(att) < cfg.retry.max_attempts
                decisions.append((eid, lx, "reoffer" if attempts_left else "fail"))
            results = await self.store.lease_reap(p, decisions, now)
            for _, _, decision in decisions:
                self.metrics.inc(m.LEASE_EXPIRIES, (decision.split(":", 1)[0],))
            failed = [row[0] for row, res in zip(rows, results, strict=True) if res == "failed"]
            self.metrics.inc(m.EXECUTIONS_FAILED, ("worker", "lease_exhausted"), len(failed))
            await self.store.count_failed_executions(p, failed)  # usage `failed`
            judged += len(rows)
            if len(rows) < batch:
                break
        return judged

    async def expire_unclaimed(self, p: int, now: int, batch: int = BATCH) -> int:
        """Claimable executions nobody claimed within CUEFAST_WORKER_UNCLAIMED_SECONDS → missed."""
        cutoff = now - self.settings.worker_unclaimed_seconds * _US
        missed = 0
        for _ in range(100):
            taken, rows = await self.store.missed(p, cutoff, batch, now)
            if rows:
                await self.store.count_failed_executions(p, [r[0] for r in rows])  # usage `failed`
            missed += len(rows)
            self.metrics.inc(m.EXECUTIONS_FAILED, ("worker", "missed"), len(rows))
            if taken < batch:
                break
        return missed

    async def _configs(self, cue_ids: list[str]) -> dict[str, CueConfig]:
        rows = await self.store.cue_fields(cue_ids, ("cfg",))
        return {c: CONFIG_DECODER.decode(r[0]) for c, r in rows.items() if r[0]}
