"""GET /metrics: the install's counters, histograms and live gauges in Prometheus text format.

Counters and histograms come from Redis, gauges are read live (see cuefast/metrics.py); the
format is 0.0.4. Exempt from rate limiting (§3.7); open by default, or behind
``Authorization: Bearer $CUEFAST_METRICS_TOKEN``."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from cuefast import metrics
from cuefast.errors import Unauthorized
from cuefast.runtime import Runtime


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    token = rt.settings.metrics_token

    @get("/metrics", summary="Prometheus metrics", tags=["system"], include_in_schema=False)
    async def metrics_page(request: Request[Any, Any, Any]) -> Response[bytes]:
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise Unauthorized("Invalid or missing metrics token")
        counters, gauges = await _read(rt)
        body = metrics.render(counters, gauges).encode()
        return Response(body, status_code=200, media_type=metrics.MEDIA_TYPE)  # + charset

    return [metrics_page]


async def _read(rt: Runtime) -> tuple[dict[str, int], list[metrics.Gauge]]:
    await rt.metrics_flusher.flush()  # this process's own counts are current
    counters = await rt.store.system.metrics()
    gauges = await metrics.read_gauges(rt.store.system, rt.clock.now_us())
    return counters, gauges
