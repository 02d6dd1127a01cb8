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
  ``context.lease_lost`` (the outcome is still reported; the server accepts late ones); one
  reported ``cancelled`` (its cue's overlap policy ``cancel_previous``) is stopped at once —
  an async handler cancelled, a sync one flagged ``context.cancelled`` — and not reported;
* **registry heartbeat** (``POST /v1/worker/heartbeat`` with the handler names) at start
  and every ``heartbeat_interval`` (30 s);
* **server away**: every loop retries with exponential backoff (0.2 s doubling to
  ``max_backoff``, jittered) and logs once when it is lost and once when it is back;
  one line per backoff of the claim loop names the server and the setting; a 401 stops the
  worker (exit code 2: fix CUEFAST_API_KEY; 1 for any other fatal error);
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
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cuefast.client import AsyncCueFast
from cuefast.client.errors import AuthenticationError, CueAPIError
from cuefast.client.models import ClaimedExecution
from cuefast.heap import settle_heap
from cuefast.worker.handlers import Handler
from cuefast.worker.jobs import Runner, Stats
from cuefast.worker.leases import Leases
from cuefast.worker.options import MAX_BATCH, MAX_HANDLERS, default_worker_id, env_number, env_text
from cuefast.worker.outcomes import Outbox
from cuefast.worker.retry import Backoff, maybe_processed

__all__ = ["Worker", "WorkerStopped"]

log = logging.getLogger("cuefast.worker.daemon")
WRONG_KEY_EXIT = 2
"""``run()``'s exit code when the server refuses the API key (a setting to fix, like the
server's own configuration errors); 1 is any other fatal error"""


class WorkerStopped(Exception):
    """The worker stopped for a reason that needs attention (e.g. an invalid API key)."""


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
        explicit_id = bool(worker_id or env_text(env, "CUEFAST_WORKER_ID"))
        self.api_key = api_key or env_text(env, "CUEFAST_API_KEY") or ""
        self.base_url = base_url or env_text(env, "CUEFAST_BASE_URL") or "http://127.0.0.1:8000"
        self.worker_id = worker_id or env_text(env, "CUEFAST_WORKER_ID") or default_worker_id()
        self.concurrency = concurrency or env_number(env, "CUEFAST_WORKER_CONCURRENCY", int) or 8
        self.prefetch = (
            prefetch if prefetch is not None else env_number(env, "CUEFAST_WORKER_PREFETCH", int) or 0
        )
        self.agent = agent or env_text(env, "CUEFAST_WORKER_AGENT")
        self.lease_seconds = lease_seconds
        self.wait_seconds = (
            wait_seconds
            if wait_seconds is not None
            else env_number(env, "CUEFAST_WORKER_WAIT_SECONDS", float)
        )
        if self.wait_seconds is None:
            self.wait_seconds = 5.0
        grace = (
            grace_seconds
            if grace_seconds is not None
            else env_number(env, "CUEFAST_WORKER_GRACE_SECONDS", float)
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
        self.stats = Stats()
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

        settle_heap()  # the imports, the app and its handlers: out of the collector's full passes
        try:
            runner(main())
        except WorkerStopped as exc:
            if isinstance(exc.__cause__, AuthenticationError):
                log.critical(
                    "worker stopped: the server refused the API key (%s): set CUEFAST_API_KEY / --api-key "
                    "to a valid key of the account whose cues this worker runs",
                    exc,
                )
                return WRONG_KEY_EXIT
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
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._orphans_possible = False
        self.stats = stats = Stats()
        self._outbox = Outbox(
            self.client,
            self.worker_id,
            stats,
            flush_interval=self.flush_interval,
            max_backoff=self.max_backoff,
            die=self._die,
        )
        self._runner = Runner(
            self.handlers,
            self.worker_id,
            self.concurrency,
            stats,
            self._outbox,
            stopping=self._stopping,
            unknown=self._not_ours,
        )
        self._leases = Leases(
            self.client,
            self.worker_id,
            stats,
            self._runner,
            self._outbox,
            lease_seconds=float(self.lease_seconds or 900),
            max_backoff=self.max_backoff,
            die=self._die,
        )
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
            asyncio.create_task(self._leases.run(), name="cuefast-worker-leases"),
            asyncio.create_task(self._outbox.run(), name="cuefast-worker-outcomes"),
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
            self._runner.threads.close()
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
        backoff = Backoff("claim", self.max_backoff, server=str(self.client.base_url))
        stopping, runner = self._stopping, self._runner
        assert stopping is not None
        while not stopping.is_set():
            room = self.concurrency + self.prefetch - len(runner.running) - len(runner.waiting)
            if room <= 0:
                runner.slot_free.clear()
                await self._pause(3600, runner.slot_free)
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
                if maybe_processed(exc):
                    self._orphans_possible = True
                await self._pause(backoff.failed(exc))
                continue
            backoff.ok()
            if self._orphans_possible and self.sweep_orphans:
                self._orphans_possible = False
                await self._leases.sweep_orphans()
            self._leases.seconds = float(batch.lease_seconds or self._leases.seconds)
            if not batch.executions:
                if not self.wait_seconds:
                    await self._pause(0.5)
                continue
            self.stats.claimed += len(batch.executions)
            if stopping.is_set():  # claimed while shutting down: give them back
                await self._leases.release(
                    [e.execution_id for e in batch.executions], "claimed during shutdown"
                )
                return
            runner.waiting.extend(batch.executions)
            runner.start_waiting()

    def _not_ours(self, item: ClaimedExecution) -> None:
        """An execution for a task without a handler (cannot happen with the tasks filter)."""
        side = asyncio.create_task(self._leases.release([item.execution_id], f"no handler: {item.task!r}"))
        self._side_tasks.add(side)
        side.add_done_callback(self._side_tasks.discard)

    # --- registry -------------------------------------------------------------------------

    async def _registry_loop(self, tasks: list[str]) -> None:
        backoff = Backoff("worker heartbeat", self.max_backoff)
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

    # --- shutdown ---------------------------------------------------------------------------

    async def _shutdown(self, claimer: asyncio.Task[None]) -> None:
        assert self._force is not None
        runner = self._runner
        log.info(
            "stopping: %d running, %d claimed and not started",
            len(runner.running),
            len(runner.waiting),
            extra={"worker_id": self.worker_id},
        )
        runner.slot_free.set()
        if self._force.is_set():
            claimer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _first(claimer, self._force)  # its in-flight claim returns and is released
        waiting = [e.execution_id for e in runner.waiting]
        runner.waiting.clear()
        await self._leases.release(waiting, "not started at shutdown")
        deadline = time.monotonic() + self.grace_seconds
        while runner.running and not self._force.is_set():
            runner.jobs_done.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await _first(asyncio.ensure_future(runner.jobs_done.wait()), self._force, within=left)
        if runner.running:
            log.warning(
                "%d handlers still running after the grace period; releasing them", len(runner.running)
            )
            await self._leases.release(runner.abandon(), "unfinished at shutdown")
        # Flush what finished: give the flusher until the outbox is empty (bounded).
        if not self._outbox.drained.is_set() and self._fatal is None:
            waiter = asyncio.ensure_future(self._outbox.drained.wait())
            await _first(waiter, self._force, within=max(10.0, self.grace_seconds))
        if self._outbox.unsent():
            log.error("%d outcomes could not be reported before exit", self._outbox.unsent())


async def _first(fut: Awaitable[Any], event: asyncio.Event, within: float | None = None) -> None:
    """Wait for ``fut`` or ``event`` (or the timeout), whichever comes first."""
    task = asyncio.ensure_future(fut)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
