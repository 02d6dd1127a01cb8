"""Session JWTs (CONTRACT.md §16.2): HS256 only, signed with ``CUEFAST_SESSION_SECRET``.

Hand-rolled rather than PyJWT: the whole of what cuefast needs is one algorithm, about forty
lines of the standard library (``hmac``, ``hashlib``, ``base64``), and no dependency to follow.
Decoding accepts exactly one header shape — ``alg`` must be ``HS256`` (no ``none``, no
algorithm confusion) — and compares signatures with ``hmac.compare_digest``. Claims: ``sub``
(account id), ``email``, ``type: "session"``, ``iat``, ``exp = iat + 24 h`` (integer seconds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import msgspec

SESSION_SECONDS = 24 * 3600
_HEADER = {"alg": "HS256", "typ": "JWT"}


class Expired(Exception):
    """A well-signed session token past its ``exp``."""


class Invalid(Exception):
    """Not a session token signed with this secret (malformed, forged, another type)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise Invalid("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Invalid("not base64url") from None


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class SessionCodec:
    """Signs and checks session tokens with one secret (never logged, never in ``repr``)."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def __repr__(self) -> str:
        return "SessionCodec(HS256)"

    def _sign(self, signing_input: bytes) -> bytes:
        return hmac.new(self._key, signing_input, hashlib.sha256).digest()

    def encode(self, account_id: str, email: str, now_s: int) -> str:
        claims = {
            "sub": account_id,
            "email": email,
            "type": "session",
            "iat": now_s,
            "exp": now_s + SESSION_SECONDS,
        }
        head = _b64(msgspec.json.encode(_HEADER))
        body = _b64(msgspec.json.encode(claims))
        signing_input = f"{head}.{body}".encode("ascii")
        return f"{head}.{body}.{_b64(self._sign(signing_input))}"

    def decode(self, token: str, now_s: int) -> dict[str, Any]:
        """The claims of a valid session token; ``Invalid`` or ``Expired`` otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 4096:
            raise Invalid("not a JWS compact token")
        head, body, signature = parts
        head_raw, body_raw, given = _unb64(head), _unb64(body), _unb64(signature)  # base64url only
        if not hmac.compare_digest(given, self._sign(f"{head}.{body}".encode("ascii"))):
            raise Invalid("bad signature")
        try:
            header = msgspec.json.decode(head_raw)
            claims = msgspec.json.decode(body_raw)
        except msgspec.DecodeError:
            raise Invalid("not JSON") from None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise Invalid("not HS256")
        if not isinstance(claims, dict) or claims.get("type") != "session":
            raise Invalid("not a session token")
        sub, exp = claims.get("sub"), claims.get("exp")
        if not isinstance(sub, str) or not sub or isinstance(exp, bool) or not isinstance(exp, int | float):
            raise Invalid("claims missing")
        if now_s >= exp:
            raise Expired()
        return claims
