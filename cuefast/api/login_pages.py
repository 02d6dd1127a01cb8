"""The HTML pages of the login (§16.1): the e-mail form at ``/auth/device``, the verify result.

Plain server-rendered HTML, no script, no external asset: the form posts to ``/auth/device``
(the same service as ``POST /v1/auth/device-code/submit-email``). Every value is escaped;
pages are never cached, never framed, and send no ``Referer`` (a verify URL holds a token).
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request, Response

from cuefast.api.edge import PAGE

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1a1a1a}label{display:block;font-weight:600;margin:.5rem 0 .25rem}"
    "input{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box}"
    "button{margin-top:1rem;font-size:1rem;padding:.5rem 1rem}code{background:#eee;padding:.1rem .3rem}"
    ".error{color:#a00000}"
)


def page(
    request: Request[Any, Any, Any],
    title: str,
    body: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    """An HTML page; an error status keeps its HTML (the edge's envelope is for the API)."""
    request.scope[PAGE] = True  # type: ignore[literal-required]
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return Response(
        html,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={**HEADERS, **(headers or {})},
    )


def device_form(
    request: Request[Any, Any, Any], code: str, error: str = "", email: str = ""
) -> Response[str]:
    note = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        "<p>Enter your e-mail address. We send you a link; open it to finish signing in on your device.</p>"
        f"<p>Device code: <code>{escape(code)}</code></p>{note}"
        '<form method="post" action="/auth/device">'
        f'<input type="hidden" name="device_code" value="{escape(code)}">'
        '<label for="email">E-mail address</label>'
        f'<input id="email" name="email" type="email" autocomplete="email" required value="{escape(email)}">'
        '<button type="submit">Send sign-in link</button></form>'
    )
    return page(request, "Sign in to cuefast", body, 400 if error else 200)


def email_sent(request: Request[Any, Any, Any], email: str) -> Response[str]:
    body = (
        f"<p>We sent a sign-in link to <strong>{escape(email)}</strong>. Open it within 15 minutes "
        "to finish signing in; then return to your terminal.</p>"
    )
    return page(request, "Check your e-mail", body)


def verified(request: Request[Any, Any, Any], email: str, new_account: bool) -> Response[str]:
    what = "Your account is ready" if new_account else "You are signed in"
    body = (
        f"<p>{what}: <strong>{escape(email)}</strong>. "
        "You can close this page and return to your terminal.</p>"
    )
    return page(request, "Signed in", body)


def failed(
    request: Request[Any, Any, Any], message: str, status: int = 400, headers: dict[str, str] | None = None
) -> Response[str]:
    body = (
        f'<p class="error" role="alert">{escape(message)}</p>'
        "<p>Run <code>cueapi login</code> again to get a new link.</p>"
    )
    return page(request, "Sign-in failed", body, status, headers)
