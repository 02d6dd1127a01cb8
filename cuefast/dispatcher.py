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
import uuid

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from cuefast import ssrf
from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.errors import UnsafeURL
from cuefast.models import CONFIG_DECODER, CueConfig
from cuefast.outcomes import OutcomeService
from cuefast.signing import canonical_json, decode_payload, sign
from cuefast.store import Store
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

    def __init__(self, policy: ssrf.Policy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = await ssrf.resolve_target(f"http://{host}:{port or 80}/", self.policy)
        fam = socket.AF_INET6 if ":" in target.ip else socket.AF_INET
        return [
            {
                "hostname": host,
                "host": target.ip,
                "port": port,
                "family": fam,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class Dispatcher:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        *,
        concurrency: int = 512,
        per_host: int = 128,
        batch: int = 256,
    ) -> None:
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
        self.outcomes = OutcomeService(store, clock)
        self.session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()

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
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def run(self, stop: asyncio.Event, *, block_ms: int = 1000, reclaim_every: float = 5.0) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time()
        try:
            while not stop.is_set():
                try:
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
        for p, entry_id, eid in entries:
            await self._slots.acquire()
            task = asyncio.create_task(self._guarded(p, entry_id, eid))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _guarded(self, p: int, entry_id: str, eid: str) -> None:
        try:
            await self.deliver(p, entry_id, eid)
        except Exception:
            log.exception("delivery failed unexpectedly", extra={"execution_id": eid})
        finally:
            self._slots.release()

    async def deliver(self, p: int, entry_id: str, eid: str) -> str | None:
        """One attempt for one execution; returns its new status (None if not deliverable)."""
        if not eid:
            await self.store.ack(p, entry_id)
            return None
        now = self.clock.now_us()
        started = await self.store.deliver_start(
            p, eid, self.stale_us(self.settings.webhook_timeout_seconds), now
        )
        if started == "busy":  # a live attempt elsewhere; the entry stays pending for later
            return None
        if started == "gone":
            await self.store.ack(p, entry_id)
            return None
        cue_id, sf, att, payload, cfg_raw, name, acct, tb = started
        cfg = CONFIG_DECODER.decode(cfg_raw)
        attempt = int(att) + 1
        secret = await self.store.webhook_secret(str(acct)) or ""
        scheduled_for = fmt_offset(int(sf)) or ""
        method = cfg.callback.method
        body = b""
        if method != "GET":
            body = canonical_json(
                {
                    "attempt": attempt,
                    "cue_id": cue_id,
                    "execution_id": eid,
                    "name": name,
                    "payload": decode_payload(payload),
                    "scheduled_for": scheduled_for,
                }
            )
        ts = self.clock.now_us() // 1_000_000
        headers = request_headers(
            cfg,
            signature=sign(secret, ts, body),
            ts=ts,
            cue_id=str(cue_id),
            execution_id=eid,
            scheduled_for=scheduled_for,
            attempt=attempt,
            has_body=method != "GET",
        )
        timeout = cfg.delivery.timeout_seconds if cfg.delivery else self.settings.webhook_timeout_seconds
        status, error, response = await self.send(cfg.callback.url or "", method, body, headers, timeout)
        ok = status is not None and 200 <= status < 300
        done_at = self.clock.now_us()
        delay = None if ok else next_retry_delay_us(cfg, attempt)
        deadline = None
        if ok and cfg.delivery is not None and cfg.delivery.outcome_deadline_seconds is not None:
            deadline = done_at + cfg.delivery.outcome_deadline_seconds * 1_000_000
        recurring = cfg.schedule.type == "recurring"
        new_status = await self.store.deliver_finish(
            p,
            eid,
            ok=ok,
            http_status=status,
            error="" if ok else error,
            next_retry=None if delay is None else done_at + delay,
            deadline=deadline,
            entry_id=entry_id,
            decides_once_cue=tb == "scheduled" and not recurring,
            pause_on_failure=cfg.on_failure.pause and recurring,
            now_us=done_at,
        )
        if new_status in ("success", "pending_outcome"):
            await self.store.count_execution(str(acct), done_at)
            if self.settings.response_body_outcomes and response:
                await self.outcomes.record_from_response(eid, response)
        elif new_status == "failed":
            self._on_failure(
                cfg, str(cue_id), str(name), eid, attempt, error, status, str(acct), secret, done_at
            )
        return new_status

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
