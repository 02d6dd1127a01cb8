"""/v1/cues: create, list, get, PATCH, delete, bulk delete (CONTRACT.md §7)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, patch, post
from litestar.handlers import HTTPRouteHandler

from cuefast.api.http import json_response, path_cue_id, read_json
from cuefast.errors import CueNotFound
from cuefast.runtime import Runtime
from cuefast.services.accounts import require_confirmation
from cuefast.services.cue_input import parse_create, parse_patch
from cuefast.services.executions import parse_fire
from cuefast.services.validate import MAX_OFFSET, Checker, query_int, require_object


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    accounts = rt.accounts
    cues = rt.cues

    @post("/v1/cues", summary="Create a cue", tags=["cues"])
    async def create_cue(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        draft = parse_create(await read_json(request))
        return json_response(await cues.create(account, draft), 201)

    @get("/v1/cues", summary="List cues (newest first)", tags=["cues"])
    async def list_cues(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        q = request.query_params
        limit = query_int(q, "limit", 50, 1, 100)
        offset = query_int(q, "offset", 0, 0, MAX_OFFSET)
        items, total = await cues.list(account, q.get("status"), limit, offset)
        return json_response({"cues": items, "total": total, "limit": limit, "offset": offset})

    @post("/v1/cues/bulk-delete", summary="Delete up to 100 cues", tags=["cues"])
    async def bulk_delete(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        require_confirmation(request.headers.get("x-confirm-destructive"))
        body = require_object(await read_json(request))
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

    @get("/v1/cues/{cue_id:str}", summary="Get a cue with a page of its executions", tags=["cues"])
    async def get_cue(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        cue_id = path_cue_id(request)
        q = request.query_params
        limit = query_int(q, "execution_limit", 10, 1, 100)
        offset = query_int(q, "execution_offset", 0, 0, MAX_OFFSET)
        out = await cues.get(account, cue_id, limit, offset)
        return json_response(out)

    @patch("/v1/cues/{cue_id:str}", summary="Change a cue (only the fields sent)", tags=["cues"])
    async def patch_cue(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        cue_id = path_cue_id(request)
        draft = parse_patch(await read_json(request))
        return json_response(await cues.update(account, cue_id, draft))

    @delete("/v1/cues/{cue_id:str}", summary="Delete a cue", tags=["cues"], status_code=204)
    async def delete_cue(request: Request[Any, Any, Any]) -> None:
        account = await accounts.authenticate(request.headers.get("authorization"))
        await cues.delete(account, path_cue_id(request))

    @post(
        "/v1/cues/{cue_id:str}/fire", summary="Fire a cue now (or at send_at)", tags=["cues"], status_code=200
    )
    async def fire_cue(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        cue_id = path_cue_id(request)
        req = parse_fire(await read_json(request, required=False))
        return json_response(await rt.executions.fire(account, cue_id, req))

    return [create_cue, list_cues, bulk_delete, get_cue, patch_cue, delete_cue, fire_cue]
