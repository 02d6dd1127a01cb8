"""Scheduler steps of the worker transport (CONTRACT.md §9.5, §12.1): expired leases are renewed
(worker alive, under the ceiling), re-offered as ``retry_ready`` or failed; claimable work
nobody claimed in time becomes ``missed``; final failures run on_failure (pause, signed
notice through the dispatcher's SSRF-checked sender; the e-mail is queued by the Lua script and
sent by ``cuefast.notices``). Bounded batches per partition; every state change is a Lua script
that re-checks what was judged."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cuefast import metrics as m
from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.models import CONFIG_DECODER, CueConfig
from cuefast.signing import canonical_json, sign
from cuefast.store import Store
from cuefast.times import fmt_offset

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
        self._sender: Any = None
        self._notices: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        await self.flush_notices()
        if self._sender is not None:
            await self._sender.close()
            self._sender = None

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
            failed = [
                (row[0], row[6], row[1], int(row[5]), "Worker lease expired; max attempts exhausted")
                for row, res in zip(rows, results, strict=True)
                if res == "failed"
            ]
            self.metrics.inc(m.EXECUTIONS_FAILED, ("worker", "lease_exhausted"), len(failed))
            self._on_failure(failed, cfgs, now)
            await self.store.count_failed_executions(p, [f[0] for f in failed])  # usage `failed`
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
                cfgs = await self._configs([r[1] for r in rows])
                self._on_failure(
                    [
                        (
                            eid,
                            cue_id,
                            acct,
                            int(att),
                            "No worker claimed this execution within timeout window",
                        )
                        for eid, cue_id, acct, att in rows
                    ],
                    cfgs,
                    now,
                )
                await self.store.count_failed_executions(p, [r[0] for r in rows])  # usage `failed`
            missed += len(rows)
            self.metrics.inc(m.EXECUTIONS_FAILED, ("worker", "missed"), len(rows))
            if taken < batch:
                break
        return missed

    async def _configs(self, cue_ids: list[str]) -> dict[str, CueConfig]:
        rows = await self.store.cue_fields(cue_ids, ("cfg",))
        return {c: CONFIG_DECODER.decode(r[0]) for c, r in rows.items() if r[0]}

    # ---- on_failure (§12.1) for worker final failures -----------------------------------
    def _on_failure(
        self, failed: list[tuple[str, str, str, int, str]], cfgs: dict[str, CueConfig], now: int
    ) -> None:
        if failed:
            task = asyncio.create_task(self._escalate(failed, cfgs, now))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)

    async def flush_notices(self) -> None:
        """Wait for on_failure work started so far (tests; shutdown)."""
        while self._notices:
            await asyncio.gather(*list(self._notices), return_exceptions=True)

    async def _escalate(
        self, failed: list[tuple[str, str, str, int, str]], cfgs: dict[str, CueConfig], now: int
    ) -> None:
        try:
            k = self.store.keys
            pause: dict[int, list[str]] = {}
            for _, cue_id, _, _, _ in failed:
                cfg = cfgs.get(cue_id)
                if cfg is not None and cfg.on_failure.pause and cfg.schedule.type == "recurring":
                    pause.setdefault(k.cue_partition(cue_id), []).append(cue_id)
            for p, ids in pause.items():
                await self.store.pause_cues(p, list(dict.fromkeys(ids)))
            hooks = [f for f in failed if (cfg := cfgs.get(f[1])) is not None and cfg.on_failure.webhook]
            names = await self.store.cue_fields([f[1] for f in hooks], ("name",))
            secrets = await self.store.webhook_secrets([f[2] for f in hooks]) if hooks else {}
            for eid, cue_id, acct, attempts, error in failed:
                cfg = cfgs.get(cue_id)
                if cfg is None:
                    continue
                # on_failure.email: queued by lease_reap.lua / missed.lua, sent by cuefast.notices
                if cfg.on_failure.webhook:
                    notice = {
                        "attempts": attempts,
                        "cue_id": cue_id,
                        "cue_name": names.get(cue_id, [None])[0],
                        "dashboard_url": self.settings.dashboard_url or None,
                        "event": "cue.failed",
                        "execution_id": eid,
                        "failed_at": fmt_offset(now),
                        "last_error": error[:500],
                        "last_http_status": None,
                    }
                    await self._notify(cfg.on_failure.webhook, canonical_json(notice), secrets.get(acct, ""))
        except Exception:
            log.exception("on_failure escalation failed")

    async def _notify(self, url: str, body: bytes, secret: str) -> None:
        if self._sender is None:
            from cuefast.dispatcher import Dispatcher  # the SSRF-checked sender

            sender = Dispatcher(self.store, self.settings, self.clock, concurrency=16, per_host=4)
            await sender.start()
            self._sender = sender
        ts = self.clock.now_us() // _US
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "CueAPI/1.0",
            "X-CueAPI-Signature": sign(secret, ts, body),
            "X-CueAPI-Timestamp": str(ts),
        }
        status, error, _ = await self._sender.send(
            url, "POST", body, headers, self.settings.notify_timeout_seconds
        )
        if status is None or not 200 <= status < 300:
            log.warning("on_failure webhook not accepted: %s", error or status)
