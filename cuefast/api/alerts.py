"""/v1/alerts: the account's alerts, newest first (CONTRACT.md §12.5)."""

from __future__ import annotations

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import QueryParams

from cuefast.api import examples as ex
from cuefast.api.deps import CurrentAccount
from cuefast.api.http import json_response
from cuefast.api.openapi import OFFSET, Query, TextQuery, doc, limit
from cuefast.client.models import AlertList
from cuefast.errors import api_error
from cuefast.runtime import Runtime
from cuefast.services.alerts import ALERT_TYPES, AlertService

QUERY: list[Query | TextQuery] = [
    TextQuery("alert_type", "one of the alert types", enum=ALERT_TYPES),
    TextQuery("since", "alerts created at or after this instant", fmt="date-time"),
    limit(20),
    OFFSET,
]


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    service = AlertService(rt.store)

    @get(
        "/v1/alerts",
        summary="List alerts (newest first)",
        tags=["alerts"],
        **doc(
            query=QUERY,
            errors=[api_error(400, "invalid_filter", f"alert_type must be one of: {', '.join(ALERT_TYPES)}")],
            example=ex.ALERTS,
        ),
    )
    async def list_alerts(query: QueryParams, account: CurrentAccount) -> Response[AlertList]:
        return json_response(await service.list(account, query))

    return [list_alerts]
