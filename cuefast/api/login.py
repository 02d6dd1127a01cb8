"""Login routes (CONTRACT.md §16): device code, the human pages, magic-link verify, sessions.

The JSON routes answer the contract's envelope; ``/auth/device`` and ``/v1/auth/verify`` are
pages for people (api/login_pages.py), exempt from the per-IP request limit like the
reference. The logic is in services/login.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from cuefast.api import login_pages as pages
from cuefast.api.deps import CurrentAccount
from cuefast.api.http import json_response, read_json
from cuefast.api.openapi import RawJSON, TextQuery, doc
from cuefast.api.ratelimit import client_ip
from cuefast.client.account_models import (
    DeviceCode,
    DevicePoll,
    EmailSent,
    Session,
)
from cuefast.client.bodies import DeviceCodeRequest, SessionRequest, SubmitEmailRequest
from cuefast.errors import (
    CuefastError,
    DeviceCodeExists,
    DeviceCodeExpired,
    DeviceCodeNotFound,
    InvalidDeviceCode,
    InvalidDeviceStatus,
    InvalidSessionToken,
    RateLimited,
    RequestTooLarge,
    SessionExpired,
    SessionUnavailable,
    UserNotFound,
)
from cuefast.runtime import Runtime
from cuefast.services.login import LoginFailed

_LIMITED = RateLimited(3600)
_FORM_ERRORS = {
    "rate_limit_exceeded": "Too many sign-in links were asked for. Try again later.",
    "device_code_expired": "This device code has expired.",
    "invalid_status": "A sign-in link was already sent for this device code.",
}
_DC = "0123-ABCD"
_HTML = {
    400: ResponseSpec(
        data_container=str, media_type="text/html", description="An HTML page saying what failed"
    ),
    429: ResponseSpec(data_container=str, media_type="text/html", description="Too many sign-in links"),
}


def _html(query: list[TextQuery] | None = None) -> dict[str, Any]:
    return {
        "media_type": "text/html",
        **doc(auth=False, counted=False, responses=_HTML, query=query or (), errors=[RequestTooLarge()]),
    }


def _ip(request: Request[Any, Any, Any]) -> str:
    return client_ip(request.scope)  # type: ignore[arg-type]


def routes(rt: Runtime) -> list[HTTPRouteHandler]:
    login = rt.login

    @post(
        "/v1/auth/device-code",
        summary="Start a device-code login (cueapi login)",
        tags=["login"],
        **doc(
            status=201,
            body=DeviceCodeRequest,
            auth=False,
            errors=[InvalidDeviceCode(), DeviceCodeExists(), _LIMITED],
            body_example={"device_code": _DC},
            example={"verification_url": f"http://localhost:8000/auth/device?code={_DC}", "expires_in": 900},
        ),
    )
    async def create_device_code(
        request: Request[Any, Any, Any], data: RawJSON = b""
    ) -> Response[DeviceCode]:
        return json_response(await login.create_device_code(read_json(data), _ip(request)))

    @post(
        "/v1/auth/device-code/poll",
        summary="Poll a device code (the API key once approved)",
        tags=["login"],
        **doc(
            body=DeviceCodeRequest,
            auth=False,
            errors=[_LIMITED],
            body_example={"device_code": _DC},
            example={
                "status": "approved",
                "api_key": "cue_sk_0b1e5c2f9a7d4e6b8c3a1f0e9d8c7b6a",
                "email": "alice@example.com",
                "session_token": "5" * 64,
            },
        ),
    )
    async def poll_device_code(data: RawJSON = b"") -> Response[DevicePoll]:
        return json_response(await login.poll(read_json(data)))

    @post(
        "/v1/auth/device-code/submit-email",
        summary="Mail a magic link for a device code",
        tags=["login"],
        **doc(
            body=SubmitEmailRequest,
            auth=False,
            errors=[
                DeviceCodeNotFound(),
                DeviceCodeExpired(),
                InvalidDeviceStatus("email_sent"),
                _LIMITED,
            ],
            body_example={"device_code": _DC, "email": "alice@example.com"},
            example={"status": "email_sent"},
        ),
    )
    async def submit_device_email(
        request: Request[Any, Any, Any], data: RawJSON = b""
    ) -> Response[EmailSent]:
        return json_response(await login.submit_email(read_json(data), _ip(request)))

    @get(
        "/auth/device",
        summary="The sign-in page of a device code (asks for the e-mail)",
        tags=["login"],
        **_html([TextQuery("code", "the device code")]),
    )
    async def device_page(request: Request[Any, Any, Any]) -> Response[str]:
        code = request.query_params.get("code") or ""
        if not 6 <= len(code) <= 128:
            return pages.failed(request, "This sign-in link has no valid device code.")
        return pages.device_form(request, code)

    @post("/auth/device", summary="The sign-in page's form (mails the magic link)", tags=["login"], **_html())
    async def device_page_form(request: Request[Any, Any, Any]) -> Response[str]:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
        code, email = (form.get(k, [""])[0] for k in ("device_code", "email"))
        try:
            await login.submit_email({"device_code": code, "email": email}, _ip(request))
        except CuefastError as exc:
            if exc.status == 422 and 6 <= len(code) <= 128:  # the e-mail: ask again
                return pages.device_form(request, code, "Please enter a valid e-mail address.", email)
            if isinstance(exc, RateLimited):  # an integer Retry-After, like the JSON route's 429
                return pages.failed(
                    request, _FORM_ERRORS[exc.code], 429, {"Retry-After": str(exc.retry_after)}
                )
            return pages.failed(request, _FORM_ERRORS.get(exc.code, "This device code is not valid."))
        return pages.email_sent(request, email)

    @get(
        "/v1/auth/verify",
        summary="Open a magic link (HTML)",
        tags=["login"],
        **_html([TextQuery("token", "64 hex"), TextQuery("device_code", "the device code")]),
    )
    async def verify_magic_link(request: Request[Any, Any, Any]) -> Response[str]:
        params = request.query_params
        try:
            done = await login.verify(params.get("token") or "", params.get("device_code") or "")
        except LoginFailed as exc:
            return pages.failed(request, exc.message)
        return pages.verified(request, done.email, done.new_account)

    @post(
        "/v1/auth/session",
        summary="Exchange a one-time session token for a session JWT",
        tags=["login"],
        **doc(
            body=SessionRequest,
            auth=False,
            errors=[InvalidSessionToken(), UserNotFound(), SessionUnavailable()],
            body_example={"token": "5" * 64},
            example={
                "session_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln",
                "email": "alice@example.com",
            },
        ),
    )
    async def create_session(data: RawJSON = b"") -> Response[Session]:
        return json_response(await login.exchange(read_json(data)))

    @post(
        "/v1/auth/session/refresh",
        summary="A fresh session JWT (any auth)",
        tags=["login"],
        **doc(
            errors=[SessionUnavailable(), SessionExpired(), UserNotFound(), RequestTooLarge()],
            example={
                "session_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln",
                "email": "alice@example.com",
            },
        ),
    )
    async def session_refresh(account: CurrentAccount) -> Response[Session]:
        return json_response(login.refresh(account))

    return [
        create_device_code,
        poll_device_code,
        submit_device_email,
        device_page,
        device_page_form,
        verify_magic_link,
        create_session,
        session_refresh,
    ]
