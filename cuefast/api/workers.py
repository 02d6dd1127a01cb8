"""Worker transport routes (CONTRACT.md §9) and cuefast's batch pull API.

CueAPI door: ``GET /v1/executions/claimable``, ``POST /v1/executions/claim``,
``POST /v1/executions/{id}/claim``, ``POST /v1/executions/{id}/heartbeat`` and the worker
registry (``POST /v1/worker/heartbeat``, ``GET /v1/workers``, ``DELETE /v1/workers/{id}``).

Batch door (cuefast extension, same claim/lease state): ``POST /v1/worker/claim`` (up to 500
per call, long-poll up to 30 s), ``POST /v1/worker/outcomes`` (up to 500 outcomes),
``POST /v1/worker/leases`` (extend held leases), ``POST /v1/worker/release`` (give back
claims whose handler never started).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response, delete, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, HeaderParameter, QueryParams

from cuefast.api import examples as ex
from cuefast.api.deps import CurrentAccount
from cuefast.api.http import json_response, path_execution_id, path_worker_id, read_json
from cuefast.api.openapi import RawJSON, TextQuery, doc, limit
from cuefast.client.bodies import (
    BatchClaimRequest,
    ClaimNextRequest,
    ClaimRequest,
    LeaseRequest,
    OutcomeBatchRequest,
    TaskCapRequest,
    WorkerHeartbeatRequest,
)
from cuefast.client.models import (
    ClaimableList,
    ClaimBatch,
    ClaimResult,
    HeartbeatResult,
    LeaseResult,
    OutcomeBatchResult,
    ReleaseResult,
    TaskCap,
    WorkerHeartbeatResult,
    WorkerList,
)
from cuefast.errors import (
    ClaimFailed,
    ExecutionCancelled,
    ExecutionNotClaiming,
    ExecutionNotFound,
    NotExecutionOwner,
    TaskCapLimit,
    ValidationFailed,
    WorkerLimitExceeded,
    WorkerNotFound,
)
from cuefast.runtime import Runtime
from cuefast.services.claim_input import id_list, optional_text, parse_batch_claim, worker_id_field
from cuefast.services.validate import Checker, query_text, require_object

_BATCH_DOC = (
    "cuefast extension (not part of CueAPI). Same claim/lease state as the CueAPI worker "
    'endpoints. Errors use the envelope {"error": {"code", "message", "status"}}.'
)
_BATCH_TAG = ["workers (cuefast batch pull)"]
CLAIMABLE_LIMIT = limit(50)
TASK = TextQuery("task", "exact match on the effective payload's `task` (≤ 255 characters)")
AGENT = TextQuery("agent", "exact match on the effective payload's `agent` (≤ 255 characters)")
WorkerHeader = Annotated[
    str | None,
    HeaderParameter(name="X-Worker-Id", description="when given, must be the claiming worker (else 403)"),
]
_NOT_FOUND = ExecutionNotFound()
_LEASES_EXAMPLE = {"worker_id": "box-1", "execution_ids": ["034cdaba-8f4e-4b8e-9c1a-1d2e3f4a5b6c"]}


def _worker_and_ids(body: Any) -> tuple[str, list[str]]:
    obj = require_object(body)
    c = Checker()
    worker = worker_id_field(c, obj)
    ids = id_list(c, obj, "execution_ids", 500)
    c.raise_if_any()
    return str(worker), ids


def _task(raw: Any) -> str:
    """The task of a ``{task:path}`` parameter (it may hold "/"; Litestar gives it with a leading "/")."""
    raw = str(raw)
    raw = raw[1:] if raw.startswith("/") else raw
    c = Checker()
    task = c.string("path.task", raw, min_len=1, max_len=255, single_line=True)
    c.raise_if_any()
    return str(task)


def _cap(body: Any) -> int:
    obj = require_object(body)
    c = Checker()
    raw = obj.get("max_concurrency")
    if raw is None:
        c.add("body.max_concurrency", "Field required")
    else:
        raw = c.integer("body.max_concurrency", raw, ge=1, le=10000)
    c.raise_if_any()
    assert isinstance(raw, int)
    return raw


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    work = rt.work
    registry = rt.workers

    @get(
        "/v1/executions/claimable",
        summary="List claimable worker executions",
        tags=["workers"],
        **doc(query=[TASK, AGENT, CLAIMABLE_LIMIT], example=ex.CLAIMABLE),
    )
    async def claimable(query: QueryParams, account: CurrentAccount) -> Response[ClaimableList]:
        q = query
        limit_ = CLAIMABLE_LIMIT.read(q)
        items = await work.claimable(account, query_text(q, "task"), query_text(q, "agent"), limit_)
        return json_response({"executions": items})

    @post(
        "/v1/executions/claim",
        summary="Claim the oldest claimable execution",
        tags=["workers"],
        **doc(
            body=ClaimNextRequest,
            errors=[ClaimFailed("No executions available for claiming")],
            body_example={"worker_id": "box-1", "task": "etl"},
            example=ex.CLAIMED,
        ),
    )
    async def claim_next(account: CurrentAccount, data: RawJSON = b"") -> Response[ClaimResult]:
        obj = require_object(read_json(data))
        c = Checker()
        worker = worker_id_field(c, obj)
        task = optional_text(c, obj, "task")
        agent = optional_text(c, obj, "agent")
        c.raise_if_any()
        return json_response(await work.claim_next(account, str(worker), task, agent))

    @post(
        "/v1/executions/{execution_id:str}/claim",
        summary="Claim an execution",
        tags=["workers"],
        **doc(
            body=ClaimRequest,
            errors=[_NOT_FOUND, ClaimFailed("Execution not available for claiming")],
            body_example={"worker_id": "box-1"},
            example=ex.CLAIMED,
        ),
    )
    async def claim_one(
        account: CurrentAccount, execution_id: FromPath[str], data: RawJSON = b""
    ) -> Response[ClaimResult]:
        obj = require_object(read_json(data))
        c = Checker()
        worker = worker_id_field(c, obj)
        c.raise_if_any()
        return json_response(await work.claim_one(account, path_execution_id(execution_id), str(worker)))

    @post(
        "/v1/executions/{execution_id:str}/heartbeat",
        summary="Extend a claim's lease (optional X-Worker-Id ownership check)",
        tags=["workers"],
        **doc(
            errors=[_NOT_FOUND, ExecutionNotClaiming(), ExecutionCancelled(), NotExecutionOwner()],
            example={
                "execution_id": "034cdaba-8f4e-4b8e-9c1a-1d2e3f4a5b6c",
                "lease_extended_until": "2026-11-23T12:05:00.100200+00:00",
                "acknowledged": True,
            },
        ),
    )
    async def heartbeat(
        account: CurrentAccount, execution_id: FromPath[str], worker: WorkerHeader = None
    ) -> Response[HeartbeatResult]:
        return json_response(await work.heartbeat(account, path_execution_id(execution_id), worker))

    @post(
        "/v1/worker/heartbeat",
        summary="Worker registry heartbeat",
        tags=["workers"],
        **doc(
            body=WorkerHeartbeatRequest,
            errors=[WorkerLimitExceeded(1000)],
            body_example={"worker_id": "box-1", "handlers": ["etl"]},
            example={"acknowledged": True, "server_time": "2026-11-23T11:41:18.397965Z"},
        ),
    )
    async def worker_heartbeat(
        account: CurrentAccount, data: RawJSON = b""
    ) -> Response[WorkerHeartbeatResult]:
        return json_response(await registry.worker_heartbeat(account, read_json(data)))

    @get(
        "/v1/workers",
        summary="List workers (latest heartbeat first)",
        tags=["workers"],
        **doc(example=ex.WORKERS),
    )
    async def list_workers(account: CurrentAccount) -> Response[WorkerList]:
        return json_response(await registry.list_workers(account))

    @delete(
        "/v1/workers/{worker_id:str}",
        summary="Delete a worker",
        tags=["workers"],
        **doc(status=204, errors=[WorkerNotFound()]),
    )
    async def delete_worker(account: CurrentAccount, worker_id: FromPath[str]) -> None:
        await registry.delete_worker(account, path_worker_id(worker_id))

    @post(
        "/v1/worker/claim",
        summary="Batch claim (cuefast): up to 500 executions, long-poll up to 30 s",
        description=_BATCH_DOC + " An empty `executions` list once the wait is over.",
        tags=_BATCH_TAG,
        **doc(
            body=BatchClaimRequest,
            body_example={"worker_id": "box-1", "tasks": ["etl"], "max": 50, "wait_seconds": 10},
            example={
                "executions": [
                    {
                        **ex.CLAIMABLE["executions"][0],
                        "lease_expires_at": "2026-11-23T11:58:00Z",
                    }
                ],
                "lease_seconds": 900,
            },
        ),
    )
    async def batch_claim(account: CurrentAccount, data: RawJSON = b"") -> Response[ClaimBatch]:
        req = parse_batch_claim(read_json(data), rt.settings.worker_lease_seconds)
        return json_response(await work.batch_claim(account, req))

    @post(
        "/v1/worker/outcomes",
        summary="Batch outcomes (cuefast): up to 500, each like POST /v1/executions/{id}/outcome",
        description=_BATCH_DOC
        + " Results come in request order; one bad item gets an item-level `error` (its"
        " `execution_id` echoed only when well-formed) and does not fail the others.",
        tags=_BATCH_TAG,
        **doc(
            body=OutcomeBatchRequest,
            body_example={
                "worker_id": "box-1",
                "outcomes": [{"execution_id": "034cdaba-8f4e-4b8e-9c1a-1d2e3f4a5b6c", "success": True}],
            },
            example={
                "results": [
                    {
                        "execution_id": "034cdaba-8f4e-4b8e-9c1a-1d2e3f4a5b6c",
                        "outcome_recorded": True,
                        "outcome_state": "reported_success",
                        "error": None,
                    }
                ]
            },
        ),
    )
    async def batch_outcomes(account: CurrentAccount, data: RawJSON = b"") -> Response[OutcomeBatchResult]:
        return json_response(await work.batch_outcomes(account, read_json(data)))

    @post(
        "/v1/worker/leases",
        summary="Extend leases (cuefast) of executions this worker holds",
        description=_BATCH_DOC
        + " `lost`: execution ids no longer held by this worker. `cancelled`: execution ids its"
        " cue's overlap policy (`cancel_previous`) cancelled: stop their handlers.",
        tags=_BATCH_TAG,
        **doc(
            body=LeaseRequest,
            body_example=_LEASES_EXAMPLE,
            example={
                "extended": [
                    {
                        "execution_id": "034cdaba-8f4e-4b8e-9c1a-1d2e3f4a5b6c",
                        "lease_expires_at": "2026-11-23T11:58:00Z",
                    }
                ],
                "lost": [],
                "cancelled": [],
            },
        ),
    )
    async def extend_leases(account: CurrentAccount, data: RawJSON = b"") -> Response[LeaseResult]:
        worker, ids = _worker_and_ids(read_json(data))
        return json_response(await work.extend_leases(account, worker, ids))

    @post(
        "/v1/worker/release",
        summary="Release claims (cuefast) whose handler never started",
        description=_BATCH_DOC
        + " The executions are claimable again at once and the attempt is not counted.",
        tags=_BATCH_TAG,
        **doc(body=LeaseRequest, body_example=_LEASES_EXAMPLE, example={"released": 1}),
    )
    async def release(account: CurrentAccount, data: RawJSON = b"") -> Response[ReleaseResult]:
        worker, ids = _worker_and_ids(read_json(data))
        return json_response(await work.release(account, worker, ids))

    cap_path = "/v1/worker/task-caps/{task:path}"
    cap_doc = (
        " At most `max_concurrency` of the account's executions of this task (the effective"
        " payload's `task`) are claimed at once, over every worker and door; the others stay"
        " `pending` and are claimed in order as claims end. `held`: claims holding a permit now."
    )
    cap_example = {"task": "etl", "max_concurrency": 4, "held": 1}
    bad_task = ValidationFailed([("path.task", "String should have at most 255 characters")])

    @put(
        cap_path,
        summary="Cap a worker task's claims held at once (cuefast)",
        description=_BATCH_DOC + cap_doc,
        tags=_BATCH_TAG,
        **doc(
            body=TaskCapRequest,
            errors=[TaskCapLimit("An account may cap at most 100 tasks"), bad_task],
            body_example={"max_concurrency": 4},
            example=cap_example,
        ),
    )
    async def put_task_cap(
        account: CurrentAccount, task: FromPath[str], data: RawJSON = b""
    ) -> Response[TaskCap]:
        cap = _cap(read_json(data))
        return json_response(await work.caps.put(account, _task(task), cap))

    @get(
        cap_path,
        summary="A worker task's claim cap (cuefast)",
        description=_BATCH_DOC + cap_doc + " `max_concurrency` null: not capped.",
        tags=_BATCH_TAG,
        **doc(errors=[bad_task], example=cap_example),
    )
    async def get_task_cap(account: CurrentAccount, task: FromPath[str]) -> Response[TaskCap]:
        return json_response(await work.caps.get(account, _task(task)))

    @delete(
        cap_path,
        summary="Remove a worker task's claim cap (cuefast)",
        description=_BATCH_DOC + " Waiting claims of the task go at once.",
        tags=_BATCH_TAG,
        **doc(status=200, errors=[bad_task], example={"task": "etl", "max_concurrency": None, "held": 0}),
    )
    async def delete_task_cap(account: CurrentAccount, task: FromPath[str]) -> Response[TaskCap]:
        return json_response(await work.caps.delete(account, _task(task)))

    return [
        put_task_cap,
        get_task_cap,
        delete_task_cap,
        claimable,
        claim_next,
        claim_one,
        heartbeat,
        worker_heartbeat,
        list_workers,
        delete_worker,
        batch_claim,
        batch_outcomes,
        extend_leases,
        release,
    ]
