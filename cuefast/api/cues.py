"""/v1/cues: create, list, get, PATCH, delete, bulk delete, bulk pause/resume, fire (CONTRACT.md §7)."""

from __future__ import annotations

from litestar import Response, delete, get, patch, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParams

from cuefast.api import examples as ex
from cuefast.api.auth import Confirm
from cuefast.api.deps import CurrentAccount
from cuefast.api.http import json_response, path_cue_id, read_json
from cuefast.api.openapi import OFFSET, Query, RawJSON, TextQuery, doc, limit
from cuefast.client.bodies import BulkDeleteRequest, BulkStatusRequest, CueCreate, CueUpdate, FireRequest
from cuefast.client.models import BulkDeleteResult, BulkStatusResult, Cue, CueList, FireResult
from cuefast.errors import (
    ConfirmationRequired,
    CueLimitExceeded,
    CueNotFound,
    DuplicateCueName,
    InvalidCallbackURL,
    InvalidPayload,
    InvalidPayloadSize,
    InvalidSchedule,
    InvalidTimezone,
    api_error,
)
from cuefast.runtime import Runtime
from cuefast.services.accounts import require_confirmation
from cuefast.services.cue_input import parse_create, parse_patch
from cuefast.services.cue_labels import parse_bulk_status, parse_selectors
from cuefast.services.cue_status import set_status_many
from cuefast.services.executions import parse_fire
from cuefast.services.validate import Checker, require_object

CUE_LIMIT = limit(50)
EXECUTION_LIMIT = Query("execution_limit", 10, 1, 100, "embedded executions per page (1-100, default 10)")
EXECUTION_OFFSET = Query("execution_offset", 0, 0, 10_000_000, "embedded executions to skip")
STATUS = TextQuery("status", "exact match (`active`, `paused`, `completed`, `failed`)")
LABEL = TextQuery(
    "label",
    "`key:value` (cues labelled so) or `key` (cues with the key); repeat it for cues matching all",
)
_SAVE_ERRORS = [
    DuplicateCueName("morning-brief"),
    InvalidCallbackURL("URL must use https://"),
    InvalidPayloadSize(),
    InvalidPayload(),
    InvalidTimezone("Mars/Olympus"),
    InvalidSchedule("Invalid cron expression"),
]


def _bulk_status(rt: Runtime, status: str, verb: str) -> HTTPRouteHandler:
    """``POST /v1/cues/pause`` (status paused) or ``/resume`` (active)."""
    cues = rt.cues

    @post(
        f"/v1/cues/{verb}",
        summary=f"{verb.capitalize()} the cues given by ids or by labels",
        tags=["cues"],
        name=f"bulk_{verb}",
        operation_id=f"{verb}_cues",
        **doc(
            body=BulkStatusRequest,
            body_example={"labels": {"team": "growth"}},
            example={"matched": 2, "changed": 1, "ids": [ex.CUE_ID]},
        ),
    )
    async def handler(account: CurrentAccount, data: RawJSON = b"") -> Response[BulkStatusResult]:
        ids, labels = parse_bulk_status(read_json(data))
        return json_response(await set_status_many(cues, account, status, ids=ids, labels=labels))

    return handler


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    cues = rt.cues

    @post(
        "/v1/cues",
        summary="Create a cue",
        tags=["cues"],
        **doc(
            status=201,
            body=CueCreate,
            errors=[*_SAVE_ERRORS, CueLimitExceeded(10)],
            body_example=ex.CUE_CREATE,
            example=ex.CUE,
        ),
    )
    async def create_cue(account: CurrentAccount, data: RawJSON = b"") -> Response[Cue]:
        draft = parse_create(read_json(data))
        return json_response(await cues.create(account, draft))

    @get(
        "/v1/cues",
        summary="List cues (newest first)",
        tags=["cues"],
        **doc(query=[STATUS, LABEL, CUE_LIMIT, OFFSET], example=ex.CUE_LIST),
    )
    async def list_cues(query: QueryParams, account: CurrentAccount) -> Response[CueList]:
        q = query
        limit_, offset = CUE_LIMIT.read(q), OFFSET.read(q)
        labels = parse_selectors(q.getall("label", []))
        items, total = await cues.list(account, q.get("status"), limit_, offset, labels)
        return json_response({"cues": items, "total": total, "limit": limit_, "offset": offset})

    @post(
        "/v1/cues/bulk-delete",
        summary="Delete up to 100 cues",
        tags=["cues"],
        **doc(
            body=BulkDeleteRequest,
            errors=[ConfirmationRequired()],
            body_example={"ids": [ex.CUE_ID, "cue_zzzzzzzzzzzz"]},
            example={"deleted": [ex.CUE_ID], "skipped": ["cue_zzzzzzzzzzzz"]},
        ),
    )
    async def bulk_delete(
        account: CurrentAccount, data: RawJSON = b"", confirm: Confirm = None
    ) -> Response[BulkDeleteResult]:
        require_confirmation(confirm)
        body = require_object(read_json(data))
        c = Checker()
        ids = body.get("ids")
        if "ids" not in body:
            c.add("body.ids", "Field required")
        elif not isinstance(ids, list):
            c.add("body.ids", "Input should be a valid list")
        elif not 1 <= len(ids) <= 100:
            c.add("body.ids", "List should have between 1 and 100 items")
        else:
            for i, item in enumerate(ids):
                c.string(f"body.ids.{i}", item)  # NUL / lone surrogate: 422 (echoed in "skipped")
        c.raise_if_any()
        deleted: list[str] = []
        skipped: list[str] = []
        for cue_id in list(ids or ()):
            if cue_id in deleted:
                skipped.append(cue_id)
                continue
            try:
                await cues.delete(account, cue_id)
                deleted.append(cue_id)
            except CueNotFound:
                skipped.append(cue_id)
        return json_response({"deleted": deleted, "skipped": skipped})

    @get(
        "/v1/cues/{cue_id:str}",
        summary="Get a cue with a page of its executions",
        tags=["cues"],
        **doc(
            query=[EXECUTION_LIMIT, EXECUTION_OFFSET], errors=[CueNotFound()], example=ex.CUE_WITH_EXECUTIONS
        ),
    )
    async def get_cue(query: QueryParams, account: CurrentAccount, cue_id: FromPath[str]) -> Response[Cue]:
        cue_id = path_cue_id(cue_id)
        q = query
        out = await cues.get(account, cue_id, EXECUTION_LIMIT.read(q), EXECUTION_OFFSET.read(q))
        return json_response(out)

    @patch(
        "/v1/cues/{cue_id:str}",
        summary="Change a cue (only the fields sent)",
        tags=["cues"],
        **doc(
            body=CueUpdate,
            errors=[CueNotFound(), *_SAVE_ERRORS],
            body_example={"status": "paused"},
            example={**ex.CUE, "status": "paused", "next_run": None},
        ),
    )
    async def patch_cue(account: CurrentAccount, cue_id: FromPath[str], data: RawJSON = b"") -> Response[Cue]:
        cue_id = path_cue_id(cue_id)
        draft = parse_patch(read_json(data))
        return json_response(await cues.update(account, cue_id, draft))

    @delete(
        "/v1/cues/{cue_id:str}",
        summary="Delete a cue",
        tags=["cues"],
        **doc(status=204, errors=[CueNotFound()]),
    )
    async def delete_cue(account: CurrentAccount, cue_id: FromPath[str]) -> None:
        await cues.delete(account, path_cue_id(cue_id))

    @post(
        "/v1/cues/{cue_id:str}/fire",
        summary="Fire a cue now (or at send_at)",
        tags=["cues"],
        **doc(
            body=FireRequest,
            body_required=False,
            errors=[
                CueNotFound(),
                InvalidPayloadSize(),
                InvalidPayload(),
                InvalidSchedule("Scheduled time must not be after 2199-12-31T23:59:59.999999Z"),
                api_error(
                    409,
                    "idempotency_key_conflict",
                    f"Idempotency key reused with a different request. Existing execution: {ex.EXECUTION_ID}",
                ),
            ],
            body_example=ex.FIRE,
            example=ex.FIRED,
        ),
    )
    async def fire_cue(
        account: CurrentAccount, cue_id: FromPath[str], data: RawJSON = b""
    ) -> Response[FireResult]:
        cue_id = path_cue_id(cue_id)
        req = parse_fire(read_json(data, required=False))
        return json_response(await rt.executions.fire(account, cue_id, req))

    return [
        create_cue,
        list_cues,
        bulk_delete,
        _bulk_status(rt, "paused", "pause"),
        _bulk_status(rt, "active", "resume"),
        get_cue,
        patch_cue,
        delete_cue,
        fire_cue,
    ]
