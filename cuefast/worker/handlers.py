"""How the worker daemon calls handlers and what their results mean.

* ``Context`` — what a handler knows about its execution; ``Outcome`` — an explicit result.
* ``outcome_report(execution_id, value)`` — a return value → the outcome to report: ``None``
  → success; ``str`` → ``result``; an ``Outcome`` or a dict whose keys are all outcome
  fields → those fields; anything else → ``result`` as JSON text.
* ``failure_report`` — an exception → a failed outcome (``error`` = its message).
* ``Threads`` — daemon threads for sync handlers (a stuck one never blocks process exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from cuefast.client.models import OutcomeReport

Handler = Callable[..., Any]
OUTCOME_FIELDS = frozenset(f.name for f in msgspec.structs.fields(OutcomeReport)) - {"execution_id"}
_JSON = msgspec.json.Encoder()


@dataclass(slots=True)
class Outcome:
    """An explicit outcome a handler may return."""

    success: bool = True
    result: str | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    external_id: str | None = None
    result_url: str | None = None
    artifacts: list[Any] | None = None
    summary: str | None = None
    result_ref: str | None = None
    result_type: str | None = None


@dataclass(slots=True)
class Context:
    """What a handler knows about the execution it runs."""

    execution_id: str
    cue_id: str
    cue_name: str | None
    task: str | None
    scheduled_for: dt.datetime | None
    attempt: int
    payload: dict[str, Any]
    worker_id: str
    lease_expires_at: dt.datetime | None = None
    lease_lost: bool = False
    """Set when the server reported the claim lost (lease expired and re-offered)."""
    cancelled: bool = False
    """Set when the server reported the execution cancelled by its cue's overlap policy
    (``cancel_previous``): an async handler is cancelled, a sync one should check this and stop;
    its outcome is not reported."""


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return _JSON.encode(value).decode()
    except (TypeError, ValueError, OverflowError):
        return str(value)


def outcome_report(execution_id: str, value: Any) -> OutcomeReport:
    """A handler's return value → the outcome to report (rules in the module docstring)."""
    if isinstance(value, Outcome):
        fields: Mapping[str, Any] = {k: getattr(value, k) for k in OUTCOME_FIELDS}
    elif isinstance(value, Mapping) and value and OUTCOME_FIELDS.issuperset(value):
        fields = value
    else:
        return OutcomeReport(execution_id=execution_id, success=True, result=_text(value))
    metadata = fields.get("metadata")
    artifacts = fields.get("artifacts")
    return OutcomeReport(
        execution_id=execution_id,
        success=bool(fields.get("success", True)),
        result=_text(fields.get("result")),
        error=_text(fields.get("error")),
        metadata=dict(metadata) if isinstance(metadata, Mapping) else None,
        external_id=_text(fields.get("external_id")),
        result_url=_text(fields.get("result_url")),
        artifacts=list(artifacts) if isinstance(artifacts, list | tuple) else None,
        summary=_text(fields.get("summary")),
        result_ref=_text(fields.get("result_ref")),
        result_type=_text(fields.get("result_type")),
    )


def failure_report(execution_id: str, exc: BaseException) -> OutcomeReport:
    message = str(exc) or type(exc).__name__
    return OutcomeReport(
        execution_id=execution_id,
        success=False,
        error=message,
        metadata={"exception": type(exc).__name__},
    )


class Threads:
    """Daemon threads for sync handlers (a stuck handler never blocks process exit)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._idle == 0 and len(self._threads) < self.size:
                t = threading.Thread(
                    target=self._work, name=f"cuefast-handler-{len(self._threads)}", daemon=True
                )
                self._threads.append(t)
                self._idle += 1
                t.start()
            self._idle -= 1
        self._jobs.put((loop, fut, fn, args))
        return fut

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, fut, fn, args = job
            try:
                result = fn(*args)
            except BaseException as exc:
                outcome: tuple[bool, Any] = (False, exc)
            else:
                outcome = (True, result)
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # loop closed: the worker is gone
                loop.call_soon_threadsafe(_settle, fut, outcome)

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


def _settle(fut: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if fut.done():
        return
    ok, value = outcome
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def minimal_report(report: OutcomeReport, note: str) -> OutcomeReport:
    """The outcome without the parts the server refused (the reason goes into ``error``)."""
    return OutcomeReport(
        execution_id=report.execution_id,
        success=report.success,
        result=report.result,
        error=(report.error + " | " if report.error else "") + f"outcome evidence refused: {note}"[:500],
    )


def is_async(fn: Handler) -> bool:
    """``fn`` is a coroutine function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


def positional_arity(fn: Handler) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    count = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return 2
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count
