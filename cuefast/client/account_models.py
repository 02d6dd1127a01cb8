"""SDK response models of accounts, API keys, device-code login and sessions (CONTRACT.md §6, §16)."""

from __future__ import annotations

import datetime as dt

from cuefast.client._model import Model

# --- auth and account (§6) -----------------------------------------------------------------


class Registration(Model, kw_only=True):
    api_key: str
    email: str


class KeyRotation(Model, kw_only=True):
    api_key: str
    previous_key_revoked: bool = True


class KeyReveal(Model, kw_only=True):
    """``api_key`` when it can be revealed; else null with the key's ``prefix`` and why."""

    api_key: str | None = None
    prefix: str | None = None
    message: str | None = None


class AccountInfo(Model, kw_only=True):
    email: str
    plan: str
    active_cues: int = 0
    active_cue_limit: int = 0
    executions_this_month: int = 0
    monthly_execution_limit: int = 0
    rate_limit_per_minute: int = 0
    has_webhook_secret: bool = True
    api_key_prefix: str | None = None
    slug: str | None = None


class AccountUpdated(Model, kw_only=True):
    updated_at: dt.datetime


class WebhookSecret(Model, kw_only=True):
    webhook_secret: str


class WebhookSecretRotation(Model, kw_only=True):
    webhook_secret: str
    previous_secret_revoked: bool = True


class AlertWebhookSecret(Model, kw_only=True):
    alert_webhook_secret: str


class AlertWebhookSecretRotation(Model, kw_only=True):
    alert_webhook_secret: str
    previous_secret_revoked: bool = True


# --- login: device code and sessions (§16) ----------------------------------------------------


class DeviceCode(Model, kw_only=True):
    """``POST /v1/auth/device-code`` (201): where the person signs in, and for how long."""

    verification_url: str
    expires_in: int


class DevicePoll(Model, kw_only=True):
    """``pending``, ``email_sent``, ``claimed``, ``expired``; or, once, ``approved`` with the
    account's e-mail, its API key (a new account's, or a revealed one) or ``existing_user``,
    and a one-time ``session_token`` for ``POST /v1/auth/session``."""

    status: str
    email: str | None = None
    api_key: str | None = None
    existing_user: bool | None = None
    session_token: str | None = None


class EmailSent(Model, kw_only=True):
    status: str = "email_sent"


class Session(Model, kw_only=True):
    """A session JWT (HS256, 24 h) and the account's e-mail."""

    session_token: str
    email: str
