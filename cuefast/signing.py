"""Webhook bytes and signatures (CONTRACT.md §10.2–10.4), byte-exact with the official SDK.

The body is Python's ``json.dumps(obj, sort_keys=True)``: that *is* the reference, since the
official SDK's ``verify_webhook`` re-serialises the received JSON that way before checking
the signature. Payloads must reach ``canonical_json`` decoded the way ``json.loads``
decodes them (ints stay ints at full precision; anything with a fraction or exponent is a
float): ``decode_payload`` does that (msgspec decodes the same way and is faster; it
refuses lone-surrogate escapes, for which the stdlib decoder is used).

Signature: ``v1=`` + hex HMAC-SHA256, key = the full secret string (``whsec_…``), message =
``<unix seconds>.<body bytes>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import msgspec

TOLERANCE_SECONDS = 300


def decode_payload(raw: bytes | str) -> Any:
    """JSON text → Python values exactly as ``json.loads`` would produce them."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return json.loads(raw)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(
    body: bytes | str,
    signature: str,
    secret: str,
    timestamp: int | str,
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Constant-time check of a signature; False (never an exception) for bad input."""
    try:
        ts = int(timestamp)
        data = body.encode() if isinstance(body, str) else bytes(body)
        if not isinstance(signature, str) or not signature.startswith("v1="):
            return False
        current = time.time() if now is None else now
        if abs(current - ts) > tolerance:
            return False
        expected = sign(secret, ts, data)
        return hmac.compare_digest(expected.encode(), signature.encode())
    except (TypeError, ValueError, UnicodeError):
        return False
