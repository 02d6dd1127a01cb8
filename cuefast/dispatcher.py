"""The dispatcher role: outbox stream → signed webhook deliveries (aiohttp), results in Lua.

Each process is one consumer of the ``dispatchers`` group on every partition's outbox.
An attempt is leased (``deliver_start.lua``) before the request and recorded with its
next state (``deliver_finish.lua``: success, pending_outcome, retrying with backoff, or
failed) before the stream entry is acknowledged — so a dispatcher killed mid-delivery
leaves a pending entry that another dispatcher takes over with XAUTOCLAIM once the
attempt is stale (at-least-once; the execution id lets receivers dedupe).

One pooled ``aiohttp.ClientSession`` per process, bounded concurrency per process and
per target host, redirects never followed. Every attempt reads the cue's current URL,
method, headers, timeout and retry policy and the account's current webhook secret.
The target is SSRF-checked at send time and the connection goes to a checked address.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from cuefast import metrics as m
from cuefast import ssrf
from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.errors import UnsafeURL
from cuefast.models import CONFIG_DECODER, CueConfig
from cuefast.outcomes import OutcomeService
from cuefast.signing import canonical_json, decode_payload, sign
from cuefast.store import Store, month_of
from cuefast.times import fmt_offset

log = logging.getLogger(__name__)

USER_AGENT = "CueAPI/1.0"
PROTECTED = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
MAX_ERROR = 500
MAX_RESPONSE_BODY = 65_536


def error_for_status(status: int) -> str:
    if status == 404:
        return "Webhook endpoint not found (404)"
    if status == 408:
        return "Webhook endpoint timed out"
    if status == 500:
        return "Webhook endpoint returned server error (500)"
    if 400 <= status < 500:
        return f"Webhook endpoint rejected request ({status})"
    if status >= 500:
        return f"Webhook endpoint server error ({status})"
    return f"Webhook delivery failed ({status})"


def next_retry_delay_us(cfg: CueConfig, attempt: int) -> int | None:
    """Backoff after failed attempt ``attempt`` (1-based), or None when none are left."""
    if attempt >= cfg.retry.max_attempts:
        return None
    backoff = cfg.retry.backoff_minutes
    minutes = backoff[min(attempt - 1, len(backoff) - 1)] if backoff else 1
    return minutes * 60_000_000


def request_headers(
    cfg: CueConfig,
    *,
    signature: str,
    ts: int,
    cue_id: str,
    execution_id: str,
    scheduled_for: str,
    attempt: int,
    has_body: bool,
) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    for name, value in cfg.callback.headers.items():
        low = name.lower()
        if low in PROTECTED or low.startswith("x-cueapi-"):
            continue  # custom headers never replace the signature or framing headers
        headers[name] = value
    if has_body:
        headers["Content-Type"] = "application/json"
    headers.update(
        {
            "X-CueAPI-Signature": signature,
            "X-CueAPI-Timestamp": str(ts),
            "X-CueAPI-Cue-Id": cue_id,
            "X-CueAPI-Execution-Id": execution_id,
            "X-CueAPI-Scheduled-For": scheduled_for,
            "X-CueAPI-Attempt": str(attempt),
        }
    )
    return headers


class CheckedResolver(AbstractResolver):
    """aiohttp resolver that only ever returns addresses that pass the SSRF rules."""

    def __init__(self, policy: ssrf.Policy, resolver: ssrf.Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # the host alone is judged here (the URL's scheme was checked before the request)
        ip = await ssrf.resolve_host(host, port, self.policy, self.resolver)
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return [
            {
                "hostname": host,
                "host": ip,
                "port": port,
                "family": fam,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class _Attempt:
    """One leased delivery attempt (what ``deliver_start.lua`` returned for it)."""

    __slots__ = (
        "account",
        "attempts",
        "cfg",
        "cue_id",
        "eid",
        "entry_id",
        "name",
        "p",
        "payload",
        "scheduled_for",
        "secret",
        "triggered_by",
    )

    def __init__(self, p: int, entry_id: str, eid: str, row: list[Any]) -> None:
        self.p, self.entry_id, self.eid = p, entry_id, eid
        self.cue_id = str(row[0])
        self.scheduled_for = int(row[1])
        self.attempts = int(row[2] or 0)
        self.payload = str(row[3])
        self.cfg = str(row[4])
        self.name = str(row[5])
        self.account = str(row[6])
        self.triggered_by = str(row[7])
        self.secret = ""


class Dispatcher:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        *,
        concurrency: int = 512,
        per_host: int = 128,
        batch: int = 1000,
        metrics: m.Metrics | None = None,
    ) -> None:
        self.metrics = metrics or m.Metrics()
        self.store = store
        self.settings = settings
        self.clock = clock
        self.concurrency = concurrency
        self.per_host = per_host
        self.batch = batch
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.policy = ssrf.Policy(
            allow_private=settings.allow_private_callbacks, allow_http=settings.allow_http_callbacks
        )
        self.outcomes = OutcomeService(store, clock, self.metrics)
        self.session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._usage: dict[tuple[str, str], int] = {}
        self._finishing: dict[int, list[tuple[list[str | int], asyncio.Future[str | None]]]] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    def stale_us(self, timeout_s: int) -> int:
        return max(self.settings.webhook_stale_seconds, timeout_s + 60) * 1_000_000

    async def start(self) -> None:
        await self.store.ensure_dispatch_groups()
        connector = aiohttp.TCPConnector(
            limit=self.concurrency,
            limit_per_host=self.per_host,
            resolver=CheckedResolver(self.policy),
            use_dns_cache=False,
        )
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def close(self) -> None:
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        try:
            await self.flush_usage()
        except Exception:
            log.exception("could not write execution counters at shutdown")
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def run(self, stop: asyncio.Event, *, block_ms: int = 1000, reclaim_every: float = 5.0) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time()
        next_flush = loop.time() + 1.0
        try:
            while not stop.is_set():
                try:
                    if loop.time() >= next_flush:
                        next_flush = loop.time() + 1.0
                        await self.flush_usage()
                    if loop.time() >= next_reclaim:
                        next_reclaim = loop.time() + reclaim_every
                        await self._spawn(
                            await self.store.reclaim_outbox(self.consumer, self._min_idle_ms(), self.batch)
                        )
                    entries = await self.store.read_outbox(self.consumer, self.batch, block_ms)
                    await self._spawn(entries)
                except Exception:
                    log.exception("dispatcher loop error")
                    await asyncio.sleep(1.0)
        finally:
            await self.close()  # graceful: in-flight deliveries finish and are recorded

    def _min_idle_ms(self) -> int:
        return max(self.settings.webhook_stale_seconds, self.settings.webhook_timeout_seconds + 60) * 1000

    async def _spawn(self, entries: list[tuple[int, str, str]]) -> None:
        """Start attempts for a batch (one script per partition), then send them concurrently."""
        by_partition: dict[int, list[tuple[str, str]]] = {}
        for p, entry_id, eid in entries:
            by_partition.setdefault(p, []).append((entry_id, eid))
        batches = await asyncio.gather(*(self.start_batch(p, items) for p, items in by_partition.items()))
        for batch in batches:
            for attempt in batch:
                await self._slots.acquire()
                task = asyncio.create_task(self._guarded(attempt))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _guarded(self, attempt: _Attempt) -> None:
        try:
            await self.attempt(attempt)
        except Exception:
            log.exception("delivery failed unexpectedly", extra={"execution_id": attempt.eid})
        finally:
            self._slots.release()

    async def start_batch(self, p: int, items: list[tuple[str, str]]) -> list[_Attempt]:
        """Lease the executions of these stream entries; entries of gone executions are acked."""
        now = self.clock.now_us()
        lease = self.stale_us(self.settings.webhook_timeout_seconds)
        wanted = [(entry_id, eid) for entry_id, eid in items if eid]
        for entry_id, eid in items:
            if not eid:
                await self.store.ack(p, entry_id)
        started = await self.store.deliver_start(p, [eid for _, eid in wanted], lease, now)
        attempts: list[_Attempt] = []
        for (entry_id, eid), res in zip(wanted, started, strict=True):
            if res == "gone":
                await self.store.ack(p, entry_id)
            elif res != "busy":  # "busy": a live attempt elsewhere; the entry stays pending
                attempts.append(_Attempt(p, entry_id, eid, res))
        secrets = await self.store.webhook_secrets([a.account for a in attempts])
        for a in attempts:
            a.secret = secrets.get(a.account, "")
        return attempts

    async def deliver(self, p: int, entry_id: str, eid: str) -> str | None:
        """One attempt for one execution; returns its new status (None if not deliverable)."""
        attempts = await self.start_batch(p, [(entry_id, eid)])
        return await self.attempt(attempts[0]) if attempts else None

    async def attempt(self, a: _Attempt) -> str | None:
        """Send one leased attempt and record its result with the next state."""
        cfg = CONFIG_DECODER.decode(a.cfg)
        attempt = a.attempts + 1
        scheduled_for = fmt_offset(a.scheduled_for) or ""
        method = cfg.callback.method
        body = b""
        if method != "GET":
            body = canonical_json(
                {
                    "attempt": attempt,
                    "cue_id": a.cue_id,
                    "execution_id": a.eid,
                    "name": a.name,
                    "payload": decode_payload(a.payload),
                    "scheduled_for": scheduled_for,
                }
            )
        ts = self.clock.now_us() // 1_000_000
        headers = request_headers(
            cfg,
            signature=sign(a.secret, ts, body),
            ts=ts,
            cue_id=a.cue_id,
            execution_id=a.eid,
            scheduled_for=scheduled_for,
            attempt=attempt,
            has_body=method != "GET",
        )
        timeout = cfg.delivery.timeout_seconds if cfg.delivery else self.settings.webhook_timeout_seconds
        if attempt == 1:
            self.metrics.observe_us(m.LATENESS, ("webhook",), self.clock.now_us() - a.scheduled_for)
        sent = time.perf_counter_ns()
        status, error, response = await self.send(cfg.callback.url or "", method, body, headers, timeout)
        self.metrics.observe_us(m.WEBHOOK_LATENCY, (), (time.perf_counter_ns() - sent) // 1000)
        ok = status is not None and 200 <= status < 300
        done_at = self.clock.now_us()
        delay = None if ok else next_retry_delay_us(cfg, attempt)
        deadline = None
        if ok and cfg.delivery is not None and cfg.delivery.outcome_deadline_seconds is not None:
            deadline = done_at + cfg.delivery.outcome_deadline_seconds * 1_000_000
        recurring = cfg.schedule.type == "recurring"
        new_status = await self._finish(
            a.p,
            [
                a.eid,
                "ok" if ok else "fail",
                "" if status is None else status,
                "" if ok else error,
                "" if delay is None else done_at + delay,
                "" if deadline is None else deadline,
                a.entry_id,
                1 if a.triggered_by == "scheduled" and not recurring else 0,
                1 if cfg.on_failure.pause and recurring else 0,
            ],
        )
        self.metrics.inc(m.WEBHOOK_ATTEMPTS, (new_status or "none",))
        if new_status in ("success", "pending_outcome"):
            self.metrics.inc(m.EXECUTIONS_DELIVERED, ("webhook",))
            month = (a.account, month_of(done_at))
            self._usage[month] = self._usage.get(month, 0) + 1
            if self.settings.response_body_outcomes and response:
                await self.outcomes.record_from_response(a.eid, response)
        elif new_status == "failed":
            self.metrics.inc(m.EXECUTIONS_FAILED, ("webhook", "delivery"))
            self._on_failure(
                cfg, a.cue_id, a.name, a.eid, attempt, error, status, a.account, a.secret, done_at
            )
            try:  # usage `outcomes.failed` (§13.1): a final delivery failure, no outcome reported
                await self.store.count_failed_executions(a.p, [a.eid])
            except Exception:
                log.warning("usage counter not written", extra={"execution_id": a.eid})
        return new_status

    async def _finish(self, p: int, row: list[str | int]) -> str | None:
        """Group commit: results that arrive in the same loop turn share one script call."""
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        queue = self._finishing.setdefault(p, [])
        queue.append((row, fut))
        if len(queue) == 1:
            asyncio.get_running_loop().call_soon(self._start_flush, p)
        return await fut

    def _start_flush(self, p: int) -> None:
        task = asyncio.create_task(self._flush_finishes(p))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_finishes(self, p: int) -> None:
        batch = self._finishing.pop(p, [])
        try:
            statuses = await self.store.deliver_finish(p, [row for row, _ in batch], self.clock.now_us())
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), status in zip(batch, statuses, strict=True):
            if not fut.done():
                fut.set_result(status)

    async def flush_usage(self) -> None:
        """Write the aggregated monthly execution counts (every second, and at shutdown)."""
        counts, self._usage = self._usage, {}
        try:
            await self.store.count_executions(counts)
        except Exception:
            for key, n in counts.items():  # keep them for the next flush
                self._usage[key] = self._usage.get(key, 0) + n
            raise

    def _on_failure(
        self,
        cfg: CueConfig,
        cue_id: str,
        name: str,
        eid: str,
        attempts: int,
        error: str,
        status: int | None,
        account_id: str,
        secret: str,
        now: int,
    ) -> None:
        """on_failure escalation (§12.1); the pause already happened with the final result."""
        if cfg.on_failure.email:
            log.warning(
                "cue %s failed (execution %s): %s; on_failure e-mail to the account owner",
                cue_id,
                eid,
                error,
                extra={"cue_id": cue_id, "execution_id": eid, "account_id": account_id},
            )
        if cfg.on_failure.webhook:
            notice = {
                "attempts": attempts,
                "cue_id": cue_id,
                "cue_name": name,
                "dashboard_url": self.settings.dashboard_url or None,
                "event": "cue.failed",
                "execution_id": eid,
                "failed_at": fmt_offset(now),
                "last_error": error[:MAX_ERROR],
                "last_http_status": status,
            }
            task = asyncio.create_task(self._notify(cfg.on_failure.webhook, canonical_json(notice), secret))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _notify(self, url: str, body: bytes, secret: str) -> None:
        ts = self.clock.now_us() // 1_000_000
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-CueAPI-Signature": sign(secret, ts, body),
            "X-CueAPI-Timestamp": str(ts),
        }
        status, error, _ = await self.send(url, "POST", body, headers, self.settings.notify_timeout_seconds)
        if status is None or not 200 <= status < 300:
            log.warning("on_failure webhook not accepted: %s", error or status)

    async def send(
        self, url: str, method: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> tuple[int | None, str, bytes]:
        """(HTTP status or None, error text for a failed attempt, start of a 2xx body)."""
        assert self.session is not None, "start() first"
        try:
            await ssrf.resolve_target(url, self.policy)
            async with self.session.request(
                method,
                url,
                data=body if method != "GET" else None,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                status = resp.status
                if 200 <= status < 300:
                    return status, "", await resp.content.read(MAX_RESPONSE_BODY)
                return status, error_for_status(status), b""
        except UnsafeURL as exc:
            return None, exc.message, b""
        except TimeoutError:
            return None, "Webhook endpoint timed out", b""
        except (
            aiohttp.ClientConnectorError,
            aiohttp.ClientSSLError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
        ):
            return None, "Could not connect to webhook endpoint", b""
        except aiohttp.ClientError as exc:
            return None, (str(exc) or type(exc).__name__)[:MAX_ERROR], b""
