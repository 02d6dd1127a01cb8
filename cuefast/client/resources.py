"""API methods, grouped as in the CueAPI SDK, plus cuefast's batch pull (``worker``).

The groups are ``cues``, ``executions``, ``workers`` and ``alerts``. Each method is written
once as a builder (see ``_core``); the sync and async clients share these classes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from cuefast.client._core import Call, Mode, Resource, call, drop_none, op
from cuefast.client.models import (
    AlertList,
    BulkStatusResult,
    ClaimableList,
    ClaimBatch,
    ClaimResult,
    Cue,
    CueList,
    EvidenceResult,
    Execution,
    ExecutionList,
    FireResult,
    HeartbeatResult,
    LeaseResult,
    OutcomeBatchResult,
    OutcomeReport,
    OutcomeResult,
    ReleaseResult,
    ReplayJob,
    ReplayResult,
    TaskCap,
    VerifyResult,
    WorkerHeartbeatResult,
    WorkerList,
)

Json = Mapping[str, Any]


def _id(value: str) -> str:
    return quote(str(value), safe="")


def _iso(value: str | dt.datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _verification(value: str | Json | None) -> Json | None:
    return {"mode": value} if isinstance(value, str) else value


def _callback(url: str | Json | None, method: str | None, headers: Mapping[str, str] | None) -> Any:
    if url is None and method is None and headers is None:
        return None
    if isinstance(url, Mapping):
        cb = dict(url)
    else:
        cb = drop_none(url=url)
    if method is not None:
        cb["method"] = method
    if headers is not None:
        cb["headers"] = dict(headers)
    return cb


def _selectors(labels: Mapping[str, str | None] | Sequence[str]) -> list[str]:
    """``?label=`` values: ``key:value``, or ``key`` alone."""
    if isinstance(labels, Mapping):
        return [k if v is None else f"{k}:{v}" for k, v in labels.items()]
    return [str(x) for x in labels]


def _bulk(ids: Sequence[str] | None, labels: Mapping[str, str] | None) -> dict[str, Any]:
    if (ids is None) == (labels is None):
        raise ValueError("Give exactly one of 'ids' and 'labels'")
    return {"ids": list(ids)} if ids is not None else {"labels": dict(labels or {})}


class Cues(Resource[Mode]):
    """Cues: schedules (CONTRACT.md §7)."""

    @op
    def create(
        self,
        name: str,
        *,
        cron: str | None = None,
        at: str | dt.datetime | None = None,
        timezone: str = "UTC",
        callback: str | Json | None = None,
        callback_method: str = "POST",
        callback_headers: Mapping[str, str] | None = None,
        transport: str = "webhook",
        payload: Json | None = None,
        description: str | None = None,
        retry: Json | None = None,
        on_failure: Json | None = None,
        verification: str | Json | None = None,
        delivery: Json | None = None,
        alerts: Json | None = None,
        catch_up: str | None = None,
        overlap: str | None = None,
        labels: Mapping[str, str] | None = None,
        jitter_seconds: int | None = None,
    ) -> Call[Cue]:
        """Create a cue: ``cron`` (recurring) or ``at`` (once); ``callback`` is the webhook
        URL (webhook transport) — ``transport="worker"`` cues are pulled by workers.
        ``jitter_seconds`` (cuefast, 0–3600) spreads each fire by a deterministic offset."""
        if cron is not None:
            schedule: dict[str, Any] = {"type": "recurring", "cron": cron, "timezone": timezone}
        elif at is not None:
            schedule = {"type": "once", "at": _iso(at), "timezone": timezone}
        else:
            raise ValueError("Either 'cron' or 'at' must be provided")
        if jitter_seconds is not None:
            schedule["jitter_seconds"] = jitter_seconds
        body: dict[str, Any] = {
            "name": name,
            "schedule": schedule,
            "transport": transport,
            "payload": dict(payload or {}),
        }
        if callback is not None:
            body["callback"] = _callback(callback, callback_method, callback_headers)
        body.update(
            drop_none(
                description=description,
                retry=retry,
                on_failure=on_failure,
                verification=_verification(verification),
                delivery=delivery,
                alerts=alerts,
                catch_up=catch_up,
                overlap=overlap,
                labels=None if labels is None else dict(labels),
            )
        )
        return call("POST", "/v1/cues", Cue, body=body)

    @op
    def list(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        status: str | None = None,
        labels: Mapping[str, str | None] | Sequence[str] | None = None,
    ) -> Call[CueList]:
        """A page of cues, newest first; ``labels``: only cues carrying all of them (``{key:
        value}``, a None value = the key with any value; or ``"key:value"`` / ``"key"`` texts)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, "status": status}
        if labels is not None:
            params["label"] = _selectors(labels)
        return call("GET", "/v1/cues", CueList, params=params)

    @op
    def get(
        self, cue_id: str, *, execution_limit: int | None = None, execution_offset: int | None = None
    ) -> Call[Cue]:
        """A cue with a page of its executions (``cue.executions``)."""
        params = {"execution_limit": execution_limit, "execution_offset": execution_offset}
        return call("GET", f"/v1/cues/{_id(cue_id)}", Cue, params=params)

    @op
    def update(
        self,
        cue_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        status: str | None = None,
        cron: str | None = None,
        at: str | dt.datetime | None = None,
        timezone: str | None = None,
        callback: str | Json | None = None,
        callback_method: str | None = None,
        callback_headers: Mapping[str, str] | None = None,
        payload: Json | None = None,
        retry: Json | None = None,
        on_failure: Json | None = None,
        verification: str | Json | None = None,
        delivery: Json | None = None,
        alerts: Json | None = None,
        catch_up: str | None = None,
        overlap: str | None = None,
        labels: Mapping[str, str] | None = None,
        jitter_seconds: int | None = None,
    ) -> Call[Cue]:
        """Change only the fields given (``callback`` may be a URL or a dict); ``labels``
        replaces the cue's labels (``{}`` clears them); ``jitter_seconds=0`` turns jitter off."""
        body = drop_none(
            name=name,
            description=description,
            status=status,
            payload=payload,
            retry=retry,
            on_failure=on_failure,
            verification=_verification(verification),
            delivery=delivery,
            alerts=alerts,
            catch_up=catch_up,
            overlap=overlap,
            callback=_callback(callback, callback_method, callback_headers),
            labels=None if labels is None else dict(labels),
        )
        schedule: dict[str, Any] = {}
        if cron is not None:
            schedule = {"type": "recurring", "cron": cron}
        elif at is not None:
            schedule = {"type": "once", "at": _iso(at)}
        if timezone is not None:
            schedule["timezone"] = timezone
        if jitter_seconds is not None:
            schedule["jitter_seconds"] = jitter_seconds
        if schedule:
            body["schedule"] = schedule
        return call("PATCH", f"/v1/cues/{_id(cue_id)}", Cue, body=body)

    @op
    def pause(self, cue_id: str) -> Call[Cue]:
        return Cues.update.build(self, cue_id, status="paused")

    @op
    def resume(self, cue_id: str) -> Call[Cue]:
        return Cues.update.build(self, cue_id, status="active")

    @op
    def pause_many(
        self, *, ids: Sequence[str] | None = None, labels: Mapping[str, str] | None = None
    ) -> Call[BulkStatusResult]:
        """Pause the active cues among ``ids`` (≤ 1,000), or those carrying all ``labels``."""
        return call("POST", "/v1/cues/pause", BulkStatusResult, body=_bulk(ids, labels))

    @op
    def resume_many(
        self, *, ids: Sequence[str] | None = None, labels: Mapping[str, str] | None = None
    ) -> Call[BulkStatusResult]:
        """Resume the paused cues among ``ids`` (≤ 1,000), or those carrying all ``labels``."""
        return call("POST", "/v1/cues/resume", BulkStatusResult, body=_bulk(ids, labels))

    @op
    def delete(self, cue_id: str) -> Call[None]:
        return call("DELETE", f"/v1/cues/{_id(cue_id)}", None)

    @op
    def fire(
        self,
        cue_id: str,
        *,
        payload_override: Json | None = None,
        merge_strategy: str | None = None,
        send_at: str | dt.datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Call[FireResult]:
        """Create one execution now (or at ``send_at``); an ``idempotency_key`` makes it
        safe to retry (and the SDK then retries it on 5xx)."""
        body = drop_none(
            payload_override=payload_override,
            merge_strategy=merge_strategy,
            send_at=_iso(send_at),
            idempotency_key=idempotency_key,
        )
        return call(
            "POST",
            f"/v1/cues/{_id(cue_id)}/fire",
            FireResult,
            body=body,
            idempotent=idempotency_key is not None,
        )


def _outcome_body(**fields: Any) -> dict[str, Any]:
    return drop_none(**fields)


class ExecutionContext:
    """``with client.executions.handle(id) as ctx:`` (``async with`` on the async client):
    a clean exit reports success (``ctx.result``, ``ctx.evidence``), an exception reports
    failure with its message (and is not suppressed)."""

    def __init__(self, executions: Executions[Any], execution_id: str, payload: Json | None) -> None:
        self._executions = executions
        self.execution_id = execution_id
        self.payload = dict(payload or {})
        self.result: Any = None
        self.evidence: dict[str, Any] = {}

    def _report(self, exc: BaseException | None) -> Any:
        if exc is not None:
            return self._executions.report_outcome(self.execution_id, False, error=str(exc)[:4096])
        result = None if self.result is None else str(self.result)
        return self._executions.report_outcome(self.execution_id, True, result=result, **self.evidence)

    def __enter__(self) -> ExecutionContext:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._report(exc)

    async def __aenter__(self) -> ExecutionContext:
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        await self._report(exc)


class Executions(Resource[Mode]):
    """Executions: one firing of a cue (CONTRACT.md §8, §9)."""

    def handle(self, execution_id: str, payload: Json | None = None) -> ExecutionContext:
        """A context manager that reports the outcome on exit (see ``ExecutionContext``)."""
        return ExecutionContext(self, execution_id, payload)

    @op
    def list(
        self,
        *,
        cue_id: str | None = None,
        status: str | None = None,
        status_in: Sequence[str] | str | None = None,
        worker_id: str | None = None,
        outcome_state: str | None = None,
        triggered_by: str | None = None,
        limit: int = 20,
        offset: int = 0,
        cursor: str | None = None,
    ) -> Call[ExecutionList]:
        """A page of executions. ``cursor`` (cuefast): "" for the first page, then each page's
        ``next_cursor`` — keyset paging whose cost does not grow with depth (not with
        ``offset``)."""
        if status_in is not None and not isinstance(status_in, str):
            status_in = ",".join(status_in)
        params = {
            "cue_id": cue_id,
            "status": status,
            "status__in": status_in,
            "worker_id": worker_id,
            "outcome_state": outcome_state,
            "triggered_by": triggered_by,
            "limit": limit,
            "offset": offset,
            "cursor": cursor,
        }
        return call("GET", "/v1/executions", ExecutionList, params=params)

    @op
    def get(self, execution_id: str) -> Call[Execution]:
        return call("GET", f"/v1/executions/{_id(execution_id)}", Execution)

    @op
    def list_claimable(
        self, *, task: str | None = None, agent: str | None = None, limit: int | None = None
    ) -> Call[ClaimableList]:
        """Worker executions claimable now, oldest first."""
        params = {"task": task, "agent": agent, "limit": limit}
        return call("GET", "/v1/executions/claimable", ClaimableList, params=params)

    @op
    def claim(self, execution_id: str, worker_id: str) -> Call[ClaimResult]:
        path = f"/v1/executions/{_id(execution_id)}/claim"
        return call("POST", path, ClaimResult, body={"worker_id": worker_id})

    @op
    def claim_next(
        self, worker_id: str, *, task: str | None = None, agent: str | None = None
    ) -> Call[ClaimResult]:
        """Claim the oldest claimable execution (409 ``claim_failed`` → ``CueAPIError``)."""
        body = drop_none(worker_id=worker_id, task=task, agent=agent)
        return call("POST", "/v1/executions/claim", ClaimResult, body=body)

    @op
    def heartbeat(self, execution_id: str, worker_id: str | None = None) -> Call[HeartbeatResult]:
        """Extend a claim's lease; with ``worker_id`` the server checks ownership (403)."""
        headers = {"X-Worker-Id": worker_id} if worker_id is not None else None
        path = f"/v1/executions/{_id(execution_id)}/heartbeat"
        return call("POST", path, HeartbeatResult, body={}, headers=headers, idempotent=True)

    @op
    def report_outcome(
        self,
        execution_id: str,
        success: bool,
        *,
        result: str | None = None,
        error: str | None = None,
        metadata: Json | None = None,
        external_id: str | None = None,
        result_url: str | None = None,
        artifacts: Sequence[Any] | None = None,
        summary: str | None = None,
        result_ref: str | None = None,
        result_type: str | None = None,
    ) -> Call[OutcomeResult]:
        """Record the outcome (write-once: a second report is 409 ``CueAPIError``)."""
        body = _outcome_body(
            success=success,
            result=result,
            error=error,
            metadata=metadata,
            external_id=external_id,
            result_url=result_url,
            artifacts=list(artifacts) if artifacts is not None else None,
            summary=summary,
            result_ref=result_ref,
            result_type=result_type,
        )
        return call("POST", f"/v1/executions/{_id(execution_id)}/outcome", OutcomeResult, body=body)

    @op
    def append_evidence(
        self,
        execution_id: str,
        *,
        external_id: str | None = None,
        result_url: str | None = None,
        result_ref: str | None = None,
        result_type: str | None = None,
        summary: str | None = None,
        artifacts: Sequence[Any] | None = None,
        metadata: Json | None = None,
    ) -> Call[EvidenceResult]:
        body = _outcome_body(
            external_id=external_id,
            result_url=result_url,
            result_ref=result_ref,
            result_type=result_type,
            summary=summary,
            artifacts=list(artifacts) if artifacts is not None else None,
            metadata=metadata,
        )
        return call("PATCH", f"/v1/executions/{_id(execution_id)}/evidence", EvidenceResult, body=body)

    @op
    def verify(
        self, execution_id: str, *, valid: bool = True, reason: str | None = None
    ) -> Call[VerifyResult]:
        """Mark the outcome verified (``valid=False``: rejected, with ``reason``)."""
        body = drop_none(valid=valid, reason=reason)
        return call("POST", f"/v1/executions/{_id(execution_id)}/verify", VerifyResult, body=body)

    mark_verified = op(verify.build)
    """CueAPI SDK name of ``verify``."""

    @op
    def mark_verification_pending(self, execution_id: str) -> Call[VerifyResult]:
        path = f"/v1/executions/{_id(execution_id)}/verification-pending"
        return call("POST", path, VerifyResult, body={}, idempotent=True)

    @op
    def replay(self, execution_id: str) -> Call[ReplayResult]:
        """A new execution of a finished one, with the same payload."""
        return call("POST", f"/v1/executions/{_id(execution_id)}/replay", ReplayResult, body={})

    @op
    def replay_many(
        self,
        *,
        cue_id: str | None = None,
        status: str | None = None,
        status_in: Sequence[str] | None = None,
        outcome_state: str | None = None,
        triggered_by: str | None = None,
        since: dt.datetime | str | None = None,
        until: dt.datetime | str | None = None,
        limit: int | None = None,
        rate_per_second: int | None = None,
        idempotency_key: str | None = None,
    ) -> Call[ReplayJob]:
        """cuefast: replay up to ``limit`` (≤ 10,000) matching finished executions at
        ``rate_per_second``; follow it with ``replay_status``. An ``idempotency_key`` sent again
        with the same request answers the first job."""
        flt = drop_none(
            cue_id=cue_id,
            status=status,
            status__in=list(status_in) if status_in is not None else None,
            outcome_state=outcome_state,
            triggered_by=triggered_by,
            since=_iso(since),
            until=_iso(until),
        )
        body = drop_none(
            filter=flt, limit=limit, rate_per_second=rate_per_second, idempotency_key=idempotency_key
        )
        return call("POST", "/v1/executions/replay", ReplayJob, body=body)

    @op
    def replay_status(self, replay_id: str) -> Call[ReplayJob]:
        """cuefast: a bulk replay's progress."""
        return call("GET", f"/v1/replays/{_id(replay_id)}", ReplayJob)


class Workers(Resource[Mode]):
    """The worker registry (CONTRACT.md §9.6–9.8)."""

    @op
    def list(self) -> Call[WorkerList]:
        return call("GET", "/v1/workers", WorkerList)

    @op
    def delete(self, worker_id: str) -> Call[None]:
        return call("DELETE", f"/v1/workers/{_id(worker_id)}", None)

    @op
    def heartbeat(self, worker_id: str, handlers: Sequence[str] | None = None) -> Call[WorkerHeartbeatResult]:
        body = {"worker_id": worker_id, "handlers": list(handlers) if handlers is not None else None}
        return call("POST", "/v1/worker/heartbeat", WorkerHeartbeatResult, body=body, idempotent=True)

    @op
    def task_cap(self, task: str) -> Call[TaskCap]:
        """cuefast: a task's claim cap (``max_concurrency`` None: not capped)."""
        return call("GET", f"/v1/worker/task-caps/{_id(task)}", TaskCap)

    @op
    def set_task_cap(self, task: str, max_concurrency: int) -> Call[TaskCap]:
        """cuefast: at most ``max_concurrency`` claims of ``task`` held at once, account-wide."""
        body = {"max_concurrency": max_concurrency}
        return call("PUT", f"/v1/worker/task-caps/{_id(task)}", TaskCap, body=body, idempotent=True)

    @op
    def delete_task_cap(self, task: str) -> Call[TaskCap]:
        return call("DELETE", f"/v1/worker/task-caps/{_id(task)}", TaskCap, idempotent=True)


class Alerts(Resource[Mode]):
    """Alerts (CONTRACT.md §12.5)."""

    @op
    def list(
        self,
        *,
        alert_type: str | None = None,
        since: str | dt.datetime | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Call[AlertList]:
        params = {"alert_type": alert_type, "since": _iso(since), "limit": limit, "offset": offset}
        return call("GET", "/v1/alerts", AlertList, params=params)


class WorkerBatch(Resource[Mode]):
    """cuefast's batch pull: claim, report, extend and release many executions per call."""

    def __init__(self, send: Any, timeout: float) -> None:
        super().__init__(send)
        self._timeout = timeout

    @op
    def claim(
        self,
        worker_id: str,
        *,
        tasks: Sequence[str] | None = None,
        agent: str | None = None,
        max: int = 50,
        wait_seconds: float = 0,
        lease_seconds: int | None = None,
    ) -> Call[ClaimBatch]:
        """Claim up to ``max`` executions, waiting up to ``wait_seconds`` (long poll) for one."""
        body = {
            "worker_id": worker_id,
            "tasks": list(tasks) if tasks is not None else None,
            "agent": agent,
            "max": max,
            "wait_seconds": wait_seconds,
            "lease_seconds": lease_seconds,
        }
        return call("POST", "/v1/worker/claim", ClaimBatch, body=body, timeout=self._timeout + wait_seconds)

    @op
    def report_outcomes(
        self, worker_id: str, outcomes: Sequence[OutcomeReport | Json]
    ) -> Call[OutcomeBatchResult]:
        """Record up to 500 outcomes; each item's fate is in ``results``."""
        body = {"worker_id": worker_id, "outcomes": list(outcomes)}
        return call("POST", "/v1/worker/outcomes", OutcomeBatchResult, body=body)

    @op
    def extend_leases(self, worker_id: str, execution_ids: Sequence[str]) -> Call[LeaseResult]:
        body = {"worker_id": worker_id, "execution_ids": list(execution_ids)}
        return call("POST", "/v1/worker/leases", LeaseResult, body=body, idempotent=True)

    @op
    def release(self, worker_id: str, execution_ids: Sequence[str]) -> Call[ReleaseResult]:
        """Give claimed executions back unstarted (claimable again at once)."""
        body = {"worker_id": worker_id, "execution_ids": list(execution_ids)}
        return call("POST", "/v1/worker/release", ReleaseResult, body=body, idempotent=True)
