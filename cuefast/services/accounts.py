"""Accounts, API keys and secrets (CONTRACT.md §3.4, §6), without HTTP.

API keys are stored only as SHA-256 hex (lookup key) plus their 12-char prefix. When
``CUEFAST_KEY_REVEAL_SECRET`` is set, a copy encrypted with AES-GCM (key derived from
the secret) is kept so ``GET /v1/auth/key`` can reveal it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cuefast import ssrf
from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.errors import (
    ConfirmationRequired,
    DuplicateEmail,
    InvalidAlertWebhookURL,
    InvalidSession,
    KeyRotated,
    NoFields,
    Unauthorized,
    UnsafeURL,
)
from cuefast.ids import (
    key_prefix,
    key_sha,
    new_account_id,
    new_alert_secret,
    new_api_key,
    new_webhook_secret,
    slug_candidates,
)
from cuefast.models import Account
from cuefast.months import month_of
from cuefast.services.validate import Checker, require_object
from cuefast.store import AuthResult, Status, Store, Window
from cuefast.store.accounts import Reservation
from cuefast.times import fmt_offset

ROTATED_KEY_TTL_MS = 24 * 3600 * 1000
_EMAIL = re.compile(
    r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def check_email(c: Checker, loc: str, value: Any) -> str | None:
    text = c.string(loc, value)
    if not isinstance(text, str):
        return None
    local = text.split("@", 1)[0]
    if (
        len(text) > 254
        or not _EMAIL.fullmatch(text)  # (``match`` let a trailing newline through ``$``)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
    ):
        c.add(loc, "value is not a valid email address")
        return None
    return text


def _account_of(res: AuthResult) -> Account:
    if res.status is Status.ROTATED:
        raise KeyRotated()
    if res.account is None:
        raise Unauthorized("Invalid API key")
    return res.account


class KeyVault:
    """Encrypts API keys for reveal; disabled when the secret is empty."""

    def __init__(self, secret: str) -> None:
        self._aead = (
            AESGCM(hashlib.sha256(b"cuefast-key-reveal:" + secret.encode()).digest()) if secret else None
        )

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    def seal(self, api_key: str) -> str:
        if self._aead is None:
            return ""
        nonce = secrets.token_bytes(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, api_key.encode(), None)).decode()

    def open(self, sealed: str) -> str | None:
        if self._aead is None or not sealed:
            return None
        try:
            raw = base64.b64decode(sealed)
            return self._aead.decrypt(raw[:12], raw[12:], None).decode()
        except (InvalidTag, ValueError):
            return None  # sealed under another secret


class AccountService:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.vault = KeyVault(settings.key_reveal_secret)
        self.policy = ssrf.Policy(
            allow_private=settings.allow_private_callbacks, allow_http=settings.allow_http_callbacks
        )
        self._month_cache: tuple[int, str] = (-1, "")
        self.session_account: Callable[[str], Awaitable[Account]] | None = None
        """the account of a session JWT (``LoginService`` sets it when sessions are configured)"""

    async def authenticate(self, authorization: str | None) -> Account:
        """The account of this Authorization header. The rate-limit layer has usually resolved
        it already (same script call as the count, ``counted_request``): then no Redis call."""
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("Missing or invalid Authorization header")
        token = authorization[7:].strip()
        if not token.startswith("cue_sk_"):
            if self.session_account is None:
                raise InvalidSession()
            return await self.session_account(token)  # a session JWT (§16.2, services/login.py)
        pre = _RESOLVED.get()
        if pre is not None and pre[0] == authorization:
            return _account_of(pre[1])
        return await self.authenticate_key_sha(key_sha(token))

    async def authenticate_key_sha(self, sha: str) -> Account:
        """The account of the API key whose SHA-256 is ``sha`` (the dashboard's sessions hold the
        sha of the key that signed in): the same script and the same 401s as ``authenticate``."""
        return _account_of(
            await self.store.accounts.authenticate(sha, count=False, now_us=self.clock.now_us())
        )

    async def count_request(
        self, authorization: str | None, ip: str, now_us: int, reserve: Reservation | None = None
    ) -> AuthResult:
        """Authenticate (when the header carries an API key) and count the request in its
        rate-limit window — the key's, or the client IP's without a valid key (§3.7);
        ``reserve``: a create's cue name, reserved in the same call once the request is counted."""
        key = api_key_of(authorization)
        return await self.store.accounts.authenticate(
            key_sha(key) if key else "",
            ip=ip,
            ip_limit=self.settings.ip_rate_limit,
            month=self._month(now_us),
            count=True,
            now_us=now_us,
            reserve=reserve,
        )

    def _month(self, now_us: int) -> str:
        day = now_us // 86_400_000_000
        if self._month_cache[0] != day:
            self._month_cache = (day, month_of(now_us))
        return self._month_cache[1]

    async def register(self, body: Any) -> dict[str, Any]:
        obj = require_object(body)
        c = Checker()
        email = None
        if "email" in obj:
            email = check_email(c, "body.email", obj["email"])
        else:
            c.add("body.email", "Field required")
        c.raise_if_any()
        assert email is not None
        _, api_key = await self.create(email)
        return {"api_key": api_key, "email": email}

    async def create(self, email: str) -> tuple[str, str]:
        """A new account for a checked ``email``: (account id, API key); ``DuplicateEmail`` when
        the e-mail is taken. Register and the magic-link login (services/login.py) both create
        accounts here."""
        s = self.settings
        account_id = new_account_id()
        api_key = self._new_key(account_id)
        now = self.clock.now_us()
        account = Account(
            id=account_id,
            email=email,
            email_lc=email.lower(),
            plan=s.default_plan,
            cue_limit=s.default_cue_limit,
            exec_limit=s.default_monthly_execution_limit,
            rate_limit=s.default_rate_limit_per_minute,
            wh_secret=new_webhook_secret(),
            alert_secret=new_alert_secret(),
            key_sha=key_sha(api_key),
            key_prefix=key_prefix(api_key),
            key_enc=self.vault.seal(api_key),
            created=now,
            updated=now,
        )
        status, _ = await self.store.accounts.register(account, slug_candidates(email))
        if status is Status.EXISTS:
            raise DuplicateEmail()
        if status is Status.EXHAUSTED:  # pragma: no cover - 7 random candidates all taken
            raise RuntimeError("could not allocate a slug")
        return account_id, api_key

    def _new_key(self, account_id: str) -> str:
        """A new API key of the account's auth shard (its hash maps there: authentication is one
        script on that one shard). Drawn by rejection — 64 tries on average, about 0.1 ms; the
        key keeps 122 of its 128 random bits."""
        keys = self.store.keys
        home = keys.account_shard(account_id)
        while True:
            api_key = new_api_key()
            if keys.key_shard(key_sha(api_key)) == home:
                return api_key

    async def rotate_key(self, account: Account) -> dict[str, Any]:
        api_key = self._new_key(account.id)
        status = await self.store.accounts.rotate_key(
            account.id,
            account.key_sha,
            key_sha(api_key),
            key_prefix(api_key),
            self.vault.seal(api_key),
            ttl_ms=ROTATED_KEY_TTL_MS,
            now_us=self.clock.now_us(),
        )
        if status is not Status.OK:
            raise KeyRotated()
        return {"api_key": api_key, "previous_key_revoked": True}

    def reveal_key(self, account: Account) -> dict[str, Any]:
        if not self.vault.enabled:
            return {
                "api_key": None,
                "prefix": account.key_prefix,
                "message": "Key reveal is disabled on this server.",
            }
        key = self.vault.open(account.key_enc)
        if key is None or key_sha(key) != account.key_sha:
            return {
                "api_key": None,
                "prefix": account.key_prefix,
                "message": "Key not available. Regenerate to enable Reveal.",
            }
        return {"api_key": key}

    async def me(self, account: Account) -> dict[str, Any]:
        active, _, counters = await self.store.usage.counts(account.id, month_of(self.clock.now_us()))
        return {
            "email": account.email,
            "plan": account.plan,
            "active_cues": active,
            "active_cue_limit": account.cue_limit,
            "executions_this_month": counters.get("executions", 0),
            "monthly_execution_limit": account.exec_limit,
            "rate_limit_per_minute": account.rate_limit,
            "has_webhook_secret": bool(account.wh_secret),
            "api_key_prefix": account.key_prefix,
            "slug": account.slug,
        }

    async def patch_me(self, account: Account, body: Any) -> dict[str, Any]:
        obj = require_object(body)
        c = Checker()
        email = None
        url: str | None = None
        has_email = obj.get("email") is not None
        has_url = "alert_webhook_url" in obj and obj["alert_webhook_url"] is not None
        if not has_email and not has_url:
            raise NoFields()
        if has_email:
            email = check_email(c, "body.email", obj["email"])
        if has_url:
            raw = obj["alert_webhook_url"]
            url = c.string("body.alert_webhook_url", raw, max_len=2048) if raw != "" else ""
        c.raise_if_any()
        if url:
            try:
                await ssrf.check_url(url, self.policy)
            except UnsafeURL as exc:
                raise InvalidAlertWebhookURL(exc.message) from None
        now = self.clock.now_us()
        if (
            email is not None
            and await self.store.accounts.change_email(account.id, email, now) is not Status.OK
        ):
            raise DuplicateEmail()
        if has_url:
            await self.store.accounts.set_fields(account.id, {"alert_url": url or "", "updated": now})
        return {"updated_at": fmt_offset(now)}

    async def regenerate_webhook_secret(self, account: Account) -> dict[str, Any]:
        secret = new_webhook_secret()
        await self.store.accounts.set_fields(
            account.id, {"wh_secret": secret, "updated": self.clock.now_us()}
        )
        return {"webhook_secret": secret, "previous_secret_revoked": True}

    async def regenerate_alert_secret(self, account: Account) -> dict[str, Any]:
        secret = new_alert_secret()
        await self.store.accounts.set_fields(
            account.id, {"alert_secret": secret, "updated": self.clock.now_us()}
        )
        return {"alert_webhook_secret": secret, "previous_secret_revoked": True}


def api_key_of(authorization: str | None) -> str | None:
    """The API key in an Authorization header (``Bearer cue_sk_…``), else None."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    token = authorization[7:].strip()
    return token if token.startswith("cue_sk_") else None


# The rate-limit layer's auth result for the request being served: (Authorization header,
# result). A context variable, so every handler's ``authenticate()`` finds it without a
# second Redis call and without the handlers knowing about it.
_RESOLVED: ContextVar[tuple[str | None, AuthResult] | None] = ContextVar("cuefast_auth", default=None)


def counted_request(
    authorization: str | None, result: AuthResult
) -> Token[tuple[str | None, AuthResult] | None]:
    """Serve the current request with ``result`` as its already resolved authentication, until
    ``served`` is called with the token this returns."""
    return _RESOLVED.set((authorization, result))


def served(token: Token[tuple[str | None, AuthResult] | None]) -> None:
    """The request ``token`` (from ``counted_request``) was for is done."""
    _RESOLVED.reset(token)


def current_window() -> Window | None:
    """The rate-limit window of the request being served (None: not counted)."""
    pre = _RESOLVED.get()
    return None if pre is None else pre[1].window


def require_confirmation(header: str | None) -> None:
    if header is None or header.strip() != "true":
        raise ConfirmationRequired()
