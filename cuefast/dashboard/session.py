"""Dashboard sign-in: an API key checked by the API's own auth path becomes a session cookie.

The cookie holds a random 256-bit session id; Redis holds only its SHA-256 (with a TTL), the
SHA-256 of the API key that signed in and the session's CSRF token. Every request
authenticates that key sha again through ``AccountService.authenticate_key_sha`` — the script
every API request runs — so a rotated key or a changed plan takes effect on the next page, as
it does for the API. The cookie is HttpOnly, SameSite=Lax, path ``/dashboard``, and Secure
when the request came over TLS (its scheme, or ``X-Forwarded-Proto: https`` from a proxy).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie

from cuefast.dashboard import csrf
from cuefast.errors import CuefastError
from cuefast.ids import key_sha
from cuefast.models import Account
from cuefast.runtime import Runtime
from cuefast.store.dashboard_sessions import DashboardSession

COOKIE = "cuefast_session"
PATH = "/dashboard"
TTL_S = 12 * 3600
"""a session lasts 12 hours from sign-in (then the key is pasted again)"""


class SignInRequired(CuefastError):
    """No valid session: pages redirect to the sign-in form."""

    status = 401
    code = "sign_in_required"

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "Sign in to continue.")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Signed:
    """The signed-in account of a dashboard request, and its session's CSRF token."""

    account: Account
    csrf: str


def over_tls(request: Request[Any, Any, Any]) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def session_cookie(request: Request[Any, Any, Any], value: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path=PATH,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=over_tls(request),
    )


def _sha(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.store = rt.store.dashboard_sessions

    async def sign_in_with_key(self, api_key: str) -> str:
        """A new session id for a pasted API key, checked by the API's auth path (its 401s)."""
        await self.rt.accounts.authenticate(f"Bearer {api_key.strip()}")
        return await self._create(key_sha(api_key.strip()))

    async def sign_in_account(self, account: Account) -> str:
        """A session for an account whose magic link ``services/login.py`` redeemed (the
        account's current key, authenticated on every request like a pasted one)."""
        return await self._create(account.key_sha)

    async def _create(self, sha: str) -> str:
        session_id = secrets.token_urlsafe(32)
        await self.store.create(_sha(session_id), DashboardSession(sha, csrf.new_token()), TTL_S * 1000)
        return session_id

    async def signed(self, request: Request[Any, Any, Any]) -> Signed:
        """The request's account; ``SignInRequired`` without a live session or when its key no
        longer authenticates (rotated: the API's ``key_rotated`` text is shown)."""
        session_id = request.cookies.get(COOKIE)
        if not session_id:
            raise SignInRequired()
        session = await self.store.get(_sha(session_id))
        if session is None:
            raise SignInRequired("Your session ended; sign in again.")
        try:
            account = await self.rt.accounts.authenticate_key_sha(session.key_sha)
        except CuefastError as exc:
            if exc.status != 401:
                raise
            raise SignInRequired(exc.message) from exc
        return Signed(account, session.csrf)

    async def sign_out(self, request: Request[Any, Any, Any]) -> None:
        session_id = request.cookies.get(COOKIE)
        if session_id:
            await self.store.delete(_sha(session_id))
