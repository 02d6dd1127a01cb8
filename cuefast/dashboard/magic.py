"""The dashboard's magic-link sign-in: a link mailed by ``services/login.py``, redeemed by a button."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.response import Template

from cuefast.api.ratelimit import client_ip
from cuefast.dashboard import csrf
from cuefast.dashboard.actions import login_page, redirect
from cuefast.dashboard.session import PATH, TTL_S, Sessions, session_cookie
from cuefast.errors import CuefastError
from cuefast.runtime import Runtime


def routes(rt: Runtime, sessions: Sessions) -> list[HTTPRouteHandler]:
    @post("/login/magic/send", status_code=303)
    async def magic_send(request: Request[Any, Any, Any]) -> Response[Any]:
        """Mail a one-time sign-in link (``LoginService.send_magic_link``: an account is made for
        a new address on first use, as register would; limited per address and per IP)."""
        data = await request.form()
        fields = {k: str(v) for k, v in data.items()}
        csrf.check(request.cookies.get(csrf.LOGIN_COOKIE), fields.get(csrf.FIELD))
        email = fields.get("email", "").strip()
        if not email or len(email) > 254 or "@" not in email or any(c.isspace() for c in email):
            return login_page(request, error="Enter your e-mail address.", status=400)
        base = rt.login.base_url
        try:
            await rt.login.send_magic_link(
                email,
                lambda token: f"{base}/dashboard/login/magic?token={token}",
                client_ip(request.scope),  # type: ignore[arg-type]
            )
        except CuefastError as exc:  # 429: too many links for this address or IP
            return login_page(request, error=exc.message, status=exc.status)
        return login_page(
            request, notice=f"A sign-in link is on its way to {email}; it works once, for 15 minutes."
        )

    @get("/login/magic")
    async def magic_link(request: Request[Any, Any, Any]) -> Template:
        """The mailed link: a page whose button signs in (a GET spends nothing, so a mail
        scanner that opens links cannot use the token up)."""
        token = request.query_params.get("token") or ""
        page = login_page(request)
        page.template_name = "magic.html"
        page.context["token"] = token
        return page

    @post("/login/magic", status_code=303)
    async def magic_sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
        data = await request.form()
        fields = {k: str(v) for k, v in data.items()}
        csrf.check(request.cookies.get(csrf.LOGIN_COOKIE), fields.get(csrf.FIELD))
        account_id = await rt.login.redeem_magic_link(fields.get("token", ""))
        account = None if account_id is None else await rt.login.account(account_id)
        if account is None:
            return login_page(
                request,
                error="That sign-in link is not valid any more: each works once, for 15 minutes.",
                status=400,
            )
        session_id = await sessions.sign_in_account(account)
        gone = Cookie(key=csrf.LOGIN_COOKIE, value="", path=PATH, max_age=0, httponly=True)
        return redirect("/dashboard/cues", [session_cookie(request, session_id, TTL_S), gone])

    return [magic_send, magic_link, magic_sign_in]
