"""The outbound-HTTP path (cuefast/engine/webhooks.py) against real receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from cuefast import ssrf
from cuefast.config import load_settings
from cuefast.engine.webhooks import (
    MAX_RESPONSE_BODY,
    CheckedResolver,
    Webhooks,
    cue_failed,
    delivery_body,
    delivery_request,
    error_for_status,
    signed_headers,
)
from cuefast.models import Callback, CueConfig, Schedule
from cuefast.signing import canonical_json, decode_payload

SECRET = "whsec_" + "ab" * 16
TS = 1_795_434_300
ALLOW = load_settings({}, allow_private_callbacks=True)
STRICT = load_settings({}, allow_private_callbacks=False, allow_http_callbacks=True)
AUTO = {"Host", "Accept", "Accept-Encoding"}
"""Headers aiohttp adds to every request (plus Content-Length with a body)."""


def v1(body: bytes, ts: int = TS, secret: str = SECRET) -> str:
    """An independent implementation of the §10.3 signature."""
    return "v1=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def config(method: str = "POST", headers: dict[str, str] | None = None) -> CueConfig:
    return CueConfig(
        schedule=Schedule(type="recurring", cron="* * * * *"),
        callback=Callback(url="http://127.0.0.1/h", method=method, headers=headers or {}),
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Receiver:
    """A real HTTP server on 127.0.0.1 answering with ``handler``; records every request."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.requests.append(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "body": await request.read(),
                "peer": request.transport.get_extra_info("peername"),
            }
        )
        return await self.handler(request) if self.handler else web.Response(text="ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@asynccontextmanager
async def receiving(handler: Handler | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(handler)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield receiver
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client(settings: Any = ALLOW, dns: ssrf.Resolver | None = None) -> AsyncIterator[Webhooks]:
    webhooks = Webhooks(settings, dns)
    try:
        yield webhooks
    finally:
        await webhooks.close()


def test_delivery_headers_are_exact() -> None:
    """§10.1: custom headers arrive unless they would replace framing or X-CueAPI-* ones (they
    may replace the User-Agent); the body is canonical and signed."""
    custom = {"Authorization": "Bearer t", "x-cueapi-signature": "forged", "Host": "evil", "User-Agent": "me"}
    body, headers = delivery_request(
        config(headers=custom),
        secret=SECRET,
        ts=TS,
        cue_id="cue_1",
        execution_id="e-1",
        name="n",
        payload='{"b": 1e16, "a": "\u00fc"}',
        scheduled_for="2026-11-23T11:42:00+00:00",
        attempt=2,
    )
    assert body == (
        b'{"attempt": 2, "cue_id": "cue_1", "execution_id": "e-1", "name": "n", '
        b'"payload": {"a": "\\u00fc", "b": 1e+16}, "scheduled_for": "2026-11-23T11:42:00+00:00"}'
    )
    assert headers == {
        "User-Agent": "me",
        "Authorization": "Bearer t",
        "Content-Type": "application/json",
        "X-CueAPI-Signature": v1(body),
        "X-CueAPI-Timestamp": str(TS),
        "X-CueAPI-Cue-Id": "cue_1",
        "X-CueAPI-Execution-Id": "e-1",
        "X-CueAPI-Scheduled-For": "2026-11-23T11:42:00+00:00",
        "X-CueAPI-Attempt": "2",
    }


def test_a_get_delivery_has_no_body_and_signs_the_empty_one() -> None:
    body, headers = delivery_request(
        config("GET"),
        secret=SECRET,
        ts=TS,
        cue_id="cue_1",
        execution_id="e-1",
        name="n",
        payload="{}",
        scheduled_for="s",
        attempt=1,
    )
    assert body == b"" and "Content-Type" not in headers
    assert headers["X-CueAPI-Signature"] == v1(b"")


def test_notice_headers_are_exact() -> None:
    """§12.2 and §12.6: JSON, the CueAPI User-Agent, the signature; an alert adds its id and type."""
    assert signed_headers(SECRET, TS, b"{}", {"X-CueAPI-Alert-Id": "a1", "X-CueAPI-Alert-Type": "t"}) == {
        "User-Agent": "CueAPI/1.0",
        "Content-Type": "application/json",
        "X-CueAPI-Signature": v1(b"{}"),
        "X-CueAPI-Timestamp": str(TS),
        "X-CueAPI-Alert-Id": "a1",
        "X-CueAPI-Alert-Type": "t",
    }
    body, headers = cue_failed(
        {"cue": "cue_1", "att": "3", "em": "x" * 600, "hs": "500"},
        execution_id="e-1",
        cue_name="failer",
        failed_at_us=1_795_434_300_462_731,
        dashboard_url="",
        secret=SECRET,
        ts=TS,
    )
    assert json.loads(body) == {
        "attempts": 3,
        "cue_id": "cue_1",
        "cue_name": "failer",
        "dashboard_url": None,
        "event": "cue.failed",
        "execution_id": "e-1",
        "failed_at": "2026-11-23T11:45:00.462731+00:00",
        "last_error": "x" * 500,
        "last_http_status": 500,
    }
    assert body == json.dumps(json.loads(body), sort_keys=True).encode()
    assert headers == signed_headers(SECRET, TS, body) and headers["X-CueAPI-Signature"] == v1(body)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, "Webhook endpoint not found (404)"),
        (408, "Webhook endpoint timed out"),
        (500, "Webhook endpoint returned server error (500)"),
        (422, "Webhook endpoint rejected request (422)"),
        (503, "Webhook endpoint server error (503)"),
        (302, "Webhook delivery failed (302)"),
    ],
)
def test_error_for_status(status: int, error: str) -> None:
    assert error_for_status(status) == error


async def test_the_receiver_gets_exactly_the_signed_headers() -> None:
    body, headers = delivery_request(
        config(headers={"X-Custom": "1"}),
        secret=SECRET,
        ts=TS,
        cue_id="cue_1",
        execution_id="e-1",
        name="n",
        payload='{"k": [1, 2]}',
        scheduled_for="s",
        attempt=1,
    )
    async with receiving() as receiver, client() as webhooks:
        sent = await webhooks.send(receiver.url, "POST", body, headers, 5)
        get_body, get_headers = delivery_request(
            config("GET"),
            secret=SECRET,
            ts=TS,
            cue_id="cue_1",
            execution_id="e-1",
            name="n",
            payload="{}",
            scheduled_for="s",
            attempt=1,
        )
        await webhooks.send(receiver.url, "GET", get_body, get_headers, 5)
    assert sent == (200, "", b"ok") and sent.ok
    post, get = receiver.requests
    assert post["method"] == "POST" and post["body"] == body
    assert {k: post["headers"][k] for k in headers} == headers
    assert set(post["headers"]) - set(headers) == AUTO | {"Content-Length"}
    assert post["headers"]["Content-Length"] == str(len(body))
    assert get["method"] == "GET" and get["body"] == b""
    assert {k: get["headers"][k] for k in get_headers} == get_headers
    assert set(get["headers"]) - set(get_headers) == AUTO


async def test_a_private_address_is_refused_unless_private_callbacks_are_allowed() -> None:
    async with receiving() as receiver:
        async with client(STRICT) as strict:
            for url in (receiver.url, f"http://localhost:{receiver.port}/hook"):
                sent = await strict.send(url, "POST", b"{}", {}, 5)
                assert sent == (None, "Callback URL resolved to blocked IP", b"") and not sent.ok
        assert receiver.requests == []
        async with client(STRICT, CheckedDNS({"hook.test": ["127.0.0.1"]})) as strict:
            sent = await strict.send(f"http://hook.test:{receiver.port}/hook", "POST", b"{}", {}, 5)
            assert sent.error == "Callback URL resolved to blocked IP"  # judged at connect time
        assert receiver.requests == []
        async with client(ALLOW) as allowed:
            assert (await allowed.send(receiver.url, "POST", b"{}", {}, 5)).status == 200
        assert len(receiver.requests) == 1


class CheckedDNS:
    """An injected resolver answering from a table."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def __call__(self, host: str, port: int) -> list[str]:
        return self.answers[host.rstrip(".")]


async def test_a_slow_receiver_times_out() -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="late")

    async with receiving(hang) as receiver, client() as webhooks:
        try:
            sent = await webhooks.send(receiver.url, "POST", b"{}", {}, 0.2)
        finally:
            release.set()
    assert sent == (None, "Webhook endpoint timed out", b"")
    assert len(receiver.requests) == 1


async def test_only_a_2xx_body_is_read_and_at_most_the_bound() -> None:
    big = bytes(range(256)) * (3 * MAX_RESPONSE_BODY // 256)
    answers = {
        "/small": web.Response(body=b'{"success": true}'),
        "/big": web.Response(body=big),
        "/500": web.Response(status=500, text="boom"),
        "/302": web.Response(status=302, headers={"Location": "http://127.0.0.1:1/elsewhere"}),
    }

    async def answer(request: web.Request) -> web.StreamResponse:
        return answers[request.path]

    async with receiving(answer) as receiver, client() as webhooks:
        base = receiver.url.removesuffix("/hook")
        small = await webhooks.send(f"{base}/small", "POST", b"{}", {}, 5)
        large = await webhooks.send(f"{base}/big", "POST", b"{}", {}, 5)
        failed = await webhooks.send(f"{base}/500", "POST", b"{}", {}, 5)
        moved = await webhooks.send(f"{base}/302", "POST", b"{}", {}, 5)
    assert small == (200, "", b'{"success": true}')
    assert large == (200, "", big[:MAX_RESPONSE_BODY])
    assert failed == (500, "Webhook endpoint returned server error (500)", b"")
    assert moved == (302, "Webhook delivery failed (302)", b"")  # never followed
    assert [r["headers"].get("Host", "").split(":")[0] for r in receiver.requests] == ["127.0.0.1"] * 4


async def test_no_connection_is_the_contract_text() -> None:
    async with client() as webhooks:
        sent = await webhooks.send("http://127.0.0.1:1/nothing", "POST", b"{}", {}, 5)
    assert sent == (None, "Could not connect to webhook endpoint", b"")


async def test_one_pooled_session_serves_every_send_until_closed() -> None:
    """Sends share the process's pool: consecutive requests reuse one kept-alive connection;
    after ``close`` the client refuses to send."""
    webhooks = Webhooks(ALLOW)
    async with receiving() as receiver:
        for _ in range(3):
            assert (await webhooks.send(receiver.url, "POST", b"{}", {}, 5)).ok
        await webhooks.close()
        with pytest.raises(RuntimeError):
            await webhooks.send(receiver.url, "POST", b"{}", {}, 5)
    assert len(receiver.requests) == 3
    assert len({r["peer"] for r in receiver.requests}) == 1  # one connection, one pool


async def test_checked_resolver_under_the_default_strict_policy() -> None:
    """Regression: the connector's resolver must judge the host, not an http:// URL."""

    async def dns(host: str, port: int) -> list[str]:
        return {"public.example": ["93.184.216.34"], "internal.example": ["10.0.0.7"]}[host]

    resolver = CheckedResolver(ssrf.Policy(), dns)
    (hit,) = await resolver.resolve("public.example", 443)
    assert hit["host"] == "93.184.216.34" and hit["port"] == 443 and hit["hostname"] == "public.example"
    with pytest.raises(ssrf.UnsafeURL):
        await resolver.resolve("internal.example", 443)


async def test_a_body_sent_in_pieces_is_read_whole() -> None:
    """A 2xx body that arrives in several writes (a slow or streaming receiver) is read to its
    end, not just the part already received when reading began."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"success": tr')
        await asyncio.sleep(0.2)  # the receiver is slow to send the rest
        await response.write(b'ue, "result": "done"}')
        await response.write_eof()
        return response

    async with receiving(answer) as receiver, client() as webhooks:
        sent = await webhooks.send(receiver.url, "POST", b"{}", {}, 5)
    assert sent == (200, "", b'{"success": true, "result": "done"}')


@pytest.mark.parametrize(
    ("name", "payload", "cue_id"),
    [
        ("daily", '{"b": 1, "a": [1, 2.5, null, true], "c": {"z": "é", "y": "\\u2028"}}', "cue_abc123"),
        ('quote " and \\ é', "{}", "cue_x"),
        ("n", '"just a string"', "cue_with space"),  # an id JSON would not keep as is
        ("n", "[1e400, -0.0, 12345678901234567890]", "cue_y"),
    ],
)
def test_the_delivery_body_is_canonical_json(name: str, payload: str, cue_id: str) -> None:
    """``delivery_body`` builds the body from pieces and memoised payload text: byte for byte
    ``canonical_json`` of the whole body (§10.2), for any name, payload and id."""
    for attempt in (1, 12):
        expected = canonical_json(
            {
                "attempt": attempt,
                "cue_id": cue_id,
                "execution_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "name": name,
                "payload": decode_payload(payload),
                "scheduled_for": "2026-12-04T12:00:00+00:00",
            }
        )
        got = delivery_body(
            attempt,
            cue_id=cue_id,
            execution_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            name=name,
            payload=payload,
            scheduled_for="2026-12-04T12:00:00+00:00",
        )
        assert got == expected
