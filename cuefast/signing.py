"""Webhook bytes and signatures (CONTRACT.md §10.2–10.4), byte-exact with the official SDK.

Body bytes: Python's ``json.dumps(obj, sort_keys=True)`` with default options (stdlib
``json`` with its C accelerator, ``ensure_ascii=True``). That *is* the reference: the
official SDK's ``verify_webhook`` re-serialises the received JSON that way before checking
the signature, so no other encoder may be used for a signed body.

Decoder rule for callers: a payload must reach ``canonical_json`` as the Python values
``json.loads`` produces from its JSON text. Integers (no fraction, no exponent) are ``int``
at full precision (``-0`` → ``0``); every other number is a ``float`` (``1e16`` →
``1e+16``, ``1e2`` → ``100.0``, ``2.0`` stays ``2.0``). Use ``decode_payload`` for stored
or received payload JSON. It is ``msgspec.json.decode`` (untyped), which for every valid
JSON text gives the same values as ``json.loads`` (checked with msgspec 0.22: integers
beyond 64 bits stay exact ints, floats are correctly rounded, duplicate keys keep the last
value), except that it *refuses* three inputs ``json.loads`` accepts, for which
``decode_payload`` falls back to ``json.loads``: lone-surrogate escapes (``"\\ud800"``),
numbers that overflow a double (``1e400`` → ``inf``) and the non-standard ``NaN`` /
``Infinity`` literals. Do not decode payloads with a typed msgspec decoder (``float``
fields turn ``1`` into ``1.0``), orjson (rejects integers beyond 64 bits) or any decoder
that turns ``1e16`` into an int. Note msgspec *encodes* ``inf``/``nan`` as ``null``, so
storing such a value with msgspec changes what is signed later.

Signature: ``v1=`` + lowercase hex HMAC-SHA256, key = UTF-8 of the full secret string
(``whsec_…``), message = ``<unix seconds>.`` + body bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from typing import Any

import msgspec

TOLERANCE_SECONDS = 300

# ``json.dumps(obj, sort_keys=True)`` builds exactly this encoder per call; reuse one.
_CANONICAL = json.JSONEncoder(sort_keys=True)
_MSGSPEC_DECODER = msgspec.json.Decoder()
_TIMESTAMP = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")


def decode_payload(raw: bytes | str) -> Any:
    """JSON text → Python values exactly as ``json.loads`` produces them (msgspec fast path)."""
    try:
        return _MSGSPEC_DECODER.decode(raw)
    except msgspec.DecodeError:  # includes ValidationError ("Number out of range")
        return json.loads(raw)


def canonical_json(obj: Any) -> bytes:
    """``json.dumps(obj, sort_keys=True).encode()``: the signed webhook body bytes."""
    return _CANONICAL.encode(obj).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
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
    """True when ``signature`` is ``sign(secret, timestamp, body)`` and ``timestamp`` is
    within ``tolerance`` seconds of ``now`` (default: the current time), past or future.

    Constant-time comparison; malformed input (wrong types, a timestamp that is not
    canonical decimal, a signature that is not ``v1=<64 lowercase hex>``) gives False and
    never an exception. A ``str`` body is taken as its UTF-8 bytes.
    """
    try:
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
        else:
            return False
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | str):
            return False
        if isinstance(timestamp, str) and not _TIMESTAMP.fullmatch(timestamp):
            return False
        ts = int(timestamp)
        if not isinstance(signature, str) or not isinstance(secret, str):
            return False
        current = time.time() if now is None else float(now)
        if not (math.isfinite(current) and abs(current - ts) <= tolerance):
            return False
        return hmac.compare_digest(sign(secret, ts, data).encode(), signature.encode())
    except (TypeError, ValueError, OverflowError, UnicodeError):
        return False
