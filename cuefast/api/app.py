"""The Litestar application: routes, the error envelope for every failure, OpenAPI."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi import OpenAPIConfig

from cuefast import __version__, dashboard, tracing
from cuefast.api import alerts as alerts_api
from cuefast.api import auth, cues, docs, echo, executions, login, metrics, replays, system, usage, workers
from cuefast.api.deps import account_provider
from cuefast.api.edge import Edge
from cuefast.api.fast import FastRoutes
from cuefast.api.http import error_response, json_response, unexpected
from cuefast.api.openapi import COMPONENTS
from cuefast.api.ratelimit import RateLimit
from cuefast.api.traced import Traced
from cuefast.errors import (
    CuefastError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RequestTooLarge,
    ValidationFailed,
)
from cuefast.runtime import Runtime


def _on_cuefast_error(_: Request[Any, Any, Any], exc: CuefastError) -> Response[Any]:
    return error_response(exc)


def _on_validation_exception(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Litestar's own parameter validation, in the contract's 422 shape (``query.<name>`` …).
    The handlers declare their parameters so that Litestar never validates anything itself
    (the services parse bodies and query strings); this keeps the envelope if one ever does."""
    problems: list[tuple[str, str]] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            source, key = item.get("source") or "body", item.get("key") or ""
            loc = f"{source}.{key}" if key else str(source)
            problems.append((loc, str(item.get("message") or "Invalid value")))
    return error_response(ValidationFailed(problems or [("body", str(exc.detail))]))


def _on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotFoundException):
        return error_response(NotFound())
    if isinstance(exc, MethodNotAllowedException):
        return error_response(MethodNotAllowed())
    if isinstance(exc, RequestEntityTooLarge):
        return error_response(RequestTooLarge())
    status = exc.status_code
    if status >= 500:
        return error_response(InternalError())
    return json_response(
        {"error": {"code": "http_error", "message": str(exc.detail), "status": status}}, status
    )


def _on_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return error_response(unexpected(exc, request.method, request.url.path))


def create_litestar(rt: Runtime, *, manage_runtime: bool = True) -> Litestar:
    """The Litestar app over ``rt``; with ``manage_runtime`` its lifespan starts/closes ``rt``."""
    handlers = [
        *system.routes(rt),
        *auth.routes(rt),
        *login.routes(rt),
        *cues.routes(rt),
        *executions.routes(rt),
        *replays.routes(rt),
        *workers.routes(rt),
        *echo.routes(rt),
        *usage.routes(rt),
        *alerts_api.routes(rt),
        *metrics.routes(rt),
        *docs.routes(),
        *dashboard.routes(rt),
    ]
    return Litestar(
        route_handlers=handlers,
        dependencies={"account": account_provider(rt.accounts)},
        return_dto=None,
        template_config=dashboard.TEMPLATES,
        exception_handlers={
            CuefastError: _on_cuefast_error,
            ValidationException: _on_validation_exception,
            HTTPException: _on_http_exception,
            Exception: _on_exception,
        },
        on_startup=[rt.start] if manage_runtime else [],
        on_shutdown=[rt.close] if manage_runtime else [],
        request_max_body_size=1_048_576,
        openapi_config=OpenAPIConfig(
            title="cuefast",
            version=__version__,
            description="CueAPI-compatible scheduler API. Errors use the envelope "
            '{"error": {"code", "message", "status"}}.',
            components=COMPONENTS,
            operation_id_creator=lambda handler, _method, _path: handler.handler_name,
            path="/docs",
            render_plugins=[docs.render_plugin()],
        ),
        logging_config=None,
        debug=False,
    )


def create_app(rt: Runtime, *, manage_runtime: bool = True) -> Edge | Traced:
    """The ASGI app to serve: the Litestar app behind the edge layer, which rate-limits too and
    answers the hot routes itself (``fast.py``); inside a span per request while tracing is on
    (``traced.py``; decided here, so without tracing the edge runs as it is)."""
    litestar = create_litestar(rt, manage_runtime=manage_runtime)
    edge = Edge(litestar, rt.metrics, RateLimit(rt), FastRoutes(rt))  # type: ignore[arg-type]
    return edge if tracing.tracer is None else Traced(edge)
