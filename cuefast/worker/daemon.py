"""The worker daemon: pull worker-transport executions in batches, run handlers, report outcomes.

::

    from cuefast import Worker

    worker = Worker(api_key="cue_sk_…", base_url="http://127.0.0.1:8000", concurrency=8)

    @worker.handler("etl")
    async def etl(payload, ctx):          # sync functions work too (run in threads)
        rows = await load(payload["source"])
        return {"result": f"{rows} rows", "external_id": ctx.execution_id}

    worker.run()                          # or: cuefast worker --app mymodule:worker

Handlers are looked up by the execution's ``task`` (the payload's ``task``). They receive
``(payload, context)`` (or just ``payload`` when they take one argument). The return value
is the outcome: ``None`` → success; a ``str`` → ``result``; an ``Outcome``, or a dict whose
keys are all outcome fields (``success``, ``result``, ``error``, ``metadata``,
``external_id``, ``result_url``, ``artifacts``, ``summary``) → those fields; any other value
→ ``result`` as JSON text. An exception → a failed outcome whose ``error`` is its message.

How it runs (one asyncio loop):

* **claim loop** — ``POST /v1/worker/claim`` (long poll, ``wait_seconds``) for as many
  executions as there are free slots (``concurrency`` running + ``prefetch`` waiting), only
  for the tasks it has handlers for;
* **outcomes** are queued and sent in batches (``POST /v1/worker/outcomes``, ≤ 500 per call)
  as soon as the previous batch is answered or ``flush_interval`` has passed; an outcome is
  never dropped because the server is away — it is retried until recorded;
* **leases** of running and waiting executions are extended together
  (``POST /v1/worker/leases``) every third of the lease; a lease reported lost sets
  ``context.lease_lost`` (the outcome is still reported; the server accepts late ones);
* **registry heartbeat** (``POST /v1/worker/heartbeat`` with the handler names) at start
  and every ``heartbeat_interval`` (30 s);
* **server away**: every loop retries with exponential backoff (0.2 s doubling to
  ``max_backoff``, jittered) and logs once when it is lost and once when it is back;
  a 401 stops the worker (exit code 1);
* **shutdown** (SIGINT/SIGTERM, or ``stop()``): no new claims; executions claimed but not
  started are released (claimable again at once); running handlers get ``grace_seconds``
  to finish and their outcomes are flushed; after that (or on a second signal) async
  handlers are cancelled, and the executions still running are released.

Configuration: arguments, else the environment (``CUEFAST_API_KEY``, ``CUEFAST_BASE_URL``,
``CUEFAST_WORKER_ID``, ``CUEFAST_WORKER_CONCURRENCY``, ``CUEFAST_WORKER_PREFETCH``,
``CUEFAST_WORKER_GRACE_SECONDS``, ``CUEFAST_WORKER_WAIT_SECONDS``, ``CUEFAST_WORKER_AGENT``),
else the defaults; ``cuefast worker`` flags override both. Imports only the SDK.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import platform
import random
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from cuefast.client import AsyncCueFast
from cuefast.client.errors import (
    AuthenticationError,
    CueAPIConnectionError,
    CueAPIError,
    CueAPIServerError,
    RateLimitError,
)
from cuefast.client.models import ClaimedExecution, LeaseExtension, OutcomeReport
from cuefast.worker.handlers import (
    Context,
    Handler,
    Outcome,
    Threads,
    failure_report,
    minimal_report,
    outcome_report,
    positional_arity,
)

__all__ = ["Context", "Outcome", "Worker", "WorkerStopped", "load_app", "outcome_report"]

log = logging.getLogger("cuefast.worker.daemon")

MAX_BATCH = 500
MAX_HANDLERS = 100
"""Tasks one daemon may serve: the server accepts at most this many per claim and per
registry heartbeat (``work_input``, ``worker_registry``)."""


class WorkerStopped(Exception):
    """The worker stopped for a reason that needs attention (e.g. an invalid API key)."""


def default_worker_id() -> str:
    """``<hostname>-<pid>``: unique per process, so the claims of a daemon that crashed are
    reclaimed once their lease expires (the server keeps renewing the leases of a worker id
    that is still heartbeating — a restarted daemon reusing the id would hold them for
    ``CUEFAST_WORKER_MAX_CLAIM_SECONDS``)."""
    return f"{platform.node() or 'cuefast-worker'}-{os.getpid()}"


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _number(environ: Mapping[str, str], name: str, kind: type[int] | type[float]) -> Any:
    raw = _env(environ, name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


class _Backoff:
    """Exponential backoff with jitter, and a lost/back log line per outage."""

    def __init__(self, what: str, cap: float) -> None:
        self.what = what
        self.cap = cap
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        self.failures += 1
        if isinstance(exc, RateLimitError) and exc.retry_after:
            delay = float(exc.retry_after)
        else:
            base = min(self.cap, 0.2 * 2 ** (self.failures - 1))
            delay = base / 2 + random.uniform(0, base / 2)  # noqa: S311 (jitter, not a secret)
        if self.failures == 1:
            log.warning("%s failed (%s); retrying with backoff", self.what, exc)
        else:
            log.debug("%s failed again (%s); next try in %.1fs", self.what, exc, delay)
        return delay

    def ok(self) -> None:
        if self.failures:
            log.info("%s works again after %d failed tries", self.what, self.failures)
        self.failures = 0


_RETRYABLE = (CueAPIConnectionError, CueAPIServerError, RateLimitError)


@dataclass(slots=True)
class _Job:
    item: ClaimedExecution
    context: Context
    task: asyncio.Task[None] | None = None
    abandoned: bool = False


@dataclass
class _Stats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    reported: int = 0
    released: int = 0
    lost: int = 0
    claim_calls: int = 0
    outcome_calls: int = 0
    started_at: float = field(default_factory=time.monotonic)


class Worker:
    """A worker daemon; register handlers with ``@worker.handler("task")``, then ``run()``."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        worker_id: str | None = None,
        concurrency: int | None = None,
        *,
        agent: str | None = None,
        prefetch: int | None = None,
        lease_seconds: int | None = None,
        wait_seconds: float | None = None,
        grace_seconds: float | None = None,
        heartbeat_interval: float = 30.0,
        flush_interval: float = 0.005,
        max_backoff: float = 10.0,
        sweep_orphans: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        explicit_id = bool(worker_id or _env(env, "CUEFAST_WORKER_ID"))
        self.api_key = api_key or _env(env, "CUEFAST_API_KEY") or ""
        self.base_url = base_url or _env(env, "CUEFAST_BASE_URL") or "http://127.0.0.1:8000"
        self.worker_id = worker_id or _env(env, "CUEFAST_WORKER_ID") or default_worker_id()
        self.concurrency = concurrency or _number(env, "CUEFAST_WORKER_CONCURRENCY", int) or 8
        self.prefetch = (
            prefetch if prefetch is not None else _number(env, "CUEFAST_WORKER_PREFETCH", int) or 0
        )
        self.agent = agent or _env(env, "CUEFAST_WORKER_AGENT")
        self.lease_seconds = lease_seconds
        self.wait_seconds = (
            wait_seconds if wait_seconds is not None else _number(env, "CUEFAST_WORKER_WAIT_SECONDS", float)
        )
        if self.wait_seconds is None:
            self.wait_seconds = 5.0
        grace = (
            grace_seconds
            if grace_seconds is not None
            else _number(env, "CUEFAST_WORKER_GRACE_SECONDS", float)
        )
        self.grace_seconds = 30.0 if grace is None else grace
        self.heartbeat_interval = heartbeat_interval
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.sweep_orphans = (not explicit_id) if sweep_orphans is None else sweep_orphans
        """After a claim whose answer was lost, release what the server says this worker id
        holds beyond what it knows. Safe only when no other process uses the same worker id:
        on by default for the default (per-process) id, off for an id you chose."""
        self.handlers: dict[str, Handler] = {}
        self._arity: dict[str, int] = {}
        self._is_async: dict[str, bool] = {}
        self.stats = _Stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._force: asyncio.Event | None = None

    # --- configuration ----------------------------------------------------------------

    def handler(self, task: str) -> Callable[[Handler], Handler]:
        """Decorator: run ``fn(payload, context)`` for executions whose task is ``task``."""

        def register(fn: Handler) -> Handler:
            self.add_handler(task, fn)
            return fn

        return register

    def add_handler(self, task: str, fn: Handler) -> None:
        if not task:
            raise ValueError("task name must not be empty")
        self.handlers[task] = fn
        self._is_async[task] = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )
        self._arity[task] = positional_arity(fn)

    def configure(self, **options: Any) -> Worker:
        """Override settings (the CLI's flags); ``None`` values are ignored."""
        for name, value in options.items():
            if value is None:
                continue
            if not hasattr(self, name) or name.startswith("_") or name in ("handlers", "stats"):
                raise TypeError(f"unknown worker option {name!r}")
            setattr(self, name, value)
        if options.get("worker_id") is not None and options.get("sweep_orphans") is None:
            self.sweep_orphans = False  # an id chosen by the user may be shared
        return self

    def _validate(self) -> None:
        if not self.api_key:
            raise ValueError("api_key is required (argument, --api-key or CUEFAST_API_KEY)")
        if not self.handlers:
            raise ValueError("the worker has no handlers (use @worker.handler('task'))")
        if len(self.handlers) > MAX_HANDLERS:  # the server refuses more in claims and heartbeats
            raise ValueError(f"a worker serves at most {MAX_HANDLERS} tasks; run more workers")
        if not 1 <= len(self.worker_id) <= 255:
            raise ValueError("worker_id must be 1-255 characters")
        if self.concurrency < 1 or self.prefetch < 0:
            raise ValueError("concurrency must be ≥ 1 and prefetch ≥ 0")
        if not 0 <= float(self.wait_seconds or 0) <= 30:
            raise ValueError("wait_seconds must be between 0 and 30")

    # --- running ------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGINT/SIGTERM (a second signal skips the grace period). Returns the
        exit code: 0 after a clean shutdown, 1 when stopped by an error (e.g. invalid key)."""
        try:
            import uvloop

            runner: Callable[[Awaitable[None]], None] = uvloop.run  # type: ignore[assignment]
        except ImportError:
            runner = asyncio.run  # type: ignore[assignment]

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_signal, sig)
            await self.serve()

        try:
            runner(main())
        except WorkerStopped as exc:
            log.critical("worker stopped: %s", exc)
            return 1
        return 0

    def _on_signal(self, sig: int) -> None:
        if self._stopping is not None and self._stopping.is_set():
            log.warning("second %s: stopping now", signal.Signals(sig).name)
            assert self._force is not None
            self._force.set()
        else:
            log.info("%s: shutting down gracefully", signal.Signals(sig).name)
            self.stop()

    def stop(self) -> None:
        """Ask the worker to shut down gracefully (safe from any thread)."""
        loop, stopping = self._loop, self._stopping
        if loop is None or stopping is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            stopping.set()
        else:
            loop.call_soon_threadsafe(stopping.set)

    async def serve(self, client: AsyncCueFast | None = None) -> None:
        """Run in the current event loop until ``stop()``; raises ``WorkerStopped`` on a fatal error."""
        self._validate()
        own_client = client is None
        self.client = client or AsyncCueFast(
            self.api_key, base_url=self.base_url, max_retries=0, timeout=30.0, max_connections=32
        )
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._fatal: BaseException | None = None
        self._running: dict[str, _Job] = {}
        self._waiting: collections.deque[ClaimedExecution] = collections.deque()
        self._outbox: list[OutcomeReport] = []
        self._outbox_ready = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._jobs_done = asyncio.Event()
        self._flushing = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._reporting: set[str] = set()
        self._sweep_guard: set[str] | None = None
        self._orphans_possible = False
        self._lease = float(self.lease_seconds or 900)
        self._threads = Threads(self.concurrency)
        self.stats = _Stats()
        tasks = sorted(self.handlers)
        log.info(
            "worker %s starting: handlers %s, concurrency %d, prefetch %d, server %s",
            self.worker_id,
            ",".join(tasks),
            self.concurrency,
            self.prefetch,
            self.client.base_url,
            extra={"worker_id": self.worker_id},
        )
        background = [
            asyncio.create_task(self._registry_loop(tasks), name="cuefast-worker-registry"),
            asyncio.create_task(self._lease_loop(), name="cuefast-worker-leases"),
            asyncio.create_task(self._flush_loop(), name="cuefast-worker-outcomes"),
        ]
        claimer = asyncio.create_task(self._claim_loop(tasks), name="cuefast-worker-claim")
        for loop_task in (*background, claimer):
            loop_task.add_done_callback(self._loop_ended)
        try:
            await self._stopping.wait()
            await self._shutdown(claimer)
        finally:
            for t in (*background, claimer):
                t.cancel()
            await asyncio.gather(*background, claimer, return_exceptions=True)
            self._threads.close()
            if own_client:
                await self.client.aclose()
            self._loop = None
            log.info(
                "worker %s stopped: %d claimed, %d succeeded, %d failed, %d released",
                self.worker_id,
                self.stats.claimed,
                self.stats.succeeded,
                self.stats.failed,
                self.stats.released,
                extra={"worker_id": self.worker_id},
            )
        if self._fatal is not None:
            raise WorkerStopped(str(self._fatal)) from self._fatal

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A loop that dies of an unexpected error must not leave the daemon running half-dead
        (e.g. claiming work whose outcomes are never reported): log it and stop gracefully
        with an error (exit code 1), so that a process manager restarts the daemon."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None and self._stopping is not None
        log.critical("%s failed unexpectedly; stopping the worker", task.get_name(), exc_info=exc)
        if self._fatal is None:
            self._fatal = exc
        self._stopping.set()

    def _die(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        assert self._stopping is not None and self._force is not None
        self._stopping.set()
        self._force.set()

    async def _pause(self, seconds: float, until: asyncio.Event | None = None) -> None:
        """Sleep, waking early when ``until`` (default: stopping) is set."""
        event = until or self._stopping
        assert event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    # --- claiming and running ------------------------------------------------------------

    async def _claim_loop(self, tasks: list[str]) -> None:
        backoff = _Backoff("claim", self.max_backoff)
        stopping = self._stopping
        assert stopping is not None
        while not stopping.is_set():
            room = self.concurrency + self.prefetch - len(self._running) - len(self._waiting)
            if room <= 0:
                self._slot_free.clear()
                await self._pause(3600, self._slot_free)
                continue
            self.stats.claim_calls += 1
            try:
                batch = await self.client.worker.claim(
                    self.worker_id,
                    tasks=tasks,
                    agent=self.agent,
                    max=min(room, MAX_BATCH),
                    wait_seconds=float(self.wait_seconds or 0),
                    lease_seconds=self.lease_seconds,
                )
            except AuthenticationError as exc:
                self._die(exc)
                return
            except CueAPIError as exc:
                if _maybe_processed(exc):
                    self._orphans_possible = True
                await self._pause(backoff.failed(exc))
                continue
            backoff.ok()
            if self._orphans_possible and self.sweep_orphans:
                self._orphans_possible = False
                await self._sweep_orphans()
            self._lease = float(batch.lease_seconds or self._lease)
            if not batch.executions:
                if not self.wait_seconds:
                    await self._pause(0.5)
                continue
            self.stats.claimed += len(batch.executions)
            if stopping.is_set():  # claimed while shutting down: give them back
                await self._release([e.execution_id for e in batch.executions], "claimed during shutdown")
                return
            self._waiting.extend(batch.executions)
            self._start_waiting()

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self.concurrency:
            item = self._waiting.popleft()
            if item.task not in self.handlers:  # not ours (cannot happen with the tasks filter)
                side = asyncio.create_task(self._release([item.execution_id], f"no handler: {item.task!r}"))
                self._side_tasks.add(side)
                side.add_done_callback(self._side_tasks.discard)
                continue
            ctx = Context(
                execution_id=item.execution_id,
                cue_id=item.cue_id,
                cue_name=item.cue_name,
                task=item.task,
                scheduled_for=item.scheduled_for,
                attempt=item.attempt,
                payload=item.payload,
                worker_id=self.worker_id,
                lease_expires_at=item.lease_expires_at,
            )
            job = _Job(item, ctx)
            self._running[item.execution_id] = job
            job.task = asyncio.create_task(self._run_job(job))

    async def _run_job(self, job: _Job) -> None:
        item, ctx = job.item, job.context
        task = item.task or ""
        extra = {"execution_id": item.execution_id, "cue_id": item.cue_id, "task": task}
        log.debug("running %s", task, extra=extra)
        fn = self.handlers[task]
        args: tuple[Any, ...] = (item.payload, ctx) if self._arity[task] >= 2 else (item.payload,)
        started = time.monotonic()
        report: OutcomeReport | None = None
        try:
            if self._is_async[task]:
                value = await fn(*args)
            else:
                value = await self._threads.run(fn, *args)
                if inspect.isawaitable(value):
                    value = await value
            report = outcome_report(item.execution_id, value)
        except asyncio.CancelledError:
            job.abandoned = True
            raise
        except Exception as exc:
            log.warning(
                "handler %s failed: %s",
                task,
                exc,
                exc_info=True,
                extra={**extra, "error": type(exc).__name__},
            )
            report = failure_report(item.execution_id, exc)
        finally:
            if not job.abandoned:
                self._running.pop(item.execution_id, None)
                self._slot_free.set()
                if not self._running:
                    self._jobs_done.set()
                if self._stopping is not None and not self._stopping.is_set():
                    self._start_waiting()
        if report is not None and not job.abandoned:
            if report.success:
                self.stats.succeeded += 1
            else:
                self.stats.failed += 1
            log.debug(
                "finished %s in %.3fs: %s",
                task,
                time.monotonic() - started,
                "success" if report.success else "failure",
                extra=extra,
            )
            self._outbox.append(report)
            self._reporting.add(report.execution_id)
            self._drained.clear()
            self._outbox_ready.set()

    # --- outcomes -------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        backoff = _Backoff("outcome report", self.max_backoff)
        while True:
            await self._outbox_ready.wait()
            if len(self._outbox) < MAX_BATCH and self.flush_interval > 0:
                await asyncio.sleep(self.flush_interval)  # let a few more finish
            batch = self._outbox[:MAX_BATCH]
            del self._outbox[:MAX_BATCH]
            if not self._outbox:
                self._outbox_ready.clear()
            self._flushing = len(batch)
            try:
                while True:
                    try:
                        await self._send_outcomes(batch)
                    except AuthenticationError as exc:
                        self._outbox[:0] = batch
                        self._die(exc)
                        return
                    except _RETRYABLE as exc:
                        await asyncio.sleep(backoff.failed(exc))
                        continue
                    backoff.ok()
                    break
            finally:
                self._flushing = 0
                for report in batch:
                    self._reporting.discard(report.execution_id)
                    if self._sweep_guard is not None:
                        self._sweep_guard.add(report.execution_id)
                if not self._outbox:
                    self._drained.set()

    async def _send_outcomes(self, batch: list[OutcomeReport]) -> None:
        self.stats.outcome_calls += 1
        try:
            res = await self.client.worker.report_outcomes(self.worker_id, batch)
        except CueAPIError as exc:
            if isinstance(exc, (*_RETRYABLE, AuthenticationError)) or exc.status_code is None:
                raise
            # The batch as a whole was refused (e.g. one invalid item): report one by one.
            log.warning("outcome batch refused (%s); reporting one by one", exc)
            for report in batch:
                await self._send_one(report)
            return
        by_id = {r.execution_id: r for r in batch}
        for item in res.results:
            if item.outcome_recorded:
                self.stats.reported += 1
                continue
            code = item.error.code if item.error else "unknown"
            message = item.error.message if item.error else ""
            extra = {"execution_id": item.execution_id, "error": code}
            if code == "outcome_already_recorded":
                log.info("outcome of %s was already recorded", item.execution_id, extra=extra)
            elif code in ("metadata_too_large", "validation_error") and item.execution_id in by_id:
                log.warning("outcome of %s refused (%s); reporting it without evidence", message, code)
                await self._send_one(minimal_report(by_id[item.execution_id], f"{code}: {message}"))
            else:
                log.warning(
                    "outcome of %s not recorded: %s %s", item.execution_id, code, message, extra=extra
                )

    async def _send_one(self, report: OutcomeReport) -> None:
        extra = {"execution_id": report.execution_id}
        fields = {k: v for k, v in msgspec.structs.asdict(report).items() if k != "execution_id"}
        try:
            await self.client.executions.report_outcome(report.execution_id, **fields)
            self.stats.reported += 1
        except CueAPIError as exc:
            if isinstance(exc, (*_RETRYABLE, AuthenticationError)):
                raise
            if exc.code == "outcome_already_recorded":
                return
            if exc.status_code in (400, 422) and (report.metadata or report.artifacts or report.result_url):
                await self._send_one(minimal_report(report, f"{exc.code}: {exc.message}"))
                return
            log.error("outcome of %s not recorded: %s", report.execution_id, exc, extra=extra)

    # --- leases, registry, release ------------------------------------------------------

    async def _sweep_orphans(self) -> None:
        """Release executions the server says this worker holds but the worker does not know
        (a claim whose answer was lost: read error, timeout, 5xx after the claim)."""
        guard: set[str] = set()
        self._sweep_guard = guard
        try:
            known = set(self._held_ids()) | self._reporting
            found: list[str] = []
            offset = 0
            while True:
                page = await self.client.executions.list(
                    worker_id=self.worker_id, status="delivering", limit=100, offset=offset
                )
                found.extend(e.id for e in page.executions)
                if not page.has_more:
                    break
                offset += 100
            known |= set(self._held_ids()) | self._reporting | guard
        except CueAPIError as exc:
            log.warning("orphan sweep failed: %s", exc)
            return
        finally:
            self._sweep_guard = None
        orphans = [i for i in found if i not in known]
        if orphans:
            await self._release(orphans, "claimed by a request whose answer was lost")

    def _held_ids(self) -> list[str]:
        ids = [j.item.execution_id for j in self._running.values() if not j.abandoned]
        ids.extend(e.execution_id for e in self._waiting)
        return ids

    async def _lease_loop(self) -> None:
        backoff = _Backoff("lease extension", self.max_backoff)
        delay = max(0.2, self._lease / 3)
        while True:
            await asyncio.sleep(delay)
            ids = self._held_ids()
            try:
                for i in range(0, len(ids), MAX_BATCH):
                    res = await self.client.worker.extend_leases(self.worker_id, ids[i : i + MAX_BATCH])
                    self._note_leases(res.extended, res.lost)
            except AuthenticationError as exc:
                self._die(exc)
                return
            except CueAPIError as exc:
                delay = min(backoff.failed(exc), max(0.2, self._lease / 3))
                continue
            backoff.ok()
            delay = max(0.2, self._lease / 3)

    def _note_leases(self, extended: list[LeaseExtension], lost: list[str]) -> None:
        for execution_id in lost:
            job = self._running.get(execution_id)
            if job is not None and not job.context.lease_lost:
                job.context.lease_lost = True
                self.stats.lost += 1
                log.warning("lease of %s lost", execution_id, extra={"execution_id": execution_id})
        for ext in extended:
            job = self._running.get(ext.execution_id)
            if job is not None:
                job.context.lease_expires_at = ext.lease_expires_at

    async def _registry_loop(self, tasks: list[str]) -> None:
        backoff = _Backoff("worker heartbeat", self.max_backoff)
        while True:
            try:
                await self.client.workers.heartbeat(self.worker_id, tasks)
            except AuthenticationError as exc:
                self._die(exc)
                return
            except CueAPIError as exc:
                await asyncio.sleep(min(backoff.failed(exc), self.heartbeat_interval))
                continue
            backoff.ok()
            await asyncio.sleep(self.heartbeat_interval)

    async def _release(self, ids: list[str], why: str, deadline: float | None = None) -> None:
        if not ids:
            return
        deadline = deadline or time.monotonic() + 10
        backoff = _Backoff("release", 2.0)
        for i in range(0, len(ids), MAX_BATCH):
            chunk = ids[i : i + MAX_BATCH]
            while True:
                try:
                    res = await self.client.worker.release(self.worker_id, chunk)
                except AuthenticationError:
                    return
                except CueAPIError as exc:
                    if not isinstance(exc, _RETRYABLE) or time.monotonic() > deadline:
                        log.error("could not release %d executions: %s", len(chunk), exc)
                        break
                    await asyncio.sleep(backoff.failed(exc))
                    continue
                self.stats.released += res.released
                log.info("released %d executions (%s)", res.released, why)
                break

    # --- shutdown ---------------------------------------------------------------------------

    async def _shutdown(self, claimer: asyncio.Task[None]) -> None:
        assert self._force is not None
        log.info(
            "stopping: %d running, %d claimed and not started",
            len(self._running),
            len(self._waiting),
            extra={"worker_id": self.worker_id},
        )
        self._slot_free.set()
        if self._force.is_set():
            claimer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _first(claimer, self._force)  # its in-flight claim returns and is released
        waiting = [e.execution_id for e in self._waiting]
        self._waiting.clear()
        await self._release(waiting, "not started at shutdown")
        deadline = time.monotonic() + self.grace_seconds
        while self._running and not self._force.is_set():
            self._jobs_done.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await _first(asyncio.ensure_future(self._jobs_done.wait()), self._force, within=left)
        if self._running:
            stuck = list(self._running.values())
            log.warning("%d handlers still running after the grace period; releasing them", len(stuck))
            for job in stuck:  # async handlers are cancelled; sync ones are left to their thread
                job.abandoned = True
                if job.task is not None:
                    job.task.cancel()
            self._running.clear()
            await self._release([j.item.execution_id for j in stuck], "unfinished at shutdown")
        # Flush what finished: give the flusher until the outbox is empty (bounded).
        if not self._drained.is_set() and self._fatal is None:
            waiter = asyncio.ensure_future(self._drained.wait())
            await _first(waiter, self._force, within=max(10.0, self.grace_seconds))
        if self._outbox or self._flushing:
            log.error("%d outcomes could not be reported before exit", len(self._outbox) + self._flushing)


def _maybe_processed(exc: CueAPIError) -> bool:
    """The request may have reached the server (so a claim may have been made)."""
    if isinstance(exc, CueAPIServerError):
        return True
    if isinstance(exc, CueAPIConnectionError):
        return not isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout)
    return False


async def _first(fut: Awaitable[Any], event: asyncio.Event, within: float | None = None) -> None:
    """Wait for ``fut`` or ``event`` (or the timeout), whichever comes first."""
    task = asyncio.ensure_future(fut)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def load_app(spec: str) -> Worker:
    """``module:attribute`` → the ``Worker`` it names (a callable is called to make one)."""
    import importlib
    import sys

    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ValueError(f"--app must look like 'module:worker', got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in (attr or "worker").split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Worker) and callable(obj):
        obj = obj()
    if not isinstance(obj, Worker):
        raise ValueError(f"{spec!r} is not a cuefast Worker (got {type(obj).__name__})")
    return obj
