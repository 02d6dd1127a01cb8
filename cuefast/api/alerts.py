"""/v1/alerts: the account's alerts, newest first (CONTRACT.md §12.5)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from cuefast.api.http import json_response
from cuefast.runtime import Runtime
from cuefast.services.alerts import AlertService


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    service = AlertService(rt.store)

    @get("/v1/alerts", summary="List alerts (newest first)", tags=["alerts"])
    async def list_alerts(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await rt.accounts.authenticate(request.headers.get("authorization"))
        return json_response(await service.list(account, request.query_params))

    return [list_alerts]
