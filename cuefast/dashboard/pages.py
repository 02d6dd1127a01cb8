"""The dashboard's pages (GET): every read goes through the services the API uses."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, SkipValidation
from litestar.response import Redirect, Template

from cuefast.api.executions import list_page
from cuefast.api.http import path_cue_id, path_execution_id, query_params
from cuefast.dashboard import live, words
from cuefast.dashboard.session import Signed
from cuefast.runtime import Runtime
from cuefast.services.alerts import ALERT_TYPES, AlertService
from cuefast.services.cue_labels import parse_selectors
from cuefast.services.executions import ExecutionFilters
from cuefast.services.usage import UsageService

SignedIn = SkipValidation[Signed]
"""the ``signed`` dependency of a page (the router provides it; no session: the sign-in form)"""
EXECUTION_STATUSES = (
    "pending",
    "delivering",
    "retrying",
    "retry_ready",
    "pending_outcome",
    "success",
    "failed",
    "missed",
    "outcome_timeout",
    "skipped",
    "cancelled",
)
OUTCOME_STATES = (
    "reported_success",
    "reported_failure",
    "verified_success",
    "verification_pending",
    "verification_failed",
)
TRIGGERS = ("scheduled", "manual_fire", "replay")
EXECUTION_FILTERS = ("cue_id", "status", "status__in", "worker_id", "outcome_state", "triggered_by")
CUE_PAGE = 50
TIMELINE = 20
NOTICES = {
    "fired": "Fired: a new execution was created.",
    "paused": "The cue is paused.",
    "resumed": "The cue is active again.",
    "replayed": "Replayed: this is the new execution.",
    "bulk_paused": "The active cues with that label are paused.",
    "bulk_resumed": "The paused cues with that label are active again.",
}


def plain(value: Any) -> Any:
    """A service's answer as plain Python (its ``msgspec.Raw`` parts decoded)."""
    return msgspec.json.decode(msgspec.json.encode(value))


def page(request: Request[Any, Any, Any], signed: Signed, name: str, **context: Any) -> Template:
    notice = NOTICES.get(request.query_params.get("done") or "")
    return Template(
        template_name=name,
        context={"signed": signed, "words": words, "path": request.url.path, "notice": notice, **context},
    )


def filled(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The query string's non-blank parameters (a form's empty fields are no filter)."""
    return {k: v for k, v in query_params(request.scope.get("query_string", b"")).items() if v.strip()}


def _of_cue(alerts: list[dict[str, Any]], cue_id: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a.get("cue_id") == cue_id]


def _offset(q: dict[str, str]) -> int:
    text = q.get("offset", "")
    return min(int(text), 10_000_000) if text.isdigit() else 0


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    alerts = AlertService(rt.store)
    usage = UsageService(rt.store, rt.clock)

    async def last_execution(signed: Signed, cue_id: str) -> dict[str, Any] | None:
        items, _, _ = await rt.executions.list(signed.account, ExecutionFilters(cue_id=cue_id), 1, 0)
        return plain(items[0]) if items else None

    @get("/", name="dashboard_home")
    async def home() -> Redirect:
        return Redirect("/dashboard/cues", status_code=303)

    @get("/cues")
    async def cues(request: Request[Any, Any, Any], signed: SignedIn) -> Template:
        q = filled(request)
        status, label = q.get("status"), q.get("label")
        offset = _offset(q)
        selectors = parse_selectors([label]) if label else None
        items, total = await rt.cues.list(signed.account, status, CUE_PAGE, offset, selectors)
        rows = plain(items)
        lasts = await asyncio.gather(*(last_execution(signed, c["id"]) for c in rows))
        for cue, last in zip(rows, lasts, strict=True):
            cue["last"] = last
        return page(
            request,
            signed,
            "cues.html",
            cues=rows,
            total=total,
            status=status,
            label=label or "",
            offset=offset,
            size=CUE_PAGE,
        )

    @get("/cues/{cue_id:str}")
    async def cue(request: Request[Any, Any, Any], signed: SignedIn, cue_id: FromPath[str]) -> Template:
        q = filled(request)
        offset = _offset(q)
        found = plain(await rt.cues.get(signed.account, path_cue_id(cue_id), TIMELINE, offset))
        recent = plain(await alerts.list(signed.account, {"limit": "100"}))["alerts"]
        capped = (found.get("delivery") or {}).get("max_concurrency")
        return page(
            request,
            signed,
            "cue.html",
            cue=found,
            cap=await rt.cues.cap_state(found["id"]) if capped else None,
            alerts=_of_cue(recent, cue_id),
            offset=offset,
            size=TIMELINE,
        )

    @get("/executions")
    async def executions(request: Request[Any, Any, Any], signed: SignedIn) -> Template:
        q = filled(request)
        found = plain(await list_page(rt.executions, signed.account, q))
        return page(
            request,
            signed,
            "executions.html",
            result=found,
            q=q,
            statuses=EXECUTION_STATUSES,
            outcome_states=OUTCOME_STATES,
            triggers=TRIGGERS,
            paging={k: v for k, v in q.items() if k in EXECUTION_FILTERS},
        )

    @get("/executions/{execution_id:str}")
    async def execution(
        request: Request[Any, Any, Any], signed: SignedIn, execution_id: FromPath[str]
    ) -> Template:
        found = plain(await rt.executions.get(signed.account, path_execution_id(execution_id)))
        return page(request, signed, "execution.html", execution=found)

    @get("/alerts")
    async def alert_list(request: Request[Any, Any, Any], signed: SignedIn) -> Template:
        q = filled(request)
        found = plain(await alerts.list(signed.account, q))
        return page(request, signed, "alerts.html", result=found, q=q, types=ALERT_TYPES)

    @get("/workers")
    async def workers(request: Request[Any, Any, Any], signed: SignedIn) -> Template:
        found = plain(await rt.workers.list_workers(signed.account))["workers"]

        async def claims(worker_id: str) -> int:
            held = ExecutionFilters(worker_id=worker_id, statuses=frozenset({"delivering"}))
            _, total, _ = await rt.executions.list(signed.account, held, 1, 0)
            return total

        counts = await asyncio.gather(*(claims(w["worker_id"]) for w in found))
        for w, n in zip(found, counts, strict=True):
            w["claims"] = n
        caps = await rt.work.caps.list(signed.account)
        return page(
            request,
            signed,
            "workers.html",
            workers=found,
            caps=caps,
            alive_s=rt.settings.worker_alive_seconds,
        )

    @get("/usage")
    async def usage_page(request: Request[Any, Any, Any], signed: SignedIn) -> Template:
        found = plain(await usage.usage(signed.account))
        return page(request, signed, "usage.html", usage=found)

    return [
        home,
        cues,
        cue,
        executions,
        execution,
        alert_list,
        workers,
        usage_page,
        *_live_routes(rt),
    ]


def _live_routes(rt: Runtime) -> list[HTTPRouteHandler]:
    @get("/live")
    async def live_page(request: Request[Any, Any, Any], signed: SignedIn) -> Template:
        private = bool(rt.settings.metrics_token)
        charts = None if private else live.charts(await live.read(rt))
        return page(request, signed, "live.html", private=private, charts=charts)

    @get("/live.json")
    async def live_json(signed: SignedIn) -> Response[Any]:
        if rt.settings.metrics_token:
            return Response({"private": True}, media_type="application/json")
        data = await live.read(rt)
        data["at"] = rt.clock.now_us() // 1000
        return Response(msgspec.json.encode(data), media_type="application/json")

    return [live_page, live_json]
