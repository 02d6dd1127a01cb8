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

from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler

from cuefast.api.http import json_response, path_execution_id, path_worker_id, read_json
from cuefast.runtime import Runtime
from cuefast.services.claim_input import id_list, optional_text, parse_batch_claim, worker_id_field
from cuefast.services.validate import Checker, query_int, query_text, require_object

_BATCH_DOC = (
    "cuefast extension (not part of CueAPI). Same claim/lease state as the CueAPI worker "
    'endpoints. Errors use the envelope {"error": {"code", "message", "status"}}.'
)


def _worker_and_ids(body: Any) -> tuple[str, list[str]]:
    obj = require_object(body)
    c = Checker()
    worker = worker_id_field(c, obj)
    ids = id_list(c, obj, "execution_ids", 500)
    c.raise_if_any()
    return str(worker), ids


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    accounts = rt.accounts
    work = rt.work
    registry = rt.workers

    @get("/v1/executions/claimable", summary="List claimable worker executions", tags=["workers"])
    async def claimable(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        q = request.query_params
        limit = query_int(q, "limit", 50, 1, 100)
        items = await work.claimable(account, query_text(q, "task"), query_text(q, "agent"), limit)
        return json_response({"executions": items})

    @post("/v1/executions/claim", summary="Claim the oldest claimable execution", tags=["workers"])
    async def claim_next(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        obj = require_object(await read_json(request))
        c = Checker()
        worker = worker_id_field(c, obj)
        task = optional_text(c, obj, "task")
        agent = optional_text(c, obj, "agent")
        c.raise_if_any()
        return json_response(await work.claim_next(account, str(worker), task, agent))

    @post("/v1/executions/{execution_id:str}/claim", summary="Claim an execution", tags=["workers"])
    async def claim_one(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        obj = require_object(await read_json(request))
        c = Checker()
        worker = worker_id_field(c, obj)
        c.raise_if_any()
        return json_response(await work.claim_one(account, path_execution_id(request), str(worker)))

    @post(
        "/v1/executions/{execution_id:str}/heartbeat",
        summary="Extend a claim's lease (optional X-Worker-Id ownership check)",
        tags=["workers"],
    )
    async def heartbeat(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        worker = request.headers.get("x-worker-id")
        return json_response(await work.heartbeat(account, path_execution_id(request), worker))

    @post("/v1/worker/heartbeat", summary="Worker registry heartbeat", tags=["workers"])
    async def worker_heartbeat(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response(await registry.worker_heartbeat(account, await read_json(request)))

    @get("/v1/workers", summary="List workers (latest heartbeat first)", tags=["workers"])
    async def list_workers(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response(await registry.list_workers(account))

    @delete("/v1/workers/{worker_id:str}", summary="Delete a worker", tags=["workers"], status_code=204)
    async def delete_worker(request: Request[Any, Any, Any]) -> None:
        account = await accounts.authenticate(request.headers.get("authorization"))
        await registry.delete_worker(account, path_worker_id(request))

    @post(
        "/v1/worker/claim",
        summary="Batch claim (cuefast): up to 500 executions, long-poll up to 30 s",
        description=_BATCH_DOC
        + ' Body: {"worker_id": str (1-255), "tasks": [str] | null (null = any task), "agent": str | null,'
        ' "max": 1-500 (50), "wait_seconds": 0-30 (0), "lease_seconds": int | null (default and max:'
        ' CUEFAST_WORKER_LEASE_SECONDS)}. Answer: {"executions": [{"execution_id", "cue_id", "cue_name",'
        ' "task", "scheduled_for", "payload", "attempt", "lease_expires_at"}], "lease_seconds": int};'
        " an empty list once the wait is over.",
        tags=["workers (cuefast batch pull)"],
    )
    async def batch_claim(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        req = parse_batch_claim(await read_json(request), rt.settings.worker_lease_seconds)
        return json_response(await work.batch_claim(account, req))

    @post(
        "/v1/worker/outcomes",
        summary="Batch outcomes (cuefast): up to 500, each like POST /v1/executions/{id}/outcome",
        description=_BATCH_DOC
        + ' Body: {"worker_id": str, "outcomes": [{"execution_id", "success", "result", "error", "metadata",'
        ' "external_id", "result_url", "result_ref", "result_type", "artifacts", "summary"}]} (1-500).'
        ' Answer: {"results": [{"execution_id" (null when not a well-formed id), "outcome_recorded": bool,'
        ' "outcome_state": str | null, "error": {"code", "message"} | null}]}, in request order; one bad'
        " item does not fail the others.",
        tags=["workers (cuefast batch pull)"],
    )
    async def batch_outcomes(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response(await work.batch_outcomes(account, await read_json(request)))

    @post(
        "/v1/worker/leases",
        summary="Extend leases (cuefast) of executions this worker holds",
        description=_BATCH_DOC
        + ' Body: {"worker_id": str, "execution_ids": [str] (≤ 500)}. Answer: {"extended":'
        ' [{"execution_id", "lease_expires_at"}], "lost": [execution ids no longer held by this worker]}.',
        tags=["workers (cuefast batch pull)"],
    )
    async def extend_leases(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        worker, ids = _worker_and_ids(await read_json(request))
        return json_response(await work.extend_leases(account, worker, ids))

    @post(
        "/v1/worker/release",
        summary="Release claims (cuefast) whose handler never started",
        description=_BATCH_DOC
        + ' Body: {"worker_id": str, "execution_ids": [str] (≤ 500)}. The executions are claimable again at'
        ' once and the attempt is not counted. Answer: {"released": int}.',
        tags=["workers (cuefast batch pull)"],
    )
    async def release(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        worker, ids = _worker_and_ids(await read_json(request))
        return json_response(await work.release(account, worker, ids))

    return [
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
