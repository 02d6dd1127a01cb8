"""Login for people (CONTRACT.md §16): device codes, magic links, sessions — without HTTP.

* Device code (``cueapi login``, the worker's key recovery): a client-chosen code (6–128
  characters) lives 900 s: ``pending`` → ``email_sent`` (a magic link was mailed) →
  ``approved`` (the link was opened) → ``claimed`` (the first poll after approval took the API
  key and a one-time session token). Unknown or expired codes poll as ``expired``.
* Magic links carry a 64-hex token, single use, 900 s. Tokens, session tokens and device codes
  are stored only as SHA-256 (store/login.py) and checked with ``hmac.compare_digest``.
* The account: an unknown e-mail gets a new account exactly as ``POST /v1/auth/register``
  makes one (``AccountService.create``; refused while ``CUEFAST_ALLOW_REGISTER=false``), a
  known e-mail its existing account, whose key is never rotated by a login. The poll hands
  over the new account's key, or the existing account's key when it can be revealed
  (``CUEFAST_KEY_REVEAL_SECRET``), else ``existing_user: true`` and no key (as the reference).
* Sessions: the one-time session token is exchanged for an HS256 JWT (services/session_jwt.py)
  signed with ``CUEFAST_SESSION_SECRET``; without it the session routes answer 503.

For the dashboard: ``send_magic_link`` mails a link of the caller's making, and
``redeem_magic_link`` turns the token in it into an account id (single use); ``new_session``
signs a session JWT for that account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.errors import (
    DeviceCodeExists,
    DeviceCodeExpired,
    DeviceCodeNotFound,
    DuplicateEmail,
    InvalidDeviceCode,
    InvalidDeviceStatus,
    InvalidSession,
    InvalidSessionToken,
    RateLimited,
    SessionExpired,
    SessionUnavailable,
    UserNotFound,
)
from cuefast.models import Account
from cuefast.services.accounts import AccountService, check_email
from cuefast.services.session_jwt import Expired, Invalid, SessionCodec
from cuefast.services.validate import Checker, require_object
from cuefast.store import Status, Store
from cuefast.store.login import Limited

log = logging.getLogger(__name__)

DEVICE_CODE_SECONDS = 900
"""a device code's life (``expires_in``), and a magic link's"""
RECORD_KEEP_SECONDS = DEVICE_CODE_SECONDS + 3600
"""how long a device code's record is kept (an expired code answers ``device_code_expired``)"""
SESSION_TOKEN_SECONDS = 900
"""how long the one-time session token of an approved code can be exchanged"""
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000
DEVICE_CODES_PER_IP_HOUR = 5
POLLS_PER_CODE_MINUTE = 30
LINKS_PER_EMAIL_HOUR = 3
LINKS_PER_IP_HOUR = 10
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class MailSender(Protocol):
    """What the login needs of ``engine.mail.Mailer`` (the runtime hands it one; services do not
    import the engine)."""

    def message(self, to: str, subject: str, text: str) -> EmailMessage: ...

    async def send(self, msg: EmailMessage) -> None: ...


class LoginFailed(Exception):
    """A magic link that cannot sign in (shown on the verify page; ``message`` is for people)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Verified(NamedTuple):
    email: str
    new_account: bool


def _seal_key(device_code: str) -> AESGCM:
    return AESGCM(hashlib.sha256(b"cuefast-device-seal:" + device_code.encode()).digest())


def seal(device_code: str, data: dict[str, str]) -> str:
    """``data`` encrypted with a key derived from the device code (the poller knows the code;
    Redis holds only its SHA-256, a different derivation)."""
    nonce = secrets.token_bytes(12)
    return base64.b64encode(
        nonce + _seal_key(device_code).encrypt(nonce, msgspec.json.encode(data), None)
    ).decode()


def unseal(device_code: str, sealed: str) -> dict[str, str] | None:
    try:
        raw = base64.b64decode(sealed)
        data = msgspec.json.decode(_seal_key(device_code).decrypt(raw[:12], raw[12:], None))
    except (InvalidTag, ValueError, msgspec.DecodeError):
        return None
    return data if isinstance(data, dict) else None


def device_code_of(body: Any, *, strict: bool = True) -> str | None:
    """The ``device_code`` of a body: 422 when absent or not one line of text; 400
    ``invalid_device_code`` outside 6–128 characters (``strict=False``: None instead)."""
    obj = require_object(body)
    c = Checker()
    code = None
    if "device_code" not in obj:
        c.add("body.device_code", "Field required")
    else:
        code = c.string("body.device_code", obj["device_code"], single_line=True)
    c.raise_if_any()
    assert isinstance(code, str)
    if not 6 <= len(code) <= 128:
        if strict:
            raise InvalidDeviceCode()
        return None
    return code


def _retry_s(oldest_us: int, window_us: int, now_us: int) -> int:
    return max(1, -(-(oldest_us + window_us - now_us) // 1_000_000))


class LoginService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        accounts: AccountService,
        mailer: MailSender | None = None,
    ) -> None:
        """``mailer``: sends the magic links (``CUEFAST_SMTP_URL``); None: they are logged."""
        self.store = store
        self.settings = settings
        self.clock = clock
        self.accounts = accounts
        self.base_url = settings.base_url.rstrip("/")
        self.mailer = mailer
        self.codec = SessionCodec(settings.session_secret) if settings.session_secret else None
        if self.codec is not None:
            accounts.session_account = self.session_account

    # ---- device code (§16.1) -----------------------------------------------------------
    async def create_device_code(self, body: Any, ip: str) -> dict[str, Any]:
        code = device_code_of(body)
        assert code is not None
        now = self.clock.now_us()
        await self._limit("dc", ip, DEVICE_CODES_PER_IP_HOUR, HOUR_US, now)
        created = await self.store.login.create_device(
            sha(code),
            now_us=now,
            expires_us=now + DEVICE_CODE_SECONDS * 1_000_000,
            keep_s=RECORD_KEEP_SECONDS,
        )
        if not created:
            raise DeviceCodeExists()
        return {
            "verification_url": f"{self.base_url}/auth/device?code={quote(code, safe='')}",
            "expires_in": DEVICE_CODE_SECONDS,
        }

    async def poll(self, body: Any) -> dict[str, Any]:
        code = device_code_of(body, strict=False)
        if code is None:
            return {"status": "expired"}  # never a valid code
        now = self.clock.now_us()
        res = await self.store.login.poll(sha(code), limit=POLLS_PER_CODE_MINUTE, now_us=now)
        if isinstance(res, Limited):
            raise RateLimited(_retry_s(res.oldest_us, MINUTE_US, now))
        if res.status != "approved":
            return {"status": "email_sent" if res.status == "verifying" else res.status}
        opened = unseal(code, res.sealed) or {}
        out: dict[str, Any] = {"status": "approved", "email": res.email}
        key = opened.get("k") or (None if res.new else await self._revealed_key(res.account_id))
        if key:
            out["api_key"] = key
        else:
            out["existing_user"] = True
        if opened.get("s"):
            out["session_token"] = opened["s"]
        return out

    async def _revealed_key(self, account_id: str) -> str | None:
        fields = await self.store.login.account_fields(account_id)
        if not fields:
            return None
        account = msgspec.convert(fields, Account, strict=False)
        key = self.accounts.reveal_key(account).get("api_key")
        return key if isinstance(key, str) else None

    async def submit_email(self, body: Any, ip: str) -> dict[str, Any]:
        obj = require_object(body)
        c = Checker()
        email = None
        if "email" not in obj:
            c.add("body.email", "Field required")
        else:
            email = check_email(c, "body.email", obj["email"])
        code = None
        if "device_code" not in obj:
            c.add("body.device_code", "Field required")
        else:
            code = c.string("body.device_code", obj["device_code"], single_line=True, max_len=128)
        c.raise_if_any()
        assert isinstance(code, str) and email is not None
        now = self.clock.now_us()
        await self._link_limits(email, ip, now)
        token = secrets.token_hex(32)
        status, held = await self.store.login.step(
            sha(code),
            now_us=now,
            from_status="pending",
            to_status="email_sent",
            fields={"tok": sha(token), "email": email},
        )
        if status is Status.NOT_FOUND:
            raise DeviceCodeNotFound()
        if status is Status.WRONG_STATE:
            if held == "expired":
                raise DeviceCodeExpired()
            raise InvalidDeviceStatus("email_sent" if held == "verifying" else held)
        link = f"{self.base_url}/v1/auth/verify?token={token}&device_code={quote(code, safe='')}"
        await self._send(email, link)
        return {"status": "email_sent"}

    async def verify(self, token: str, device_code: str) -> Verified:
        """Open a device code's magic link: the account (created for a new e-mail) and the code
        ``approved``; ``LoginFailed`` says why not."""
        if not _HEX64.fullmatch(token) or not 6 <= len(device_code) <= 128:
            raise LoginFailed("This sign-in link is not valid.")
        code_sha, tok_sha = sha(device_code), sha(token)
        held = await self.store.login.device(code_sha)
        if held is None:
            raise LoginFailed("This sign-in link is not valid.")
        if held.get("st") != "email_sent" or not hmac.compare_digest(held.get("tok", ""), tok_sha):
            if held.get("st") in ("verifying", "approved", "claimed"):
                raise LoginFailed("This sign-in link was already used.")
            raise LoginFailed("This sign-in link is not valid.")
        now = self.clock.now_us()
        status, _ = await self.store.login.step(
            code_sha,
            now_us=now,
            from_status="email_sent",
            to_status="verifying",
            tok=tok_sha,
            fields={"tok": ""},
        )
        if status is not Status.OK:  # expired, or another request took it first
            raise LoginFailed(
                "This sign-in link has expired."
                if now >= int(held["exp"])
                else "This sign-in link was already used."
            )
        email = held["email"]
        account_id, api_key = await self.account_for(email)
        session_token = secrets.token_hex(32)
        await self.store.login.put_token(
            self.store.keys.session_once(sha(session_token)),
            account_id,
            now_us=self.clock.now_us(),
            ttl_s=SESSION_TOKEN_SECONDS,
        )
        await self.store.login.step(
            code_sha,
            now_us=self.clock.now_us(),
            from_status="verifying",
            to_status="approved",
            fields={
                "acct": account_id,
                "new": 1 if api_key else 0,
                "sealed": seal(device_code, {"k": api_key or "", "s": session_token}),
            },
        )
        return Verified(email, api_key is not None)

    async def account_for(self, email: str) -> tuple[str, str | None]:
        """(account id, API key of a new account | None) of a verified e-mail: its account, or a
        new one made as register makes it."""
        found = await self.store.login.account_id_of_email(email.lower())
        if found is not None:
            return found, None
        if not self.settings.allow_register:
            raise LoginFailed("No account uses this e-mail, and registration is disabled on this server.")
        try:
            return await self.accounts.create(email)
        except DuplicateEmail:  # registered between the lookup and now
            again = await self.store.login.account_id_of_email(email.lower())
            if again is None:  # pragma: no cover - taken and gone again
                raise LoginFailed("Please try again.") from None
            return again, None

    # ---- magic links for the dashboard ---------------------------------------------------
    async def send_magic_link(self, email: str, link: Callable[[str], str], ip: str) -> None:
        """Mail ``link(token)`` to ``email`` (checked by the caller); the token signs in once within
        900 s through ``redeem_magic_link``. Limited like submit-email (``RateLimited``)."""
        now = self.clock.now_us()
        await self._link_limits(email, ip, now)
        token = secrets.token_hex(32)
        await self.store.login.put_token(
            self.store.keys.magic_link(sha(token)), email, now_us=now, ttl_s=DEVICE_CODE_SECONDS
        )
        await self._send(email, link(token))

    async def redeem_magic_link(self, token: str) -> str | None:
        """The account id a dashboard magic-link token (from ``send_magic_link``) signs in — the
        e-mail's account, created the way register creates one for a new e-mail — or None when
        the token is unknown, used or expired (``LoginFailed`` when registration is disabled).
        Single use: the token is deleted as it is read."""
        if not isinstance(token, str) or not _HEX64.fullmatch(token):
            return None
        email = await self.store.login.take_token(self.store.keys.magic_link(sha(token)), self.clock.now_us())
        if email is None:
            return None
        account_id, _ = await self.account_for(email)
        return account_id

    # ---- sessions (§16.2) ---------------------------------------------------------------
    async def exchange(self, body: Any) -> dict[str, Any]:
        obj = require_object(body)
        c = Checker()
        token = None
        if "token" not in obj:
            c.add("body.token", "Field required")
        else:
            token = c.string("body.token", obj["token"], max_len=4096)
        c.raise_if_any()
        if self.codec is None:
            raise SessionUnavailable()
        if not isinstance(token, str) or not _HEX64.fullmatch(token):
            raise InvalidSessionToken()
        account_id = await self.store.login.take_token(
            self.store.keys.session_once(sha(token)), self.clock.now_us()
        )
        if account_id is None:
            raise InvalidSessionToken()
        fields = await self.store.login.account_fields(account_id)
        if not fields:
            raise UserNotFound()
        return {"session_token": self.new_session(account_id, fields["email"]), "email": fields["email"]}

    def refresh(self, account: Account) -> dict[str, Any]:
        if self.codec is None:
            raise SessionUnavailable()
        return {"session_token": self.new_session(account.id, account.email), "email": account.email}

    async def account(self, account_id: str) -> Account | None:
        """The account with this id (None: no such account) — the dashboard's magic-link sign-in."""
        fields = await self.store.login.account_fields(account_id)
        return msgspec.convert(fields, Account, strict=False) if fields else None

    def new_session(self, account_id: str, email: str) -> str:
        """A 24 h session JWT for the account (``SessionUnavailable`` without a secret)."""
        if self.codec is None:
            raise SessionUnavailable()
        return self.codec.encode(account_id, email, self.clock.now_us() // 1_000_000)

    async def session_account(self, token: str) -> Account:
        """The account of a session JWT (``AccountService.authenticate`` for non-key tokens)."""
        assert self.codec is not None
        try:
            claims = self.codec.decode(token, self.clock.now_us() // 1_000_000)
        except Expired:
            raise SessionExpired() from None
        except Invalid:
            raise InvalidSession() from None
        fields = await self.store.login.account_fields(str(claims["sub"]))
        if not fields:
            raise UserNotFound()
        return msgspec.convert(fields, Account, strict=False)

    # ---- limits and mail -----------------------------------------------------------------
    async def _limit(self, kind: str, subject: str, limit: int, window_us: int, now: int) -> None:
        got = await self.store.login.take(kind, subject, limit=limit, window_us=window_us, now_us=now)
        if not got.ok:
            raise RateLimited(_retry_s(got.oldest_us, window_us, now))

    async def _link_limits(self, email: str, ip: str, now: int) -> None:
        """3 magic links per e-mail and 10 per IP an hour; a request one limit refuses is not
        counted by the other."""
        await self._limit("mlip", ip, LINKS_PER_IP_HOUR, HOUR_US, now)
        try:
            await self._limit("mle", sha(email.lower()), LINKS_PER_EMAIL_HOUR, HOUR_US, now)
        except RateLimited:
            await self.store.login.give_back("mlip", ip, now)
            raise

    async def _send(self, email: str, link: str) -> None:
        if self.mailer is None:
            log.warning("magic link for %s (no CUEFAST_SMTP_URL; valid 15 minutes): %s", email, link)
            return
        msg = self.mailer.message(
            email,
            "Sign in to cuefast",
            f"Open this link to sign in to cuefast:\n\n{link}\n\n"
            "It works once and expires in 15 minutes. If you did not ask to sign in, ignore this e-mail.\n",
        )
        try:
            await self.mailer.send(msg)
        except Exception as exc:  # the code stays email_sent: a new `cueapi login` tries again
            log.error("magic link e-mail to %s not sent: %s", email, type(exc).__name__)
