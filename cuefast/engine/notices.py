"""Notices: alert and on_failure webhooks, on_failure e-mails and verification checks (stream).

Alert webhooks (CONTRACT.md §12.6) and on_failure webhooks and e-mails (§12.1, §12.2) are
sent from the dispatcher role through the process's ``Webhooks`` (engine/webhooks.py).

The Lua script that records an event queues the notice on its partition's ``notices`` stream
in the same call (``lua/lib/alert.lua``: an alert, or a final failure's on_failure webhook and
e-mail, whichever transport failed), so a notice is never lost between the event and its
delivery, not even by a crash. Any number of senders share the ``notifiers`` consumer group; an entry is
acknowledged only once it was sent, given up on, or rescheduled (``notices_finish.lua``), and
entries left by a sender that died are taken over after ``RECLAIM_IDLE_MS``. A failed send is
tried again after 10 s, 60 s and 300 s (``MAX_ATTEMPTS`` in all); receivers dedupe on
``X-CueAPI-Alert-Id`` (alerts) or the body's ``execution_id`` (``cue.failed``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.engine.checks import Checker
from cuefast.engine.mail import InsecureTransport, Mailer
from cuefast.engine.webhooks import MAX_ERROR, Webhooks, cue_failed, signed_headers
from cuefast.errors import ConfigError
from cuefast.models import CONFIG_DECODER
from cuefast.services.alerts import webhook_body
from cuefast.services.outcomes import OutcomeService
from cuefast.store import Store
from cuefast.store.notices import Notice
from cuefast.store.outage import Outage
from cuefast.times import fmt_offset

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
BACKOFF_S = (10, 60, 300)
MAILS_PER_HOUR = 10
RECLAIM_IDLE_MS = 120_000
STEP_MAX = 256
"""new notices one step reads at most (each partition's stream its share; as many again when it
takes over a dead sender's): all are handled, IN_FLIGHT at once, before the next read"""
IN_FLIGHT = 64
"""notices being sent or checked at once per process: they share the dispatcher's outbound
connections with webhook deliveries"""
SWEEP_S = 5.0
"""retries are moved back at least this often (retries this sender queued: when due)"""
_US = 1_000_000
_HOUR_US = 3600 * _US


class NoticeSender:
    def __init__(self, store: Store, settings: Settings, clock: Clock, webhooks: Webhooks) -> None:
        self.store = store
        self.outage = Outage(log, "notice sender")
        self.settings = settings
        self.clock = clock
        self._retry_due: int | None = None
        """the earliest retry this sender queued and has not moved back yet (µs)"""
        self.webhooks = webhooks
        self.checks = Checker(store, webhooks, OutcomeService(store, clock))
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.mailer: Mailer | None = None
        if settings.smtp_url:
            try:
                self.mailer = Mailer(settings.smtp_url, settings.notify_timeout_seconds)
            except ConfigError as exc:  # a bad mail setting never stops alert webhooks
                log.error("on_failure e-mail disabled: %s", exc)

    async def start(self) -> None:
        await self.store.notices.ensure_groups()

    async def run(self, stop: asyncio.Event, *, block_ms: int = 1000, reclaim_every: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time() + reclaim_every
        next_sweep = loop.time()
        started = False  # the groups made: retried with the passes (Redis may be down at start)
        while not stop.is_set():
            try:
                if not started:
                    await self.start()
                    started = True
                reclaim = loop.time() >= next_reclaim
                if reclaim:
                    next_reclaim = loop.time() + reclaim_every
                own_due = self._retry_due is not None and self.clock.now_us() >= self._retry_due
                move = own_due or loop.time() >= next_sweep
                if move:  # an idle sender runs the partitions' move scripts every SWEEP_S only
                    next_sweep, self._retry_due = loop.time() + SWEEP_S, None
                await self.step(block_ms=block_ms, reclaim=reclaim, move=move)
                self.outage.ok()
            except Exception as exc:
                self.outage.failed(exc, "notice sender loop error")
                await asyncio.sleep(1.0)

    async def step(
        self, *, block_ms: int = 0, reclaim: bool = False, idle_ms: int = RECLAIM_IDLE_MS, move: bool = True
    ) -> int:
        """Requeue due retries (with ``move``), take over notices idle for ``idle_ms`` in a dead
        sender's hands (with ``reclaim``), then send what is queued, concurrently; returns
        notices handled."""
        if move:
            await self.store.notices.move_due(self.clock.now_us())
        share = max(1, STEP_MAX // self.store.keys.partitions)
        entries = await self.store.notices.reclaim(self.consumer, idle_ms, share) if reclaim else []
        entries += await self.store.notices.read(self.consumer, share, block_ms)
        await asyncio.gather(*(self._bounded(e) for e in entries))
        return len(entries)

    async def _bounded(self, notice: Notice) -> None:
        async with self._in_flight:
            await self.handle(notice)

    async def handle(self, notice: Notice) -> None:
        """Send one notice; finish its stream entry, or queue its retry with backoff."""
        p, entry_id, kind, ident, attempt, at = notice
        try:
            if kind == "a":
                done = await self._alert(p, ident)
            elif kind == "w":
                done = await self._failure_webhook(ident, at)
            elif kind == "f":
                done = await self._mail(ident, attempt, at)
            elif kind == "v":
                done = await self.checks.run(ident, attempt >= MAX_ATTEMPTS)
            else:
                done = True
        except InsecureTransport as exc:  # a setting to fix, not a crash: no traceback
            log.error("on_failure e-mail not sent: %s", exc, extra={"notice": kind, "id": ident})
            done = False
        except Exception:
            log.exception("notice not sent", extra={"notice": kind, "id": ident})
            done = False
        if done or attempt >= MAX_ATTEMPTS:
            if not done:
                log.warning("notice given up after %d attempts", attempt, extra={"notice": kind, "id": ident})
            await self.store.notices.finish(p, entry_id)
        else:
            due = self.clock.now_us() + BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1] * _US
            retry = f"{kind}|{ident}|{attempt + 1}" + (f"|{at}" if at else "")
            await self.store.notices.finish(p, entry_id, retry, due)
            self._retry_due = due if self._retry_due is None else min(self._retry_due, due)

    async def _alert(self, p: int, alert_id: str) -> bool:
        """POST the alert to the account's alert webhook (§12.6); True when done."""
        row = await self.store.alerts.get(p, alert_id)
        if row is None:
            return True
        url, secret, _ = await self.store.accounts.notice_targets(row.get("acct", ""))
        if not url:
            return True  # no alert webhook configured: the alert stays listed in GET /v1/alerts
        body = webhook_body(row)
        cueapi = {"X-CueAPI-Alert-Id": alert_id, "X-CueAPI-Alert-Type": row.get("type", "")}
        headers = signed_headers(secret, self.clock.now_us() // _US, body, cueapi)
        sent = await self.webhooks.send(url, "POST", body, headers, self.settings.notify_timeout_seconds)
        if sent.ok:
            return True
        log.warning("alert webhook not accepted: %s", sent.error or sent.status, extra={"alert_id": alert_id})
        return False

    async def _failure_webhook(self, execution_id: str, at: int) -> bool:
        """The on_failure webhook of a finally failed execution (§12.2), to the cue's current
        ``on_failure.webhook``, signed with the account's current webhook secret; True when
        done (accepted, or nothing to send)."""
        h = await self.store.executions.get(execution_id)
        if h is None:
            return True
        cue = await self.store.cues.get(h.get("cue", ""))
        url = CONFIG_DECODER.decode(cue["cfg"]).on_failure.webhook if cue is not None else None
        if cue is None or not url:
            return True
        acct = h.get("acct", "")
        secret = (await self.store.accounts.webhook_secrets([acct])).get(acct, "")
        if secret is None:  # its shard is down: the notice is retried as a failed send would be
            log.warning(
                "on_failure webhook not signed: the account's shard is down", extra={"account_id": acct}
            )
            return False
        now = self.clock.now_us()
        body, headers = cue_failed(
            h,
            execution_id=execution_id,
            cue_name=cue.get("name"),
            failed_at_us=at or int(h.get("ua") or now),
            dashboard_url=self.settings.dashboard_url,
            secret=secret,
            ts=now // _US,
        )
        sent = await self.webhooks.send(url, "POST", body, headers, self.settings.notify_timeout_seconds)
        if sent.ok:
            return True
        log.warning(
            "on_failure webhook not accepted: %s",
            sent.error or sent.status,
            extra={"cue_id": h.get("cue", ""), "execution_id": execution_id},
        )
        return False

    async def _mail(self, execution_id: str, attempt: int, at: int = 0) -> bool:
        """The on_failure e-mail of a finally failed execution (§12.1); True when done."""
        h = await self.store.executions.get(execution_id)
        if h is None:
            return True
        cue = await self.store.cues.get(h.get("cue", ""))
        if cue is None or not CONFIG_DECODER.decode(cue["cfg"]).on_failure.email:
            return True
        acct, cue_id = h.get("acct", ""), h.get("cue", "")
        error = (h.get("em") or "")[:MAX_ERROR]
        extra = {"cue_id": cue_id, "execution_id": execution_id, "account_id": acct}
        if self.mailer is None:
            log.warning(
                "cue %s failed (execution %s): %s; on_failure e-mail (no SMTP configured)",
                cue_id,
                execution_id,
                error,
                extra=extra,
            )
            return True
        now = self.clock.now_us()
        if attempt == 1 and await self.store.notices.count_mail(acct, now // _HOUR_US) > MAILS_PER_HOUR:
            log.warning("on_failure e-mail skipped: %d per hour sent", MAILS_PER_HOUR, extra=extra)
            return True
        _, _, to = await self.store.accounts.notice_targets(acct)
        if not to:
            return True
        name = cue.get("name", cue_id)
        lines = [
            f"Cue {name} ({cue_id}) failed.",
            "",
            f"Execution: {execution_id}",
            f"Status: {h.get('st', '')}",
            f"Attempts: {h.get('att') or 0}",
            f"Last error: {error}",
            f"Failed at: {fmt_offset(at or int(h.get('ua') or now))}",
        ]
        if self.settings.dashboard_url:
            lines.append(f"Dashboard: {self.settings.dashboard_url}")
        await self.mailer.send(
            self.mailer.message(to, f"[cuefast] Cue {name} failed", "\n".join(lines) + "\n")
        )
        return True
