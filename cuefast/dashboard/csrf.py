"""CSRF tokens of the dashboard's forms: random, compared in constant time.

Signed in, every POST form carries the session's token (``session.Signed.csrf``, kept in
Redis with the session). The sign-in form, before any session exists, uses a double-submit
cookie: a random token in an HttpOnly ``SameSite=Strict`` cookie and the same in the form, so
another site cannot sign a browser in to the attacker's account (login CSRF)."""

from __future__ import annotations

import hmac
import secrets

from cuefast.errors import CuefastError

LOGIN_COOKIE = "cuefast_login_csrf"
FIELD = "csrf"
"""the form field every POST form carries"""


class CsrfFailed(CuefastError):
    status = 403
    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__(
            "The form expired or did not come from this dashboard; reload the page and try again."
        )


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check(expected: str | None, given: str | None) -> None:
    """Raise ``CsrfFailed`` unless ``given`` equals ``expected`` (constant time)."""
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise CsrfFailed()
