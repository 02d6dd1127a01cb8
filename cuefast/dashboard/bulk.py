"""The dashboard's bulk actions: pause or resume by label, replay the listed executions, a replay's page."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect, Template

from cuefast.dashboard.actions import form, redirect
from cuefast.dashboard.pages import EXECUTION_FILTERS, SignedIn, page
from cuefast.errors import ValidationFailed
from cuefast.runtime import Runtime
from cuefast.services.cue_status import set_status_many


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    @post("/cues/bulk", status_code=303)
    async def bulk_status(request: Request[Any, Any, Any], signed: SignedIn) -> Redirect:
        """Every cue of the account with the label ``key:value``: paused or active again (the
        API's ``POST /v1/cues/pause`` / ``resume`` by labels)."""
        fields = await form(request, signed)
        key, colon, value = fields.get("label", "").partition(":")
        to = fields.get("to")
        if not colon or not key or to not in ("paused", "active"):
            raise ValidationFailed([("label", "Give a label as key:value")])
        await set_status_many(rt.cues, signed.account, to, labels={key: value})
        done = "bulk_paused" if to == "paused" else "bulk_resumed"
        return redirect(f"/dashboard/cues?label={quote(fields['label'])}&done={done}")

    @post("/executions/replay", status_code=303)
    async def bulk_replay(request: Request[Any, Any, Any], signed: SignedIn) -> Redirect:
        """A bulk replay of the listed filter (``POST /v1/executions/replay``)."""
        fields = await form(request, signed)
        flt: dict[str, Any] = {k: v for k, v in fields.items() if k in EXECUTION_FILTERS and v.strip()}
        if "status__in" in flt:
            flt["status__in"] = [s.strip() for s in flt["status__in"].split(",") if s.strip()]
        if flt.pop("worker_id", None):  # not a replay filter: replaying more than listed is wrong
            raise ValidationFailed([("worker_id", "A bulk replay cannot select by worker")])
        body: dict[str, Any] = {"filter": flt}
        for name in ("limit", "rate_per_second"):
            text = fields.get(name, "").strip()
            if text:
                if not text.isdigit():
                    raise ValidationFailed([(name, "Input should be a whole number")])
                body[name] = int(text)
        job = await rt.replays.start(signed.account, body)
        return redirect(f"/dashboard/replays/{quote(job['id'])}")

    @get("/replays/{replay_id:str}")
    async def replay_page(
        request: Request[Any, Any, Any], signed: SignedIn, replay_id: FromPath[str]
    ) -> Template:
        job = await rt.replays.get(signed.account, replay_id)
        return page(request, signed, "replay.html", job=job)

    return [bulk_status, bulk_replay, replay_page]
