"""``verify_webhook``: check a cue webhook's signature, as the CueAPI SDK does (§10.3).

Byte-compatible with ``cueapi.verify_webhook``: a ``bytes``/``str`` body that is JSON is
re-serialised canonically (``json.dumps(obj, sort_keys=True)``) before checking, so a body
re-encoded by a framework still verifies; a body that is not JSON (e.g. the empty body of
a GET delivery) is checked as received; a ``dict`` is serialised the same way. The
signature is compared in constant time and the timestamp must be within ``tolerance``
seconds of now. Never raises on malformed input: it returns False.
"""

from __future__ import annotations

import json
from typing import Any

from cuefast.signing import TOLERANCE_SECONDS, canonical_json, decode_payload, verify


def _signed_bytes(payload: bytes | bytearray | memoryview | str | dict[str, Any]) -> bytes | None:
    if isinstance(payload, dict):
        try:
            return json.dumps(payload, sort_keys=True, default=str).encode()
        except (TypeError, ValueError):
            return None
    if isinstance(payload, str):
        raw = payload.encode("utf-8", "surrogatepass")
    elif isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
    else:
        return None
    try:
        return canonical_json(decode_payload(raw))
    except (ValueError, TypeError, UnicodeError, RecursionError):
        return raw


def verify_webhook(
    payload: bytes | bytearray | memoryview | str | dict[str, Any],
    signature: str,
    secret: str,
    timestamp: str | int,
    *,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """True when ``signature`` (``X-CueAPI-Signature``) signs ``payload`` (the request body)
    at ``timestamp`` (``X-CueAPI-Timestamp``) with ``secret`` (``whsec_…``) and the
    timestamp is at most ``tolerance`` seconds away from now."""
    body = _signed_bytes(payload)
    if body is None:
        return False
    return verify(body, signature, secret, timestamp, tolerance=tolerance)
