"""The web dashboard at /dashboard: server-rendered pages over the services the API uses.

``routes(rt)`` gives the Litestar router (pages, forms, sign-in) and the static files
router; ``TEMPLATES`` is the app's template config (Jinja2, autoescaped). Errors under
/dashboard are HTML pages, never the API's JSON envelope; a request without a live session
is sent to the sign-in form.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response, Router, get
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

from cuefast.api.http import unexpected
from cuefast.dashboard import actions, bulk, magic, pages
from cuefast.dashboard.session import Sessions, Signed, SignInRequired
from cuefast.errors import CuefastError, NotFound
from cuefast.runtime import Runtime

HERE = Path(__file__).parent
log = logging.getLogger(__name__)
HEADERS = [
    ResponseHeader(
        name="content-security-policy",
        value="default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ResponseHeader(name="x-frame-options", value="DENY"),
    ResponseHeader(name="x-content-type-options", value="nosniff"),
    ResponseHeader(name="referrer-policy", value="same-origin"),
]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = lambda name: f"/dashboard/static/{name}"
    return env


TEMPLATES: TemplateConfig[JinjaTemplateEngine] = TemplateConfig(
    instance=JinjaTemplateEngine.from_environment(_environment())
)


def _sign_in(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    target = request.url.path
    if request.method != "GET" or not target.startswith("/dashboard/") or target.endswith(".json"):
        target = "/dashboard/cues"
    why = "&why=expired" if exc.reason else ""
    return Redirect(f"/dashboard/login?next={quote(target)}{why}", status_code=303)


def _error_page(status: int, message: str) -> Template:
    return Template(
        template_name="error.html", context={"status": status, "message": message}, status_code=status
    )


def _on_error(_: Request[Any, Any, Any], exc: CuefastError) -> Response[Any]:
    if isinstance(exc, SignInRequired):
        return _sign_in(_, exc)
    return _error_page(exc.status, exc.message)


def _on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own refusals (a form it cannot parse: 400/422, 405 …) as pages too."""
    if exc.status_code >= 500:
        return _on_exception(_, exc)
    return _error_page(exc.status_code, str(exc.detail))


def _on_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    err = unexpected(exc, request.method, request.url.path)  # logged there
    return _error_page(err.status, err.message)


STATIC = {
    path.name: (path.read_bytes(), "text/css" if path.suffix == ".css" else "text/javascript")
    for path in (HERE / "static").iterdir()
    if path.suffix in (".css", ".js")
}
"""the files under static/, read once: served by name from this table, never from a path"""


@get("/static/{name:str}", cache_control=CacheControlHeader(max_age=300))
async def static_file(name: FromPath[str]) -> Response[bytes]:
    found = STATIC.get(name)
    if found is None:
        raise NotFound("No such file")
    return Response(found[0], media_type=f"{found[1]}; charset=utf-8")


def routes(rt: Runtime) -> list[Any]:
    sessions = Sessions(rt)

    async def signed(request: Request[Any, Any, Any]) -> Signed:
        return await sessions.signed(request)

    router = Router(
        path="/dashboard",
        route_handlers=[
            *pages.routes(rt),
            *actions.routes(rt, sessions),
            *magic.routes(rt, sessions),
            *bulk.routes(rt),
            static_file,
        ],
        dependencies={"signed": Provide(signed)},
        exception_handlers={
            CuefastError: _on_error,
            HTTPException: _on_http_exception,
            ValidationException: _on_http_exception,  # the app maps it to the envelope
            Exception: _on_exception,
        },
        response_headers=HEADERS,
        cache_control=CacheControlHeader(no_store=True),
        include_in_schema=False,
    )
    return [router]
