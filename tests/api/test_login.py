"""Device code, magic link and sessions (CONTRACT.md §16) on the real Redis: every route, status,
error code, rate limit and expiry; single use; what the logs may show."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cuefast.api import create_app
from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.services.login import sha
from cuefast.services.session_jwt import SessionCodec
from tests.conftest import Api, assert_error, make_api
from tests.contract.hook import contract_hook
from tests.mail_sink import LINK, smtp_sink

T0 = 1_795_434_122_000_000
SECRET = "s" * 40
LOGGER = "cuefast.services.login"


class Env:
    def __init__(self, api: Api, clock: FrozenClock, caplog: pytest.LogCaptureFixture) -> None:
        self.api = api
        self.clock = clock
        self.caplog = caplog
        self._clients: list[httpx.AsyncClient] = []

    def from_ip(self, ip: str) -> Api:
        """The same app, seen from another client address."""
        transport = httpx.ASGITransport(app=create_app(self.api.rt, manage_runtime=False), client=(ip, 1234))  # type: ignore[arg-type]
        client = httpx.AsyncClient(
            transport=transport, base_url="http://cuefast.test", event_hooks={"response": [contract_hook]}
        )
        self._clients.append(client)
        return Api(client, self.api.rt)

    async def post(self, path: str, body: Any, api: Api | None = None) -> httpx.Response:
        return await (api or self.api).request("POST", path, json=body)

    async def start(self, code: str, email: str, api: Api | None = None) -> None:
        res = await self.post("/v1/auth/device-code", {"device_code": code}, api)
        assert res.status_code == 201, res.text
        res = await self.post("/v1/auth/device-code/submit-email", {"device_code": code, "email": email}, api)
        assert res.status_code == 200 and res.json() == {"status": "email_sent"}, res.text

    def records(self) -> list[logging.LogRecord]:
        """cuefast's own log records (not the test client's)."""
        return [r for r in self.caplog.records if r.name.startswith("cuefast")]

    def logged_link(self) -> str:
        links = [m for r in self.records() for m in LINK.findall(r.getMessage())]
        assert links, [r.getMessage() for r in self.caplog.records]
        return links[-1]

    async def open(self, link: str) -> httpx.Response:
        parts = urlsplit(link)
        return await self.api.client.get(f"{parts.path}?{parts.query}")

    async def poll(self, code: str) -> dict[str, Any]:
        res = await self.post("/v1/auth/device-code/poll", {"device_code": code})
        assert res.status_code == 200, res.text
        out: dict[str, Any] = res.json()
        return out

    async def login(self, code: str, email: str) -> dict[str, Any]:
        """The whole flow: the approved poll."""
        await self.start(code, email)
        res = await self.open(self.logged_link())
        assert res.status_code == 200, res.text
        return await self.poll(code)


async def _env(settings: Settings, caplog: pytest.LogCaptureFixture, **over: Any) -> AsyncIterator[Env]:
    caplog.set_level(logging.DEBUG)
    clock = FrozenClock(T0)
    api, rt = await make_api(settings.replace(ip_rate_limit=100_000, **over), clock)
    env = Env(api, clock, caplog)
    try:
        yield env
    finally:
        for client in env._clients:
            await client.aclose()
        await api.client.aclose()
        await rt.close()


@pytest.fixture
async def env(settings: Settings, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Env]:
    async for e in _env(settings, caplog, session_secret=SECRET):
        yield e


@pytest.fixture
async def plain(settings: Settings, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Env]:
    """No session secret, no key reveal."""
    async for e in _env(settings, caplog):
        yield e


# ---- the flow ------------------------------------------------------------------------------------
async def test_new_account_by_device_code(env: Env) -> None:
    res = await env.post("/v1/auth/device-code", {"device_code": "ABCD-EFGH"})
    assert res.status_code == 201
    assert res.json() == {
        "verification_url": "http://localhost:8000/auth/device?code=ABCD-EFGH",
        "expires_in": 900,
    }
    assert await env.poll("ABCD-EFGH") == {"status": "pending"}
    res = await env.post(
        "/v1/auth/device-code/submit-email", {"device_code": "ABCD-EFGH", "email": "New@Example.com"}
    )
    assert res.json() == {"status": "email_sent"}
    assert await env.poll("ABCD-EFGH") == {"status": "email_sent"}
    link = env.logged_link()
    assert link.startswith("http://localhost:8000/v1/auth/verify?token=") and link.endswith(
        "&device_code=ABCD-EFGH"
    )
    page = await env.open(link)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "New@Example.com" in page.text and page.headers["referrer-policy"] == "no-referrer"
    got = await env.poll("ABCD-EFGH")
    assert set(got) == {"status", "api_key", "email", "session_token"}
    assert got["status"] == "approved" and got["email"] == "New@Example.com"
    assert re.fullmatch(r"cue_sk_[0-9a-f]{32}", got["api_key"]) and re.fullmatch(
        r"[0-9a-f]{64}", got["session_token"]
    )
    me = (await env.api.request("GET", "/v1/auth/me", got["api_key"])).json()
    assert me["email"] == "New@Example.com" and me["plan"] == "free" and me["slug"] == "new"
    assert me["active_cue_limit"] == env.api.rt.settings.default_cue_limit
    assert await env.poll("ABCD-EFGH") == {"status": "claimed"}  # the key is handed over once
    again = await env.open(link)  # single use
    assert again.status_code == 400 and "already used" in again.text
    # the same e-mail cannot register again: the login made a real account
    assert_error(await env.post("/v1/auth/register", {"email": "new@example.com"}), 409, "duplicate_email")
    # a claimed code can be used again
    assert (await env.post("/v1/auth/device-code", {"device_code": "ABCD-EFGH"})).status_code == 201


async def test_existing_account_keeps_its_key(plain: Env) -> None:
    key = await plain.api.register("old@example.com")
    got = await plain.login("code-0001", "OLD@example.com")
    assert got == {
        "status": "approved",
        "email": "OLD@example.com",
        "existing_user": True,
        "session_token": got["session_token"],
    }
    assert (await plain.api.request("GET", "/v1/auth/me", key)).status_code == 200  # not rotated


async def test_existing_account_gets_its_revealed_key(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async for env in _env(settings, caplog, key_reveal_secret="r" * 32):
        key = await env.api.register("rev@example.com")
        got = await env.login("code-0002", "rev@example.com")
        assert got["status"] == "approved" and got["api_key"] == key and "existing_user" not in got
        rotated = (
            await env.api.request(
                "POST", "/v1/auth/key/regenerate", key, headers={"X-Confirm-Destructive": "true"}
            )
        ).json()["api_key"]
        got = await env.login("code-0003", "rev@example.com")
        assert got["api_key"] == rotated  # the current key, as the worker's key recovery needs


async def test_login_when_registration_is_disabled(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async for env in _env(settings, caplog, allow_register=False):
        await env.start("code-0004", "nobody@example.com")
        page = await env.open(env.logged_link())
        assert page.status_code == 400 and "registration is disabled" in page.text
        assert await env.poll("code-0004") == {"status": "email_sent"}  # never approved


# ---- errors --------------------------------------------------------------------------------------
async def test_device_code_errors(env: Env) -> None:
    for bad in ("12345", "x" * 129):
        assert_error(
            await env.post("/v1/auth/device-code", {"device_code": bad}),
            400,
            "invalid_device_code",
            "Device code must be 6-128 characters",
        )
    assert_error(
        await env.post("/v1/auth/device-code", {}),
        422,
        "validation_error",
        "body.device_code: Field required",
    )
    assert_error(await env.post("/v1/auth/device-code", {"device_code": 12345678}), 422, "validation_error")
    assert_error(await env.post("/v1/auth/device-code", ["x"]), 422, "validation_error")
    assert_error(await env.api.request("POST", "/v1/auth/device-code", content=b"{"), 400, "invalid_json")
    assert (await env.post("/v1/auth/device-code", {"device_code": "x" * 128})).status_code == 201
    assert (await env.post("/v1/auth/device-code", {"device_code": "dupe-code"})).status_code == 201
    assert_error(
        await env.post("/v1/auth/device-code", {"device_code": "dupe-code"}), 409, "device_code_exists"
    )
    env.clock.advance(900)  # expired: the value is free again
    assert await env.poll("dupe-code") == {"status": "expired"}
    assert (
        await env.post("/v1/auth/device-code", {"device_code": "dupe-code"}, env.from_ip("127.0.0.2"))
    ).status_code == 201


async def test_poll_of_unknown_and_odd_codes(env: Env) -> None:
    for code in ("never-made", "x", "y" * 200):
        assert await env.poll(code) == {"status": "expired"}
    assert_error(await env.post("/v1/auth/device-code/poll", {}), 422, "validation_error")


async def test_submit_email_errors(env: Env) -> None:
    submit = "/v1/auth/device-code/submit-email"
    assert_error(
        await env.post(submit, {"device_code": "missing-1", "email": "a@example.com"}),
        404,
        "device_code_not_found",
    )
    await env.post("/v1/auth/device-code", {"device_code": "code-0005"})
    assert_error(
        await env.post(submit, {"device_code": "code-0005", "email": "not-an-email"}), 422, "validation_error"
    )
    assert_error(
        await env.post(submit, {"device_code": "code-0005"}),
        422,
        "validation_error",
        "body.email: Field required",
    )
    assert (await env.post(submit, {"device_code": "code-0005", "email": "a@example.com"})).status_code == 200
    assert_error(
        await env.post(submit, {"device_code": "code-0005", "email": "a@example.com"}),
        400,
        "invalid_status",
        "Device code status is 'email_sent', expected 'pending'",
    )
    await env.post("/v1/auth/device-code", {"device_code": "code-0006"})
    env.clock.advance(900)
    assert_error(
        await env.post(submit, {"device_code": "code-0006", "email": "b@example.com"}),
        400,
        "device_code_expired",
    )


async def test_magic_link_expires_with_its_code(env: Env) -> None:
    await env.start("code-0007", "late@example.com")
    env.clock.advance(899)
    assert await env.poll("code-0007") == {"status": "email_sent"}
    env.clock.advance(1)
    page = await env.open(env.logged_link())
    assert page.status_code == 400 and "expired" in page.text
    assert await env.poll("code-0007") == {"status": "expired"}


async def test_verify_rejects_wrong_tokens(env: Env) -> None:
    await env.start("code-0008", "w@example.com")
    link = env.logged_link()
    q = parse_qs(urlsplit(link).query)
    for query in (
        f"token={'0' * 64}&device_code=code-0008",  # another token
        f"token={q['token'][0]}&device_code=code-0009",  # another code
        "token=short&device_code=code-0008",
        "device_code=code-0008",
        "",
    ):
        res = await env.api.client.get(f"/v1/auth/verify?{query}")
        assert res.status_code == 400 and res.headers["content-type"].startswith("text/html"), query
    assert (await env.open(link)).status_code == 200  # the right one still works, once


# ---- rate limits -------------------------------------------------------------------------------
def assert_limited(res: httpx.Response, at_least: int = 1) -> int:
    assert_error(res, 429, "rate_limit_exceeded")
    retry = int(res.headers["retry-after"])
    assert retry >= at_least
    return retry


async def test_device_codes_per_ip_per_hour(env: Env) -> None:
    for i in range(5):
        assert (await env.post("/v1/auth/device-code", {"device_code": f"rate-{i:04d}"})).status_code == 201
        env.clock.advance(60)
    res = await env.post("/v1/auth/device-code", {"device_code": "rate-9999"})
    assert assert_limited(res) == 3600 - 5 * 60
    other = env.from_ip("127.0.0.3")  # per IP
    assert (await env.post("/v1/auth/device-code", {"device_code": "rate-9999"}, other)).status_code == 201
    env.clock.advance(3600 - 5 * 60)  # the first one left the window
    assert (await env.post("/v1/auth/device-code", {"device_code": "rate-9998"})).status_code == 201


async def test_polls_per_code_per_minute(env: Env) -> None:
    await env.post("/v1/auth/device-code", {"device_code": "poll-code"})
    for _ in range(30):
        assert await env.poll("poll-code") == {"status": "pending"}
    assert assert_limited(await env.post("/v1/auth/device-code/poll", {"device_code": "poll-code"})) == 60
    assert await env.poll("another-code") == {"status": "expired"}  # per code
    env.clock.advance(60)
    assert await env.poll("poll-code") == {"status": "pending"}


async def test_magic_links_per_email_and_per_ip(env: Env) -> None:
    submit = "/v1/auth/device-code/submit-email"
    makers = [env.from_ip(f"127.0.1.{i}") for i in range(4)]
    codes = [f"ml-{i:04d}" for i in range(16)]
    for i, code in enumerate(codes):
        assert (
            await env.post("/v1/auth/device-code", {"device_code": code}, makers[i // 5])
        ).status_code == 201
    for code in codes[:3]:
        assert (await env.post(submit, {"device_code": code, "email": "same@example.com"})).status_code == 200
    res = await env.post(submit, {"device_code": codes[3], "email": "SAME@example.com"})
    assert_limited(res)
    for i, code in enumerate(codes[3:10]):  # the refused one did not count for the IP: 3 + 7 = 10
        assert (
            await env.post(submit, {"device_code": code, "email": f"u{i}@example.com"})
        ).status_code == 200
    assert_limited(await env.post(submit, {"device_code": codes[10], "email": "z@example.com"}))
    form = await env.api.client.post(
        "/auth/device", data={"device_code": codes[11], "email": "f@example.com"}
    )
    assert form.status_code == 429 and form.headers["content-type"].startswith("text/html")
    assert int(form.headers["retry-after"]) >= 1 and "Too many" in form.text
    other = env.from_ip("127.0.0.9")
    assert (
        await env.post(submit, {"device_code": codes[10], "email": "z@example.com"}, other)
    ).status_code == 200


# ---- sessions ------------------------------------------------------------------------------------
async def test_session_exchange_refresh_and_auth(env: Env) -> None:
    got = await env.login("sess-0001", "s@example.com")
    res = await env.post("/v1/auth/session", {"token": got["session_token"]})
    assert res.status_code == 200, res.text
    jwt = res.json()["session_token"]
    assert res.json()["email"] == "s@example.com"
    claims = SessionCodec(SECRET).decode(jwt, T0 // 1_000_000)
    assert (
        claims["type"] == "session"
        and claims["exp"] - claims["iat"] == 86400
        and claims["email"] == "s@example.com"
    )
    assert_error(
        await env.post("/v1/auth/session", {"token": got["session_token"]}),
        401,
        "invalid_token",
        "Invalid or expired session token",
    )
    me = await env.api.request("GET", "/v1/auth/me", jwt)
    assert me.status_code == 200 and me.json()["email"] == "s@example.com"
    cue = await env.api.request(
        "POST",
        "/v1/cues",
        jwt,
        json={
            "name": "by-session",
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
            "payload": {"task": "t"},
        },
    )
    assert cue.status_code == 201, cue.text
    assert (await env.api.request("GET", f"/v1/cues/{cue.json()['id']}", got["api_key"])).status_code == 200
    env.clock.advance(3600)
    fresh = await env.api.request("POST", "/v1/auth/session/refresh", jwt)
    assert fresh.status_code == 200 and fresh.json()["session_token"] != jwt
    by_key = await env.api.request("POST", "/v1/auth/session/refresh", got["api_key"])
    assert by_key.status_code == 200 and by_key.json()["email"] == "s@example.com"
    env.clock.advance(86400 - 3600)
    assert_error(
        await env.api.request("GET", "/v1/auth/me", jwt),
        401,
        "session_expired",
        "Session expired. Please log in again.",
    )
    assert (await env.api.request("GET", "/v1/auth/me", fresh.json()["session_token"])).status_code == 200
    head, body, sig = fresh.json()["session_token"].split(".")
    for forged in (
        f"{head}.{body}.{sig[:-2]}AA",
        f"{head}.{body}",
        "eyJhbGciOiJub25lIn0.e30.",
        "x" * 5000,
    ):
        assert_error(await env.api.request("GET", "/v1/auth/me", forged), 401, "invalid_session")
    res = await env.api.client.get("/v1/auth/me", headers={"Authorization": b"Bearer \xc3\xbc.\xfc.x"})
    assert_error(res, 401, "invalid_session")
    other = SessionCodec("o" * 40).encode(claims["sub"], "s@example.com", env.clock.now_us() // 1_000_000)
    assert_error(await env.api.request("GET", "/v1/auth/me", other), 401, "invalid_session")
    ghost = SessionCodec(SECRET).encode("no-such-account", "g@example.com", env.clock.now_us() // 1_000_000)
    assert_error(await env.api.request("GET", "/v1/auth/me", ghost), 401, "user_not_found")


async def test_session_token_errors(env: Env) -> None:
    assert_error(await env.post("/v1/auth/session", {"token": "0" * 64}), 401, "invalid_token")
    assert_error(await env.post("/v1/auth/session", {"token": "nope"}), 401, "invalid_token")
    assert_error(
        await env.post("/v1/auth/session", {}), 422, "validation_error", "body.token: Field required"
    )
    got = await env.login("sess-0002", "t@example.com")
    env.clock.advance(901)  # one-time tokens live 900 s
    assert_error(await env.post("/v1/auth/session", {"token": got["session_token"]}), 401, "invalid_token")
    assert_error(await env.api.request("POST", "/v1/auth/session/refresh"), 401, "invalid_api_key")


async def test_sessions_unavailable_without_a_secret(plain: Env) -> None:
    got = await plain.login("sess-0003", "u@example.com")
    assert_error(
        await plain.post("/v1/auth/session", {"token": got["session_token"]}), 503, "session_unavailable"
    )
    assert_error(
        await plain.api.request("POST", "/v1/auth/session/refresh", got["api_key"]),
        503,
        "session_unavailable",
    )
    jwt = SessionCodec(SECRET).encode("x", "u@example.com", T0 // 1_000_000)
    assert_error(await plain.api.request("GET", "/v1/auth/me", jwt), 401, "invalid_session")


# ---- pages ---------------------------------------------------------------------------------------
async def test_device_page_and_its_form(env: Env) -> None:
    await env.post("/v1/auth/device-code", {"device_code": "<b>page</b>"})
    page = await env.api.client.get("/auth/device", params={"code": "<b>page</b>"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<b>page</b>" not in page.text and "&lt;b&gt;page&lt;/b&gt;" in page.text
    assert '<label for="email">' in page.text and 'action="/auth/device"' in page.text
    assert "x-ratelimit-limit" not in page.headers  # exempt
    bad = await env.api.client.post("/auth/device", data={"device_code": "<b>page</b>", "email": "nope"})
    assert bad.status_code == 400 and "valid e-mail" in bad.text and 'value="nope"' in bad.text
    sent = await env.api.client.post(
        "/auth/device", data={"device_code": "<b>page</b>", "email": "p@example.com"}
    )
    assert sent.status_code == 200 and "p@example.com" in sent.text
    assert await env.poll("<b>page</b>") == {"status": "email_sent"}
    assert (await env.open(env.logged_link())).status_code == 200
    assert (await env.poll("<b>page</b>"))["status"] == "approved"
    for query, form in (
        ("", None),
        ("?code=abc", None),
        ("", {"device_code": "unknown-1", "email": "p@example.com"}),
    ):
        res = await (
            env.api.client.post("/auth/device", data=form)
            if form
            else env.api.client.get(f"/auth/device{query}")
        )
        assert res.status_code == 400 and res.headers["content-type"].startswith("text/html"), query


async def test_info_lists_device_code_as_enabled(env: Env) -> None:
    assert (await env.api.client.get("/v1/info")).json()["disabled_primitives"] == []


# ---- mail and logs --------------------------------------------------------------------------------
async def test_magic_link_by_smtp_and_no_secret_in_the_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with smtp_sink() as (sink, port):
        async for env in _env(
            settings,
            caplog,
            session_secret=SECRET,
            smtp_url=f"smtp://127.0.0.1:{port}?from=login@cuefast.test",
        ):
            await env.start("mail-0001", "m@example.com")
            msg = sink.wait_for("m@example.com")
            assert msg["From"] == "login@cuefast.test" and msg["Subject"] == "Sign in to cuefast"
            link = sink.link("m@example.com")
            assert (await env.open(link)).status_code == 200
            got = await env.poll("mail-0001")
            jwt = (await env.post("/v1/auth/session", {"token": got["session_token"]})).json()[
                "session_token"
            ]
            await env.api.request("POST", "/v1/auth/session/refresh", jwt)
            logged = "\n".join(r.getMessage() for r in env.records())
            token = parse_qs(urlsplit(link).query)["token"][0]
            for secret in (token, got["api_key"], got["session_token"], jwt, SECRET, "mail-0001", sha(token)):
                assert secret not in logged, secret


async def test_logged_link_is_one_line_without_other_secrets(env: Env) -> None:
    got = await env.login("logs-0001", "l@example.com")
    jwt = (await env.post("/v1/auth/session", {"token": got["session_token"]})).json()["session_token"]
    await env.api.request("GET", "/v1/auth/me", jwt)
    lines = [r.getMessage() for r in env.records()]
    token = parse_qs(urlsplit(env.logged_link()).query)["token"][0]
    assert len([m for m in lines if token in m]) == 1
    logged = "\n".join(lines)
    for secret in (got["api_key"], got["session_token"], jwt, SECRET):
        assert secret not in logged


# ---- for the dashboard ---------------------------------------------------------------------------
async def test_dashboard_magic_link_turns_into_an_account(env: Env) -> None:
    login = env.api.rt.login
    key = await env.api.register("dash@example.com")
    await login.send_magic_link(
        "dash@example.com", lambda t: f"http://localhost:8000/dashboard/login?token={t}", "127.0.0.1"
    )
    link = next(
        m
        for r in env.caplog.records
        for m in re.findall(r"\S+/dashboard/login\?token=([0-9a-f]{64})", r.getMessage())
    )
    account_id = await login.redeem_magic_link(link)
    me = await env.api.request("GET", "/v1/auth/me", login.new_session(account_id or "", "dash@example.com"))
    assert me.json()["api_key_prefix"] == key[:12]
    assert await login.redeem_magic_link(link) is None  # single use
    assert await login.redeem_magic_link("nope") is None
    await login.send_magic_link(
        "fresh@example.com", lambda t: f"http://x/dashboard/login?token={t}", "127.0.0.1"
    )
    token = re.findall(r"token=([0-9a-f]{64})", env.records()[-1].getMessage())[0]
    assert await login.redeem_magic_link(token) is not None  # a new account, made as register makes one
    assert_error(await env.post("/v1/auth/register", {"email": "fresh@example.com"}), 409, "duplicate_email")


async def test_flow_on_one_redis_and_on_the_cluster(
    settings_on: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Every login script touches one slot (the autouse check), and the flow works on a cluster."""
    async for env in _env(settings_on, caplog, session_secret=SECRET):
        key = await env.api.register("both@example.com")
        got = await env.login("both-0001", "both@example.com")
        assert got["existing_user"] is True
        got = await env.login("both-0002", "newer@example.com")
        jwt = (await env.post("/v1/auth/session", {"token": got["session_token"]})).json()["session_token"]
        assert (await env.api.request("GET", "/v1/auth/me", jwt)).json()["email"] == "newer@example.com"
        assert (await env.api.request("GET", "/v1/auth/me", key)).status_code == 200
        for _ in range(4):
            await env.post("/v1/auth/device-code", {"device_code": f"both-{_}-x"})
        assert_limited(await env.post("/v1/auth/device-code", {"device_code": "both-9999"}))


def test_session_secret_setting() -> None:
    from cuefast.config import load_settings
    from cuefast.errors import ConfigError

    assert load_settings({"CUEFAST_SESSION_SECRET": "k" * 32}).session_secret == "k" * 32
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_settings({"CUEFAST_SESSION_SECRET": "short"})
    assert "k" * 32 not in repr(SessionCodec("k" * 32))
