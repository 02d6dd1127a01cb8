"""The dashboard's forms (POST): sign-in (API key or magic link) and sign-out, fire, pause and resume, replay.

Every form carries a CSRF token (``csrf.py``); every action calls the service the API route
calls, with the signed-in account, so another account's cue or execution is "not found"."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect, Template

from cuefast.api.http import path_cue_id, path_execution_id
from cuefast.dashboard import csrf
from cuefast.dashboard.pages import SignedIn
from cuefast.dashboard.session import COOKIE, PATH, TTL_S, Sessions, Signed, over_tls, session_cookie
from cuefast.errors import CuefastError, ValidationFailed
from cuefast.runtime import Runtime
from cuefast.services.cue_input import parse_patch
from cuefast.services.executions import parse_fire

REASONS = {
    "expired": "Your session ended; sign in again.",
    "signed_out": "You are signed out.",
}


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if target and target.startswith("/dashboard/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard/cues"


def redirect(location: str, cookies: list[Cookie] | None = None) -> Redirect:
    return Redirect(location, status_code=303, cookies=cookies)


async def form(request: Request[Any, Any, Any], signed: Signed) -> dict[str, str]:
    """The posted form, once its CSRF token matched the session's."""
    data = await request.form()
    fields = {k: str(v) for k, v in data.items()}
    csrf.check(signed.csrf, fields.get(csrf.FIELD))
    return fields


def fire_body(fields: dict[str, str]) -> dict[str, Any]:
    """The fire form as the body ``POST /v1/cues/{id}/fire`` takes (checked by ``parse_fire``)."""
    body: dict[str, Any] = {}
    text = fields.get("payload_override", "").strip()
    if text:
        try:
            body["payload_override"] = msgspec.json.decode(text)
        except msgspec.DecodeError:
            raise ValidationFailed([("payload_override", "Not valid JSON")]) from None
    if fields.get("merge_strategy") in ("merge", "replace"):
        body["merge_strategy"] = fields["merge_strategy"]
    return body


def login_page(
    request: Request[Any, Any, Any],
    *,
    error: str = "",
    status: int = 200,
    next_path: str = "",
    notice: str = "",
) -> Template:
    token = request.cookies.get(csrf.LOGIN_COOKIE) or csrf.new_token()
    cookie = Cookie(
        key=csrf.LOGIN_COOKIE,
        value=token,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=over_tls(request),
    )
    reason = notice or REASONS.get(request.query_params.get("why") or "", "")
    return Template(
        template_name="login.html",
        context={
            "error": error,
            "reason": reason,
            "csrf": token,
            "next": safe_next(next_path or request.query_params.get("next")),
        },
        status_code=status,
        cookies=[cookie],
    )


def routes(rt: Runtime, sessions: Sessions) -> list[HTTPRouteHandler]:
    @get("/login")
    async def login_form(request: Request[Any, Any, Any]) -> Template:
        return login_page(request)

    @post("/login", status_code=303)
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        data = await request.form()
        fields = {k: str(v) for k, v in data.items()}
        csrf.check(request.cookies.get(csrf.LOGIN_COOKIE), fields.get(csrf.FIELD))
        key = fields.get("api_key", "").strip()
        target = safe_next(fields.get("next"))
        if not key:
            return login_page(request, error="Paste your API key.", status=400, next_path=target)
        try:
            session_id = await sessions.sign_in_with_key(key)
        except CuefastError as exc:
            if exc.status != 401:
                raise
            return login_page(request, error=exc.message, status=401, next_path=target)
        gone = Cookie(key=csrf.LOGIN_COOKIE, value="", path=PATH, max_age=0, httponly=True)
        return redirect(target, [session_cookie(request, session_id, TTL_S), gone])

    @post("/logout", status_code=303)
    async def logout(request: Request[Any, Any, Any], signed: SignedIn) -> Redirect:
        await form(request, signed)
        await sessions.sign_out(request)
        gone = Cookie(key=COOKIE, value="", path=PATH, max_age=0, httponly=True, samesite="lax")
        return redirect("/dashboard/login?why=signed_out", [gone])

    @post("/cues/{cue_id:str}/fire", status_code=303)
    async def fire(request: Request[Any, Any, Any], signed: SignedIn, cue_id: FromPath[str]) -> Redirect:
        fields = await form(request, signed)
        cue_id = path_cue_id(cue_id)
        fired = await rt.executions.fire(signed.account, cue_id, parse_fire(fire_body(fields)))
        return redirect(f"/dashboard/cues/{cue_id}?done=fired&execution={quote(str(fired['id']))}")

    async def set_status(request: Request[Any, Any, Any], signed: Signed, cue_id: str, status: str) -> None:
        await form(request, signed)
        await rt.cues.update(signed.account, path_cue_id(cue_id), parse_patch({"status": status}))

    @post("/cues/{cue_id:str}/pause", status_code=303)
    async def pause(request: Request[Any, Any, Any], signed: SignedIn, cue_id: FromPath[str]) -> Redirect:
        await set_status(request, signed, cue_id, "paused")
        return redirect(f"/dashboard/cues/{cue_id}?done=paused")

    @post("/cues/{cue_id:str}/resume", status_code=303)
    async def resume(request: Request[Any, Any, Any], signed: SignedIn, cue_id: FromPath[str]) -> Redirect:
        await set_status(request, signed, cue_id, "active")
        return redirect(f"/dashboard/cues/{cue_id}?done=resumed")

    @post("/executions/{execution_id:str}/replay", status_code=303)
    async def replay(
        request: Request[Any, Any, Any], signed: SignedIn, execution_id: FromPath[str]
    ) -> Redirect:
        await form(request, signed)
        done = await rt.executions.replay(signed.account, path_execution_id(execution_id))
        return redirect(f"/dashboard/executions/{quote(str(done['id']))}?done=replayed")

    return [login_form, login, logout, fire, pause, resume, replay]
