"""Echo (CONTRACT.md §16.5): a place the CLI's ``quickstart`` cue can deliver to and read back.

``POST /v1/echo/{token}`` needs no key (it is the webhook target): the body (≤ 1,000,000
bytes) and lower-cased headers are kept for 300 s, at most 10 stored per client IP per hour.
``GET /v1/echo/{token}`` (with a key) answers ``waiting`` or what was delivered.

Tokens are 16–256 URL-safe characters (``ids.is_echo_token``), checked before the key is
built. Whoever knows a token can read its echo, so the stored headers — which carry a
cue's custom ``callback.headers`` and its signature — are shown in full only to the account
whose cue delivered them (``X-CueAPI-Cue-Id`` names a cue of the caller). A delivery by
another account's cue shows no headers at all; a request that names no existing cue (a
manual ``curl``) shows its headers with ``Authorization``, ``Proxy-Authorization``,
``Cookie`` and ``X-CueAPI-Signature`` redacted.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from cuefast.api.deps import CurrentAccount
from cuefast.api.http import json_response
from cuefast.api.openapi import RawJSON, doc
from cuefast.client.models import Echo, EchoStored
from cuefast.errors import EchoPayloadTooLarge, InvalidEchoToken, InvalidJSON, InvalidPayload, RateLimited
from cuefast.ids import is_cue_id, is_echo_token
from cuefast.models import Account
from cuefast.runtime import Runtime
from cuefast.services.validate import has_bad_text, parse_json_body
from cuefast.store import Store
from cuefast.times import fmt_offset

MAX_ECHO_BYTES = 1_000_000
ECHO_TTL_SECONDS = 300
ECHO_PER_IP_PER_HOUR = 10
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-cueapi-signature"})
REDACTED = "[redacted]"


def _token(token: FromPath[str]) -> str:
    if not is_echo_token(token):
        raise InvalidEchoToken()
    return token


async def visible_headers(store: Store, account: Account, headers: Any) -> dict[str, Any]:
    """The stored headers as ``account`` may see them (module docstring)."""
    if not isinstance(headers, dict):
        return {}
    cue_id = headers.get("x-cueapi-cue-id")
    cue = await store.cues.get(cue_id) if is_cue_id(cue_id) else None
    if cue is not None:
        return headers if cue.get("acct") == account.id else {}
    return {k: (REDACTED if k in SECRET_HEADERS else v) for k, v in headers.items()}


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    store = rt.store
    clock = rt.clock

    @post(
        "/v1/echo/{token:str}",
        summary="Store an echo (no auth; CLI quickstart target)",
        tags=["echo"],
        **doc(
            body=Any,
            body_required=False,
            auth=False,
            errors=[InvalidEchoToken(), InvalidJSON(), InvalidPayload(), EchoPayloadTooLarge()],
            body_example={"task": "quickstart"},
            example={"stored": True},
        ),
    )
    async def echo_store(
        request: Request[Any, Any, Any], token: FromPath[str], data: RawJSON = b""
    ) -> Response[EchoStored]:
        token = _token(token)
        raw = data
        if len(raw) > MAX_ECHO_BYTES:
            raise EchoPayloadTooLarge()
        payload = parse_json_body(raw, required=False) if raw.strip() else None
        if has_bad_text(payload):  # NUL or a lone surrogate: not storable as UTF-8 JSON
            raise InvalidPayload()
        now = clock.now_us()
        record = {
            "payload": payload,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "received_at": fmt_offset(now),
        }
        ip = request.client.host if request.client else "unknown"
        hour = now // 3_600_000_000
        stored = await store.echo.save(
            ip,
            hour,
            token,
            msgspec.json.encode(record).decode(),
            limit=ECHO_PER_IP_PER_HOUR,
            ttl_s=ECHO_TTL_SECONDS,
        )
        if not stored:
            retry = max(1, (hour + 1) * 3600 - now // 1_000_000)
            err = RateLimited(retry)
            return json_response(err.envelope(), err.status, {"Retry-After": str(retry)})
        return json_response({"stored": True})

    @get(
        "/v1/echo/{token:str}",
        summary="Read an echo",
        tags=["echo"],
        **doc(
            errors=[InvalidEchoToken()],
            example={
                "status": "delivered",
                "payload": {"task": "quickstart"},
                "headers": {},
                "received_at": "2026-11-23T11:41:18.397965+00:00",
            },
        ),
    )
    async def echo_read(account: CurrentAccount, token: FromPath[str]) -> Response[Echo]:
        token = _token(token)
        held = await store.echo.get(token)
        if held is None:
            return json_response({"status": "waiting"})
        record = msgspec.json.decode(held)
        record["headers"] = await visible_headers(store, account, record.get("headers"))
        return json_response({"status": "delivered", **record})

    return [echo_store, echo_read]
