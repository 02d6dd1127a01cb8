"""/health, /status, /v1/info (CONTRACT.md §5)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from cuefast import __version__, metrics
from cuefast.api.http import json_response
from cuefast.api.openapi import doc
from cuefast.client.models import Health, Readiness, ServerInfo
from cuefast.durability import schema as pg
from cuefast.runtime import Runtime
from cuefast.times import fmt_offset, fmt_z


async def _redis_ok(rt: Runtime) -> bool:
    try:
        return await rt.store.system.ping()
    except Exception:
        return False


async def _postgres_ok(rt: Runtime) -> bool:
    return rt.pg_pool is not None and await pg.ping(rt.pg_pool)


STALE_POLLER_US = 30_000_000
HEALTH_EXAMPLE = {
    "status": "healthy",
    "version": __version__,
    "timestamp": "2026-11-23T11:41:18.397965+00:00",
    "services": {"redis": "ok", "postgres": "ok", "poller": "ok", "worker": "ok"},
    "poller": {
        "last_run": "2026-11-23T11:41:17.901233+00:00",
        "seconds_ago": 0,
        "cues_last_cycle": 3,
        "cycle_duration_ms": 4,
    },
    "workers": {"active_count": 1, "last_heartbeat": "2026-11-23T11:41:02.120044Z"},
    "queue": {"pending_outbox": 0, "stale_executions": 0, "pending_retries": 0, "pending_worker_claims": 2},
}
INFO_EXAMPLE = {
    "version": __version__,
    "authorization_backend": "SameTenantAuthorizationBackend",
    "authentication_paths": {"per_user_api_key": True, "internal_token_with_on_behalf_of": False},
    "disabled_primitives": [],
}


async def _poller(rt: Runtime) -> tuple[str, dict[str, Any]]:
    """The scheduler's last cycle: ("ok" | "stale" | "unknown", the /health poller object)."""
    try:
        poller = await rt.store.system.poller()
    except Exception:
        return "unknown", {"status": "unknown"}
    if poller is None:
        return "unknown", {"status": "unknown"}
    ago = max(0, rt.clock.now_us() - poller.last_run_us)
    info = {
        "last_run": fmt_offset(poller.last_run_us),
        "seconds_ago": ago // 1_000_000,
        "cues_last_cycle": poller.cues_last_cycle,
        "cycle_duration_ms": poller.cycle_duration_ms,
    }
    return ("ok" if ago <= STALE_POLLER_US else "stale"), info


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    @get(
        "/health",
        summary="Liveness and diagnostics",
        tags=["system"],
        **doc(auth=False, counted=False, store=False, example=HEALTH_EXAMPLE),
    )
    async def health() -> Response[Health]:
        redis_ok = await _redis_ok(rt)
        pg_ok = await _postgres_ok(rt)
        poller_status, poller = await _poller(rt)
        workers: dict[str, Any] = {"active_count": 0}
        queue = {"pending_outbox": 0, "stale_executions": 0, "pending_retries": 0, "pending_worker_claims": 0}
        delivery = "unknown"
        if redis_ok:
            now = rt.clock.now_us()
            read = await metrics.read_gauges(rt.store.system, now)
            gauges = {g.name: g for g in read if not g.labels}
            procs = [g.labels[0][1] for g in read if g.name == "cuefast_processes" and g.labels]
            if procs:  # processes that reported within 30 s (cuefast/metrics.py)
                delivery = "ok" if any("dispatcher" in r for r in procs) else "none"
            alive, latest = await rt.store.workers.alive(now, rt.settings.worker_alive_seconds)
            workers = {"active_count": alive}
            if alive and latest is not None:
                workers["last_heartbeat"] = fmt_z(latest)

            def gauge(name: str) -> int:
                g = gauges.get(name)
                return int(g.value) if g is not None else 0

            queue = {
                "pending_outbox": max(
                    0, gauge("cuefast_outbox_entries") - gauge("cuefast_webhook_attempts_in_flight")
                ),
                "stale_executions": await rt.store.delivery.stale_attempts(now),
                "pending_retries": gauge("cuefast_retry_backlog"),
                "pending_worker_claims": gauge("cuefast_worker_claimable"),
            }
        body: dict[str, Any] = {
            "status": "healthy" if redis_ok and pg_ok and poller_status != "stale" else "degraded",
            "version": __version__,
            "timestamp": fmt_offset(rt.clock.now_us()),
            "services": {
                "redis": "ok" if redis_ok else "error",
                "postgres": "ok" if pg_ok else "error",
                "poller": poller_status,
                "worker": delivery,
            },
            "poller": poller,
            "workers": workers,
            "queue": queue,
        }
        return json_response(body)

    @get(
        "/status",
        summary="Readiness",
        tags=["system"],
        **doc(
            auth=False,
            counted=False,
            store=False,
            example={"status": "healthy"},
            responses={
                503: ResponseSpec(
                    data_container=Readiness,
                    description="Redis unreachable",
                    generate_examples=False,
                    examples=[Example(value={"status": "down", "reason": "redis unreachable"})],
                )
            },
        ),
    )
    async def status() -> Response[Readiness]:
        if not await _redis_ok(rt):
            return json_response({"status": "down", "reason": "redis unreachable"}, 503)
        if not await _postgres_ok(rt):
            return json_response({"status": "degraded", "reason": "postgres unreachable"})
        if (await _poller(rt))[0] == "stale":
            return json_response({"status": "degraded", "reason": "poller stale"})
        return json_response({"status": "healthy"})

    @get(
        "/v1/info",
        summary="Server facts (no auth)",
        tags=["system"],
        **doc(auth=False, counted=False, store=False, example=INFO_EXAMPLE),
    )
    async def info() -> Response[ServerInfo]:
        disabled = [] if rt.settings.enforce_quotas else ["quotas"]
        return json_response(
            {
                "version": __version__,
                "authorization_backend": "SameTenantAuthorizationBackend",
                "authentication_paths": {"per_user_api_key": True, "internal_token_with_on_behalf_of": False},
                "disabled_primitives": disabled,
            }
        )

    @get("/openapi.json", summary="OpenAPI schema", tags=["system"], include_in_schema=False)
    async def openapi(request: Request[Any, Any, Any]) -> Response[Any]:
        schema = request.app.openapi_schema.to_schema()
        return json_response(schema)

    return [health, status, info, openapi]
