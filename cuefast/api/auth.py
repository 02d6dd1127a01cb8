"""/v1/auth/*: registration, API keys, account, webhook and alert secrets (CONTRACT.md §6)."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, get, patch, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import HeaderParameter

from cuefast.api import examples as ex
from cuefast.api.deps import CurrentAccount
from cuefast.api.http import json_response, read_json
from cuefast.api.openapi import RawJSON, doc
from cuefast.client.account_models import (
    AccountInfo,
    AccountUpdated,
    AlertWebhookSecret,
    AlertWebhookSecretRotation,
    KeyReveal,
    KeyRotation,
    Registration,
    WebhookSecret,
    WebhookSecretRotation,
)
from cuefast.client.bodies import AccountUpdate, RegisterRequest
from cuefast.errors import (
    ConfirmationRequired,
    DuplicateEmail,
    InvalidAlertWebhookURL,
    NoFields,
    NotFound,
)
from cuefast.runtime import Runtime
from cuefast.services.accounts import require_confirmation

Confirm = Annotated[
    str | None,
    HeaderParameter(name="X-Confirm-Destructive", description="must be `true` (destructive action)"),
]
_CONFIRM = ConfirmationRequired()


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    accounts = rt.accounts

    @post(
        "/v1/auth/register",
        summary="Register an account",
        tags=["auth"],
        **doc(
            status=201,
            body=RegisterRequest,
            auth=False,
            errors=[DuplicateEmail(), NotFound("Registration is disabled", code="not_found")],
            body_example={"email": "alice@example.com"},
            example=ex.REGISTRATION,
        ),
    )
    async def register(data: RawJSON = b"") -> Response[Registration]:
        if not rt.settings.allow_register:
            raise NotFound("Registration is disabled", code="not_found")
        return json_response(await accounts.register(read_json(data)))

    @post(
        "/v1/auth/key/regenerate",
        summary="Replace the API key",
        tags=["auth"],
        **doc(errors=[_CONFIRM], example=ex.KEY_ROTATION),
    )
    async def regenerate_key(account: CurrentAccount, confirm: Confirm = None) -> Response[KeyRotation]:
        require_confirmation(confirm)
        return json_response(await accounts.rotate_key(account))

    @get(
        "/v1/auth/key",
        summary="Reveal the API key (when enabled)",
        tags=["auth"],
        **doc(example=ex.KEY_REVEAL),
    )
    async def reveal_key(account: CurrentAccount) -> Response[KeyReveal]:
        return json_response(accounts.reveal_key(account))

    @get("/v1/auth/me", summary="The account", tags=["auth"], **doc(example=ex.ACCOUNT))
    async def me(account: CurrentAccount) -> Response[AccountInfo]:
        return json_response(await accounts.me(account))

    @patch(
        "/v1/auth/me",
        summary="Change e-mail or alert webhook URL",
        tags=["auth"],
        **doc(
            body=AccountUpdate,
            errors=[NoFields(), DuplicateEmail(), InvalidAlertWebhookURL("URL must use https://")],
            body_example={"alert_webhook_url": "https://ops.example.com/cuefast-alerts"},
            example={"updated_at": "2026-11-23T11:50:02.331877+00:00"},
        ),
    )
    async def patch_me(account: CurrentAccount, data: RawJSON = b"") -> Response[AccountUpdated]:
        return json_response(await accounts.patch_me(account, read_json(data)))

    @get(
        "/v1/auth/webhook-secret",
        summary="The webhook signing secret",
        tags=["auth"],
        **doc(example={"webhook_secret": "whsec_" + "0" * 64}),
    )
    async def webhook_secret(account: CurrentAccount) -> Response[WebhookSecret]:
        return json_response({"webhook_secret": account.wh_secret})

    @post(
        "/v1/auth/webhook-secret/regenerate",
        summary="Replace the webhook secret",
        tags=["auth"],
        **doc(
            errors=[_CONFIRM],
            example={"webhook_secret": "whsec_" + "1" * 64, "previous_secret_revoked": True},
        ),
    )
    async def regenerate_webhook_secret(
        account: CurrentAccount, confirm: Confirm = None
    ) -> Response[WebhookSecretRotation]:
        require_confirmation(confirm)
        return json_response(await accounts.regenerate_webhook_secret(account))

    @get(
        "/v1/auth/alert-webhook-secret",
        summary="The alert webhook signing secret",
        tags=["auth"],
        **doc(example={"alert_webhook_secret": "2" * 64}),
    )
    async def alert_secret(account: CurrentAccount) -> Response[AlertWebhookSecret]:
        return json_response({"alert_webhook_secret": account.alert_secret})

    @post(
        "/v1/auth/alert-webhook-secret/regenerate",
        summary="Replace the alert webhook secret",
        tags=["auth"],
        **doc(errors=[_CONFIRM], example={"alert_webhook_secret": "3" * 64, "previous_secret_revoked": True}),
    )
    async def regenerate_alert_secret(
        account: CurrentAccount, confirm: Confirm = None
    ) -> Response[AlertWebhookSecretRotation]:
        require_confirmation(confirm)
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
