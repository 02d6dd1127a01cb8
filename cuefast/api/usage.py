"""/v1/usage: the month's usage, limits and the caller's rate-limit window (CONTRACT.md §13.1)."""

from __future__ import annotations

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from cuefast.api import examples as ex
from cuefast.api.deps import CurrentAccount
from cuefast.api.http import json_response
from cuefast.api.openapi import doc
from cuefast.client.models import Usage
from cuefast.runtime import Runtime
from cuefast.services.usage import UsageService


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    service = UsageService(rt.store, rt.clock)

    @get("/v1/usage", summary="Usage this month and limits", tags=["usage"], **doc(example=ex.USAGE))
    async def usage(account: CurrentAccount) -> Response[Usage]:
        return json_response(await service.usage(account))

    return [usage]
