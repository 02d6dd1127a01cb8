"""/v1/executions: list and get (CONTRACT.md §8.3, §8.4)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, patch, post
from litestar.handlers import HTTPRouteHandler

from cuefast.api.http import json_response, path_execution_id, read_json
from cuefast.errors import api_error
from cuefast.runtime import Runtime
from cuefast.services.executions import ExecutionFilters
from cuefast.services.validate import MAX_OFFSET, query_int


def _filters(q: Any) -> ExecutionFilters:
    status = q.get("status")
    status_in = q.get("status__in")
    if status is not None and status_in is not None:
        raise api_error(400, "conflicting_filters", "Pass either `status` or `status__in`, not both.")
    statuses: frozenset[str] | None = None
    if status is not None:
        statuses = frozenset({status})
    elif status_in is not None:
        items = frozenset(s.strip() for s in status_in.split(",") if s.strip())
        if not items:
            raise api_error(400, "invalid_status_in", "`status__in` must contain at least one status.")
        statuses = items
    return ExecutionFilters(
        cue_id=q.get("cue_id"),
        statuses=statuses,
        worker_id=q.get("worker_id"),
        outcome_state=q.get("outcome_state"),
        triggered_by=q.get("triggered_by"),
    )


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    accounts = rt.accounts
    executions = rt.executions

    @get("/v1/executions", summary="List executions (newest first)", tags=["executions"])
    async def list_executions(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        q = request.query_params
        limit = query_int(q, "limit", 20, 1, 100)
        offset = query_int(q, "offset", 0, 0, MAX_OFFSET)
        items, total, oldest = await executions.list(account, _filters(q), limit, offset)
        return json_response(
            {
                "executions": items,
                "total": total,
                "limit": limit,
                "offset": offset,
                "has_more": offset + limit < total,
                "oldest_claimed_at": oldest,
            }
        )

    @get("/v1/executions/{execution_id:str}", summary="Get an execution", tags=["executions"])
    async def get_execution(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response(await executions.get(account, path_execution_id(request)))

    @post(
        "/v1/executions/{execution_id:str}/replay", summary="Replay a finished execution", tags=["executions"]
    )
    async def replay(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response(await executions.replay(account, path_execution_id(request)))

    outcomes = rt.outcomes

    @post(
        "/v1/executions/{execution_id:str}/outcome",
        summary="Report an outcome (write-once)",
        tags=["executions"],
    )
    async def report_outcome(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        body = await read_json(request)
        return json_response(await outcomes.report(account, path_execution_id(request), body))

    @patch("/v1/executions/{execution_id:str}/evidence", summary="Append evidence", tags=["executions"])
    async def append_evidence(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        body = await read_json(request)
        return json_response(await outcomes.append_evidence(account, path_execution_id(request), body))

    @post(
        "/v1/executions/{execution_id:str}/verify", summary="Mark verified or rejected", tags=["executions"]
    )
    async def verify(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        body = await read_json(request, required=False)
        return json_response(await outcomes.verify(account, path_execution_id(request), body))

    @post(
        "/v1/executions/{execution_id:str}/verification-pending",
        summary="Mark verification pending",
        tags=["executions"],
    )
    async def verification_pending(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response(await outcomes.mark_pending(account, path_execution_id(request)))

    return [
        list_executions,
        get_execution,
        replay,
        report_outcome,
        append_evidence,
        verify,
        verification_pending,
    ]
