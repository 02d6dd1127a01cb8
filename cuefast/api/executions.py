"""/v1/executions: list, get, replay, outcome, evidence, verification (CONTRACT.md §8)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Response, get, patch, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParams

from cuefast.api import examples as ex
from cuefast.api.deps import CurrentAccount
from cuefast.api.http import json_response, path_execution_id, read_json
from cuefast.api.openapi import OFFSET, RawJSON, TextQuery, doc, limit
from cuefast.client.bodies import EvidenceRequest, OutcomeRequest, VerifyRequest
from cuefast.client.models import (
    EvidenceResult,
    Execution,
    ExecutionList,
    OutcomeResult,
    ReplayResult,
    VerifyResult,
)
from cuefast.errors import Conflict, ExecutionNotFound, ValidationFailed, api_error
from cuefast.models import Account
from cuefast.runtime import Runtime
from cuefast.services.executions import Cursor, ExecutionFilters, ExecutionService
from cuefast.services.outcomes import MetadataTooLarge, OutcomeAlreadyRecorded

EXEC_LIMIT = limit(20)
FILTERS = [
    TextQuery("cue_id", "exact"),
    TextQuery("status", "exact (any status of §11.2)"),
    TextQuery("status__in", "comma-separated statuses (not with `status`)"),
    TextQuery("worker_id", "exact match on `claimed_by_worker`"),
    TextQuery("outcome_state", "exact"),
    TextQuery("triggered_by", "exact (`scheduled`, `manual_fire`, `replay`)"),
]
CURSOR = TextQuery(
    "cursor",
    "cuefast: keyset paging — pass it (empty for the first page), then each answer's `next_cursor`; "
    "a page costs the same however deep it is (not with `offset`)",
)
CONFLICTING = api_error(400, "conflicting_filters", "Pass either `status` or `status__in`, not both.")
EMPTY_STATUS_IN = api_error(400, "invalid_status_in", "`status__in` must contain at least one status.")
_NOT_FOUND = ExecutionNotFound()


def _filters(q: Mapping[str, str]) -> ExecutionFilters:
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


def _cursor(q: Mapping[str, str], offset: int) -> Cursor | None:
    """``cursor`` (cuefast: a previous page's ``next_cursor``); "" or absent = the first page."""
    token = q.get("cursor")
    if not token:
        return None
    cursor = Cursor.decode(token)
    if cursor is None:
        raise ValidationFailed([("query.cursor", "Input should be a `next_cursor` of an earlier page")])
    if offset:
        raise ValidationFailed([("query.offset", "Input should be 0 with `cursor` (pass one or the other)")])
    return cursor


async def list_page(executions: ExecutionService, account: Account, q: Mapping[str, str]) -> dict[str, Any]:
    """The answer of ``GET /v1/executions`` (the Litestar route's and the edge's: ``fast.py``):
    422 for a bad ``limit``/``offset``/``cursor`` first, then 400 for conflicting filters. With
    ``cursor`` present (even empty: the first page), the page is cursor-paged and carries
    ``next_cursor``; without, the contract's offset page (``next_cursor`` absent)."""
    limit_, offset = EXEC_LIMIT.read(q), OFFSET.read(q)
    if "cursor" in q:
        cursor = _cursor(q, offset)
        items, total, oldest, nxt = await executions.list_after(account, _filters(q), limit_, cursor)
        return {
            "executions": items,
            "total": total,
            "limit": limit_,
            "offset": 0,
            "has_more": nxt is not None,
            "oldest_claimed_at": oldest,
            "next_cursor": None if nxt is None else nxt.encode(),
        }
    items, total, oldest = await executions.list(account, _filters(q), limit_, offset)
    return {
        "executions": items,
        "total": total,
        "limit": limit_,
        "offset": offset,
        "has_more": offset + limit_ < total,
        "oldest_claimed_at": oldest,
    }


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    executions = rt.executions
    outcomes = rt.outcomes

    @get(
        "/v1/executions",
        summary="List executions (newest first)",
        tags=["executions"],
        **doc(
            query=[*FILTERS, EXEC_LIMIT, OFFSET, CURSOR],
            errors=[CONFLICTING, EMPTY_STATUS_IN],
            example=ex.EXECUTION_LIST,
        ),
    )
    async def list_executions(query: QueryParams, account: CurrentAccount) -> Response[ExecutionList]:
        return json_response(await list_page(executions, account, query))

    @get(
        "/v1/executions/{execution_id:str}",
        summary="Get an execution",
        tags=["executions"],
        **doc(errors=[_NOT_FOUND], example=ex.EXECUTION),
    )
    async def get_execution(account: CurrentAccount, execution_id: FromPath[str]) -> Response[Execution]:
        return json_response(await executions.get(account, path_execution_id(execution_id)))

    @post(
        "/v1/executions/{execution_id:str}/replay",
        summary="Replay a finished execution",
        tags=["executions"],
        **doc(
            errors=[
                _NOT_FOUND,
                api_error(409, "execution_in_flight", "Cannot replay an execution that is still in progress"),
            ],
            example=ex.REPLAYED,
        ),
    )
    async def replay(account: CurrentAccount, execution_id: FromPath[str]) -> Response[ReplayResult]:
        return json_response(await executions.replay(account, path_execution_id(execution_id)))

    @post(
        "/v1/executions/{execution_id:str}/outcome",
        summary="Report an outcome (write-once)",
        tags=["executions"],
        **doc(
            body=OutcomeRequest,
            errors=[_NOT_FOUND, OutcomeAlreadyRecorded(), MetadataTooLarge()],
            body_example=ex.OUTCOME_REPORT,
            example=ex.OUTCOME_RECORDED,
        ),
    )
    async def report_outcome(
        account: CurrentAccount, execution_id: FromPath[str], data: RawJSON = b""
    ) -> Response[OutcomeResult]:
        body = read_json(data)
        return json_response(await outcomes.report(account, path_execution_id(execution_id), body))

    @patch(
        "/v1/executions/{execution_id:str}/evidence",
        summary="Append evidence",
        tags=["executions"],
        **doc(
            body=EvidenceRequest,
            errors=[
                _NOT_FOUND,
                Conflict("no_outcome", "Report outcome first before appending evidence"),
                MetadataTooLarge(),
            ],
            body_example={"result_url": "https://ci.example.com/runs/42"},
            example={
                "execution_id": ex.EXECUTION_ID,
                "outcome_state": "reported_success",
                "evidence_updated": True,
            },
        ),
    )
    async def append_evidence(
        account: CurrentAccount, execution_id: FromPath[str], data: RawJSON = b""
    ) -> Response[EvidenceResult]:
        body = read_json(data)
        return json_response(await outcomes.append_evidence(account, path_execution_id(execution_id), body))

    @post(
        "/v1/executions/{execution_id:str}/verify",
        summary="Mark verified or rejected",
        tags=["executions"],
        **doc(
            body=VerifyRequest,
            body_required=False,
            errors=[_NOT_FOUND, api_error(409, "invalid_state", "Cannot verify from state 'None'")],
            body_example={"valid": False, "reason": "invoice mismatch"},
            example={
                "execution_id": ex.EXECUTION_ID,
                "outcome_state": "verification_failed",
                "valid": False,
                "reason": "invoice mismatch",
            },
        ),
    )
    async def verify(
        account: CurrentAccount, execution_id: FromPath[str], data: RawJSON = b""
    ) -> Response[VerifyResult]:
        body = read_json(data, required=False)
        return json_response(await outcomes.verify(account, path_execution_id(execution_id), body))

    @post(
        "/v1/executions/{execution_id:str}/verification-pending",
        summary="Mark verification pending",
        tags=["executions"],
        **doc(
            errors=[_NOT_FOUND, Conflict("no_outcome", "No outcome recorded yet")],
            example={"execution_id": ex.EXECUTION_ID, "outcome_state": "verification_pending"},
        ),
    )
    async def verification_pending(
        account: CurrentAccount, execution_id: FromPath[str]
    ) -> Response[VerifyResult]:
        return json_response(await outcomes.mark_pending(account, path_execution_id(execution_id)))

    return [
        list_executions,
        get_execution,
        replay,
        report_outcome,
        append_evidence,
        verify,
        verification_pending,
    ]
