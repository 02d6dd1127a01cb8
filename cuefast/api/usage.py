"""/v1/usage: the month's usage, limits and the caller's rate-limit window (CONTRACT.md §13.1)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from cuefast.api.http import json_response
from cuefast.runtime import Runtime
from cuefast.services.usage import UsageService


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    service = UsageService(rt.store, rt.clock)

    @get("/v1/usage", summary="Usage this month and limits", tags=["usage"])
    async def usage(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await rt.accounts.authenticate(request.headers.get("authorization"))
        return json_response(await service.usage(account))

    return [usage]
