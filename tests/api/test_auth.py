"""Accounts and keys (CONTRACT.md §3.4, §6) against real Redis."""

from __future__ import annotations

import hashlib
import re

import pytest

from cuefast.config import Settings
from tests.conftest import Api, assert_error, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


CONFIRM = {"X-Confirm-Destructive": "true"}


async def test_register_returns_key_and_stores_only_its_hash(api: Api) -> None:
    res = await api.client.post("/v1/auth/register", json={"email": "Alice.Smith+x@Example.com"})
    assert res.status_code == 201
    body = res.json()
    assert body["email"] == "Alice.Smith+x@Example.com"
    key = body["api_key"]
    assert re.fullmatch(r"cue_sk_[0-9a-f]{32}", key)
    # the key itself is nowhere in Redis; its SHA-256 is
    r = api.rt.store.redis
    found = []
    async for k in r.scan_iter(match=f"{api.rt.keys.prefix}:*"):
        t = await r.type(k)
        if t == "hash":
            found.append(str(await r.hgetall(k)))
        elif t == "string":
            found.append(str(await r.get(k)))
    dump = " ".join(found)
    assert key not in dump
    assert hashlib.sha256(key.encode()).hexdigest() in dump


async def test_me_and_slug(api: Api) -> None:
    key = await api.register("Bob.O'Neil@example.com")
    res = await api.request("GET", "/v1/auth/me", key)
    assert res.status_code == 200
    me = res.json()
    assert me == {
        "email": "Bob.O'Neil@example.com",
        "plan": "free",
        "active_cues": 0,
        "active_cue_limit": 1_000_000,
        "executions_this_month": 0,
        "monthly_execution_limit": 1_000_000_000,
        "rate_limit_per_minute": 60_000,
        "has_webhook_secret": True,
        "api_key_prefix": key[:12],
        "slug": "bob-o-neil",
    }
    # same local part → slug gets a random suffix
    key2 = await api.register("bob.o.neil@other.example.com")
    slug2 = (await api.request("GET", "/v1/auth/me", key2)).json()["slug"]
    assert re.fullmatch(r"bob-o-neil-[0-9a-f]{4}", slug2)


async def test_slug_edge_cases(api: Api) -> None:
    key = await api.register("___@example.com")
    assert (await api.request("GET", "/v1/auth/me", key)).json()["slug"] == "user"
    long = "a" * 64
    key = await api.register(f"{long}@example.com")
    assert (await api.request("GET", "/v1/auth/me", key)).json()["slug"] == "a" * 60


@pytest.mark.parametrize("email", ["A@Example.com", "a@example.com", "a@EXAMPLE.COM"])
async def test_duplicate_email_is_case_insensitive(api: Api, email: str) -> None:
    await api.register("a@Example.Com")
    res = await api.client.post("/v1/auth/register", json={"email": email})
    assert_error(res, 409, "duplicate_email", "Email already registered")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.email"),
        ({"email": "not-an-email"}, "body.email"),
        ({"email": "a@b"}, "body.email"),
        ({"email": 5}, "body.email"),
        ({"email": "a b@example.com"}, "body.email"),
        ({"email": None}, "body.email"),
    ],
)
async def test_register_validation(api: Api, body: dict[str, object], field: str) -> None:
    err = assert_error(await api.client.post("/v1/auth/register", json=body), 422, "validation_error")
    assert err["details"][0]["field"] == field
    assert err["message"].startswith(field + ": ")


async def test_register_body_shapes(api: Api) -> None:
    assert_error(await api.client.post("/v1/auth/register", content=b"{nope"), 400, "invalid_json")
    err = assert_error(await api.client.post("/v1/auth/register", json=[1]), 422, "validation_error")
    assert err["message"] == "body: Input should be a valid dictionary or object to extract fields from"
    err = assert_error(await api.client.post("/v1/auth/register", content=b""), 422, "validation_error")
    assert err["message"] == "body: Field required"


async def test_registration_disabled(settings: Settings) -> None:
    client, rt = await make_api(settings.replace(allow_register=False))
    try:
        res = await client.client.post("/v1/auth/register", json={"email": "x@example.com"})
        assert_error(res, 404, "not_found", "Registration is disabled")
    finally:
        await client.client.aclose()
        await rt.close()


@pytest.mark.parametrize(
    ("header", "code", "message"),
    [
        (None, "invalid_api_key", "Missing or invalid Authorization header"),
        ("Basic abc", "invalid_api_key", "Missing or invalid Authorization header"),
        (
            "bearer cue_sk_00000000000000000000000000000000",
            "invalid_api_key",
            "Missing or invalid Authorization header",
        ),
        ("Bearer cue_sk_00000000000000000000000000000000", "invalid_api_key", "Invalid API key"),
        ("Bearer some.jwt.token", "invalid_session", "Invalid session token"),
    ],
)
async def test_auth_failures(api: Api, header: str | None, code: str, message: str) -> None:
    headers = {} if header is None else {"Authorization": header}
    res = await api.client.get("/v1/auth/me", headers=headers)
    assert_error(res, 401, code, message)


async def test_key_rotation(api: Api) -> None:
    old = await api.register()
    assert_error(
        await api.request("POST", "/v1/auth/key/regenerate", old),
        400,
        "confirmation_required",
        "This action is destructive. Set X-Confirm-Destructive: true header to confirm.",
    )
    assert_error(
        await api.request("POST", "/v1/auth/key/regenerate", old, headers={"X-Confirm-Destructive": "True"}),
        400,
        "confirmation_required",
    )
    res = await api.request(
        "POST", "/v1/auth/key/regenerate", old, headers={"X-Confirm-Destructive": " true "}
    )
    assert res.status_code == 200
    body = res.json()
    new = body["api_key"]
    assert body["previous_key_revoked"] is True and re.fullmatch(r"cue_sk_[0-9a-f]{32}", new)
    assert_error(
        await api.request("GET", "/v1/auth/me", old),
        401,
        "key_rotated",
        "This API key has been rotated. Use your new key.",
    )
    me = await api.request("GET", "/v1/auth/me", new)
    assert me.status_code == 200 and me.json()["api_key_prefix"] == new[:12]
    # the rotated marker expires after 24 h
    ttl = await api.rt.store.redis.pttl(api.rt.keys.rotated_key(hashlib.sha256(old.encode()).hexdigest()))
    assert 0 < ttl <= 24 * 3600 * 1000


async def test_key_reveal_disabled_and_enabled(api: Api, settings: Settings) -> None:
    key = await api.register()
    res = await api.request("GET", "/v1/auth/key", key)
    assert res.json() == {
        "api_key": None,
        "prefix": key[:12],
        "message": "Key reveal is disabled on this server.",
    }
    client, rt = await make_api(settings.replace(key_reveal_secret="s3cret"))
    try:
        # a key registered before the secret was set cannot be revealed
        res = await client.request("GET", "/v1/auth/key", key)
        assert res.json()["message"] == "Key not available. Regenerate to enable Reveal."
        fresh = await client.register()
        assert (await client.request("GET", "/v1/auth/key", fresh)).json() == {"api_key": fresh}
        res = await client.request("POST", "/v1/auth/key/regenerate", fresh, headers=CONFIRM)
        rotated = res.json()["api_key"]
        assert (await client.request("GET", "/v1/auth/key", rotated)).json() == {"api_key": rotated}
    finally:
        await client.client.aclose()
        await rt.close()


async def test_webhook_and_alert_secrets(api: Api) -> None:
    key = await api.register()
    s1 = (await api.request("GET", "/v1/auth/webhook-secret", key)).json()["webhook_secret"]
    assert re.fullmatch(r"whsec_[0-9a-f]{64}", s1)
    assert (await api.request("GET", "/v1/auth/webhook-secret", key)).json()["webhook_secret"] == s1
    assert_error(
        await api.request("POST", "/v1/auth/webhook-secret/regenerate", key), 400, "confirmation_required"
    )
    res = (await api.request("POST", "/v1/auth/webhook-secret/regenerate", key, headers=CONFIRM)).json()
    assert res["previous_secret_revoked"] is True and res["webhook_secret"] != s1
    assert (await api.request("GET", "/v1/auth/webhook-secret", key)).json()["webhook_secret"] == res[
        "webhook_secret"
    ]

    a1 = (await api.request("GET", "/v1/auth/alert-webhook-secret", key)).json()["alert_webhook_secret"]
    assert re.fullmatch(r"[0-9a-f]{64}", a1)
    assert (await api.request("GET", "/v1/auth/alert-webhook-secret", key)).json()[
        "alert_webhook_secret"
    ] == a1
    assert_error(
        await api.request("POST", "/v1/auth/alert-webhook-secret/regenerate", key),
        400,
        "confirmation_required",
    )
    res = (await api.request("POST", "/v1/auth/alert-webhook-secret/regenerate", key, headers=CONFIRM)).json()
    assert res["previous_secret_revoked"] is True and res["alert_webhook_secret"] != a1


async def test_patch_me(api: Api) -> None:
    key = await api.register("first@example.com")
    other = await api.register("taken@example.com")
    assert other
    assert_error(
        await api.request("PATCH", "/v1/auth/me", key, json={}), 422, "no_fields", "No fields to update"
    )
    assert_error(await api.request("PATCH", "/v1/auth/me", key, json={"email": None}), 422, "no_fields")
    assert_error(
        await api.request("PATCH", "/v1/auth/me", key, json={"email": "TAKEN@example.com"}),
        409,
        "duplicate_email",
    )
    err = assert_error(
        await api.request("PATCH", "/v1/auth/me", key, json={"email": "nope"}), 422, "validation_error"
    )
    assert err["details"][0]["field"] == "body.email"
    res = await api.request("PATCH", "/v1/auth/me", key, json={"email": "second@example.com"})
    assert res.status_code == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00", res.json()["updated_at"])
    assert (await api.request("GET", "/v1/auth/me", key)).json()["email"] == "second@example.com"
    # the old address is free again, the new one is taken
    await api.register("first@example.com")
    assert_error(
        await api.client.post("/v1/auth/register", json={"email": "Second@example.com"}),
        409,
        "duplicate_email",
    )
    # alert webhook url: SSRF rules at save time, "" clears
    err = assert_error(
        await api.request(
            "PATCH", "/v1/auth/me", key, json={"alert_webhook_url": "http://169.254.169.254/x"}
        ),
        400,
        "invalid_alert_webhook_url",
    )
    assert "blocked" in err["message"]
    ok = await api.request(
        "PATCH", "/v1/auth/me", key, json={"alert_webhook_url": "http://127.0.0.1:9/alerts"}
    )
    assert ok.status_code == 200
    account = await api.rt.accounts.authenticate(f"Bearer {key}")
    assert account.alert_url == "http://127.0.0.1:9/alerts"
    assert (await api.request("PATCH", "/v1/auth/me", key, json={"alert_webhook_url": ""})).status_code == 200
    account = await api.rt.accounts.authenticate(f"Bearer {key}")
    assert account.alert_url == ""
