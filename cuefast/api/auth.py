"""/v1/auth/*: registration, API keys, account, webhook and alert secrets (CONTRACT.md §6)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, patch, post
from litestar.handlers import HTTPRouteHandler

from cuefast.api.http import json_response, read_json
from cuefast.errors import NotFound
from cuefast.runtime import Runtime
from cuefast.services.accounts import require_confirmation


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    accounts = rt.accounts

    @post("/v1/auth/register", summary="Register an account", tags=["auth"])
    async def register(request: Request[Any, Any, Any]) -> Response[bytes]:
        if not rt.settings.allow_register:
            raise NotFound("Registration is disabled", code="not_found")
        return json_response(await accounts.register(await read_json(request)), 201)

    @post("/v1/auth/key/regenerate", summary="Replace the API key", tags=["auth"])
    async def regenerate_key(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        require_confirmation(request.headers.get("x-confirm-destructive"))
        return json_response(await accounts.rotate_key(account))

    @get("/v1/auth/key", summary="Reveal the API key (when enabled)", tags=["auth"])
    async def reveal_key(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response(accounts.reveal_key(account))

    @get("/v1/auth/me", summary="The account", tags=["auth"])
    async def me(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response(await accounts.me(account))

    @patch("/v1/auth/me", summary="Change e-mail or alert webhook URL", tags=["auth"])
    async def patch_me(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response(await accounts.patch_me(account, await read_json(request)))

    @get("/v1/auth/webhook-secret", summary="The webhook signing secret", tags=["auth"])
    async def webhook_secret(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response({"webhook_secret": account.wh_secret})

    @post("/v1/auth/webhook-secret/regenerate", summary="Replace the webhook secret", tags=["auth"])
    async def regenerate_webhook_secret(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        require_confirmation(request.headers.get("x-confirm-destructive"))
        return json_response(await accounts.regenerate_webhook_secret(account))

    @get("/v1/auth/alert-webhook-secret", summary="The alert webhook signing secret", tags=["auth"])
    async def alert_secret(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        return json_response({"alert_webhook_secret": account.alert_secret})

    @post(
        "/v1/auth/alert-webhook-secret/regenerate", summary="Replace the alert webhook secret", tags=["auth"]
    )
    async def regenerate_alert_secret(request: Request[Any, Any, Any]) -> Response[bytes]:
        account = await accounts.authenticate(request.headers.get("authorization"))
        require_confirmation(request.headers.get("x-confirm-destructive"))
        return json_response(await accounts.regenerate_alert_secret(account))

    return [
        register,
        regenerate_key,
        reveal_key,
        me,
        patch_me,
        webhook_secret,
        regenerate_webhook_secret,
        alert_secret,
        regenerate_alert_secret,
    ]
