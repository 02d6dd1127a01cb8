"""HTTP conventions (CONTRACT.md §3, §5): envelope, request id, CORS, 404/405/413, info, health."""

from __future__ import annotations

import uuid

from tests.conftest import Api, assert_error


async def test_unknown_route_and_wrong_method(api: Api) -> None:
    assert_error(await api.client.get("/v1/nope"), 404, "http_error", "Not Found")
    assert_error(await api.client.get("/v1/agents"), 404, "http_error", "Not Found")
    assert_error(await api.client.put("/v1/cues"), 405, "http_error", "Method Not Allowed")
    assert_error(await api.client.delete("/v1/auth/register"), 405, "http_error", "Method Not Allowed")


async def test_request_id_is_fresh_and_client_value_ignored(api: Api) -> None:
    a = await api.client.get("/health", headers={"X-Request-Id": "mine"})
    b = await api.client.get("/v1/nope")
    for res in (a, b):
        uuid.UUID(res.headers["x-request-id"])
    assert a.headers["x-request-id"] != "mine"
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


async def test_body_too_large(api: Api) -> None:
    key = await api.register()
    big = b'{"name": "' + b"x" * (1_048_576) + b'"}'
    res = await api.request("POST", "/v1/cues", key, content=big)
    assert_error(res, 413, "request_too_large", "Request body exceeds 1048576 bytes")

    async def stream():  # no Content-Length: the streamed size counts
        for _ in range(17):
            yield b"x" * 65536

    res = await api.request("POST", "/v1/cues", key, content=stream())
    assert_error(res, 413, "request_too_large")


async def test_invalid_json_whatever_content_type(api: Api) -> None:
    key = await api.register()
    res = await api.request("POST", "/v1/cues", key, content=b"{bad", headers={"Content-Type": "text/plain"})
    assert_error(res, 400, "invalid_json", "Request body is not valid JSON")
    res = await api.request("POST", "/v1/cues", key, content=b'{"a": NaN}')
    assert_error(res, 400, "invalid_json")
    # valid JSON without a JSON content type is parsed
    res = await api.request(
        "POST",
        "/v1/cues",
        key,
        content=b'{"name":"t","transport":"worker","schedule":{"type":"recurring","cron":"* * * * *"}}',
        headers={"Content-Type": "text/plain"},
    )
    assert res.status_code == 201, res.text


async def test_get_with_json_content_type_and_no_body(api: Api) -> None:
    key = await api.register()
    res = await api.request("GET", "/v1/cues", key, headers={"Content-Type": "application/json"})
    assert res.status_code == 200


async def test_trailing_slash_is_the_same_route(api: Api) -> None:
    key = await api.register()
    res = await api.request("GET", "/v1/cues/", key)
    assert res.status_code == 200 and "cues" in res.json()
    assert (await api.client.get("/health/")).status_code == 200


async def test_cors(api: Api) -> None:
    res = await api.client.get("/v1/nope", headers={"Origin": "https://app.example"})
    assert res.headers["access-control-allow-origin"] == "https://app.example"
    assert res.headers["access-control-allow-credentials"] == "true"
    assert "X-RateLimit-Remaining" in res.headers["access-control-expose-headers"]
    pre = await api.client.options(
        "/v1/cues",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert pre.status_code in (200, 204)
    assert pre.headers["access-control-max-age"] == "600"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert pre.headers["access-control-allow-origin"] == "https://app.example"


async def test_info(api: Api) -> None:
    res = await api.client.get("/v1/info")
    assert res.status_code == 200
    assert res.json() == {
        "version": "0.1.0",
        "authorization_backend": "SameTenantAuthorizationBackend",
        "authentication_paths": {"per_user_api_key": True, "internal_token_with_on_behalf_of": False},
        "disabled_primitives": [],
    }


async def test_health_and_status(api: Api) -> None:
    res = await api.client.get("/health")
    assert res.status_code == 200
    body = res.json()
    assert body["services"]["redis"] == "ok"
    assert body["services"]["postgres"] == "ok"
    assert body["version"] == "0.1.0"
    assert body["timestamp"].endswith("+00:00")
    assert set(body["queue"]) == {
        "pending_outbox",
        "stale_executions",
        "pending_retries",
        "pending_worker_claims",
    }
    status = await api.client.get("/status")
    assert status.status_code == 200 and status.json() == {"status": "healthy"}


async def test_status_degraded_without_postgres(api: Api) -> None:
    pool, api.rt.pg_pool = api.rt.pg_pool, None
    try:
        res = await api.client.get("/status")
        assert res.status_code == 200
        assert res.json() == {"status": "degraded", "reason": "postgres unreachable"}
        assert (await api.client.get("/health")).json()["status"] == "degraded"
    finally:
        api.rt.pg_pool = pool


async def test_openapi_schema_is_served_and_valid(api: Api) -> None:
    res = await api.client.get("/openapi.json")
    assert res.status_code == 200
    schema = res.json()
    assert schema["openapi"].startswith("3.")
    for path in ("/v1/cues", "/v1/cues/{cue_id}", "/v1/auth/register", "/health"):
        assert path in schema["paths"], path
    # every operation has responses and an operationId
    for ops in schema["paths"].values():
        for op in ops.values():
            assert "responses" in op


async def test_unhandled_error_is_an_envelope_without_traceback(api: Api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = await api.register()

    async def boom(*a: object, **k: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(api.rt.cues, "list", boom)
    res = await api.request("GET", "/v1/cues", key)
    assert_error(res, 500, "internal_error", "An internal error occurred")
    assert "secret" not in res.text and "Traceback" not in res.text


async def test_health_reports_workers_and_queues(api: Api) -> None:
    """/health's worker and queue numbers are live: a registry heartbeat counts an alive pull
    worker (any account), a fired worker execution a pending claim, a deleted worker is gone."""
    key = await api.register()
    res = await api.request(
        "POST",
        "/v1/cues",
        key,
        json={
            "name": "w",
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
            "payload": {"task": "t"},
        },
    )
    assert res.status_code == 201, res.text
    assert (await api.request("POST", f"/v1/cues/{res.json()['id']}/fire", key, json={})).status_code == 200
    before = (await api.client.get("/health")).json()
    assert before["workers"] == {"active_count": 0}
    assert before["queue"]["pending_worker_claims"] == 1
    beat = await api.request(
        "POST", "/v1/worker/heartbeat", key, json={"worker_id": "box-1", "handlers": ["t"]}
    )
    assert beat.status_code == 200, beat.text
    after = (await api.client.get("/health")).json()
    assert after["workers"]["active_count"] == 1 and after["workers"]["last_heartbeat"].endswith("Z")
    assert (await api.request("DELETE", "/v1/workers/box-1", key)).status_code == 204
    assert (await api.client.get("/health")).json()["workers"] == {"active_count": 0}
