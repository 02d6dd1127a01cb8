"""Input limits (README "Input limits"): every bound refuses just above it and accepts at it,
with the contract's envelope; stored values that cannot be rendered never fail a listing."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.conftest import Api, assert_error

MAX_AT = "2199-12-31T23:59:59.999999Z"


def cue_body(name: str = "c", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "transport": "worker",
        "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
        "payload": {"task": "t"},
    }
    body.update(over)
    return body


async def post_json(api: Api, path: str, key: str, body: Any, method: str = "POST") -> Any:
    """Send ``body`` as ASCII JSON (lone surrogates travel as ``\\udXXX`` escapes)."""
    return await api.request(method, path, key, content=json.dumps(body).encode())


async def make_cue(api: Api, key: str, name: str = "c", **over: Any) -> dict[str, Any]:
    res = await post_json(api, "/v1/cues", key, cue_body(name, **over))
    assert res.status_code == 201, res.text
    out: dict[str, Any] = res.json()
    return out


# ---- A3: instants are bounded, rendering is total ------------------------------------------


async def test_schedule_at_is_bounded(api: Api) -> None:
    key = await api.register()
    once = {"type": "once", "at": MAX_AT}
    cue = await make_cue(api, key, "at-max", schedule=once)
    assert cue["schedule"]["at"] == "2199-12-31T23:59:59.999999+00:00"
    assert cue["next_run"] == MAX_AT
    for at, tz in (
        ("2200-01-01T00:00:00Z", "UTC"),
        ("9999-12-31T23:00:00-10:00", "UTC"),  # the issue's value: was a 500 and a poisoned listing
        ("9999-12-31T23:59:59", "Pacific/Kiritimati"),
        ("2199-12-31T23:30:00", "America/New_York"),  # in range as UTC, past the bound in its zone
    ):
        res = await post_json(
            api, "/v1/cues", key, cue_body("late", schedule={"type": "once", "at": at, "timezone": tz})
        )
        assert_error(res, 400, "invalid_schedule", f"Scheduled time must not be after {MAX_AT}")
    res = await post_json(
        api, "/v1/cues", key, cue_body("early", schedule={"type": "once", "at": "1969-12-31T23:59:59Z"})
    )
    assert_error(res, 400, "invalid_schedule", "Scheduled time must be in the future")
    res = await post_json(
        api, f"/v1/cues/{cue['id']}", key, {"schedule": {"at": "2200-01-01T00:00:00Z"}}, "PATCH"
    )
    assert_error(res, 400, "invalid_schedule")
    res = await api.request("GET", "/v1/cues", key)
    assert res.status_code == 200, res.text
    assert [c["id"] for c in res.json()["cues"]] == [cue["id"]]
    assert res.json()["cues"][0]["schedule"]["at"] == "2199-12-31T23:59:59.999999+00:00"


async def test_send_at_is_bounded(api: Api) -> None:
    key = await api.register()
    cue = await make_cue(api, key)
    for send_at in ("9999-12-31T23:00:00-10:00", "2200-01-01T00:00:00Z", "1969-12-31T23:59:59Z"):
        res = await post_json(api, f"/v1/cues/{cue['id']}/fire", key, {"send_at": send_at})
        assert_error(
            res, 400, "invalid_schedule", f"send_at must be between 1970-01-01T00:00:00Z and {MAX_AT}"
        )
    res = await api.request("GET", "/v1/executions", key)
    assert res.status_code == 200 and res.json()["total"] == 0  # nothing written
    res = await post_json(api, f"/v1/cues/{cue['id']}/fire", key, {"send_at": MAX_AT})
    assert res.status_code == 200, res.text
    assert res.json()["scheduled_for"] == "2199-12-31T23:59:59.999999+00:00"
    res = await api.request("GET", "/v1/executions", key)
    assert res.status_code == 200 and res.json()["executions"][0]["scheduled_for"] == MAX_AT


async def test_alert_since_is_bounded(api: Api) -> None:
    key = await api.register()
    res = await api.request("GET", "/v1/alerts", key, params={"since": MAX_AT})
    assert res.status_code == 200, res.text
    for since in ("2200-01-01T00:00:00Z", "9999-12-31T23:00:00-10:00", "0001-01-01T00:00:00Z"):
        res = await api.request("GET", "/v1/alerts", key, params={"since": since})
        err = assert_error(res, 422, "validation_error")
        assert err["details"][0]["field"] == "query.since"


async def test_bad_stored_values_never_fail_a_listing(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    key = await api.register()
    good = await make_cue(api, key, "good")
    bad = await make_cue(api, key, "bad")
    broken = await make_cue(api, key, "broken")
    res = await post_json(api, f"/v1/cues/{bad['id']}/fire", key, {})
    eid = res.json()["id"]
    r, k = api.rt.store.redis, api.rt.keys
    await r.hset(
        k.cue(bad["id"]),
        mapping={
            "nr": "99999999999999999999",
            "lr": "abc",
            "rc": "x",
            "sch": "once|UTC|latest|-99999999999999999999|",
        },
    )
    await r.hset(k.cue(broken["id"]), "sch", "garbage")  # no config can be read at all
    p = k.execution_partition(eid)
    assert p is not None
    await r.hset(
        k.execution(p, eid),
        mapping={"sf": "99999999999999999999", "la": "x", "att": "?", "pl": '{"bad', "oc": "["},
    )
    caplog.set_level(logging.ERROR, logger="cuefast.data")
    res = await api.request("GET", "/v1/cues", key)
    assert res.status_code == 200, res.text
    by_id = {c["id"]: c for c in res.json()["cues"]}
    assert set(by_id) == {good["id"], bad["id"], broken["id"]}  # never a 500
    # no config can be read: listed with a default schedule, so its owner can find and delete it
    assert by_id[broken["id"]]["schedule"] == {"type": "recurring", "timezone": "UTC"}
    res = await api.request("GET", f"/v1/cues/{broken['id']}", key)
    assert res.status_code == 200, res.text
    res = await api.request("PATCH", f"/v1/cues/{broken['id']}", key, json={"status": "paused"})
    assert res.status_code < 500, res.text
    res = await api.request("DELETE", f"/v1/cues/{broken['id']}", key)
    assert res.status_code in (200, 204), res.text
    c = by_id[bad["id"]]
    assert c["next_run"] is None and c["last_run"] is None and c["run_count"] == 0
    assert c["schedule"] == {"type": "once", "timezone": "UTC"}
    assert by_id[good["id"]]["next_run"] is not None
    res = await api.request("GET", f"/v1/cues/{bad['id']}", key)
    assert res.status_code == 200, res.text
    [e] = res.json()["executions"]
    assert e["scheduled_for"] is None and e["last_attempt_at"] is None and e["attempts"] == 0
    assert e["payload"] == {} and e["outcome"] is None and e["created_at"] is not None
    for path in ("/v1/executions", f"/v1/executions?cue_id={bad['id']}", "/v1/executions?status=pending"):
        res = await api.request("GET", path, key)
        assert res.status_code == 200, (path, res.text)
        assert res.json()["executions"][0]["scheduled_for"] is None
    res = await api.request("GET", f"/v1/executions/{eid}", key)
    assert res.status_code == 200 and res.json()["payload"] == {}
    logged = " ".join(rec.getMessage() for rec in caplog.records if rec.name == "cuefast.data")
    for needle in (bad["id"], broken["id"], eid, "next_run", "scheduled_for", "payload"):
        assert needle in logged
    assert "99999999999999999999" not in logged  # values are never logged


# ---- A9: the extra SSRF ranges at create (the delivery side: tests/test_ssrf.py) -------------


@pytest.mark.parametrize(
    "host", ["[::127.0.0.1]", "[64:ff9b:1::a00:1]", "[::ffff:0:a00:1]", "[fec0::1]", "192.0.0.170"]
)
async def test_extra_ssrf_ranges_refused_at_create(api: Api, host: str) -> None:
    key = await api.register()
    hook = {"url": f"https://{host}/hook"}
    body = cue_body("ssrf", transport="webhook", callback=hook)
    blocked = "Callback URL resolves to blocked address range"
    assert_error(await post_json(api, "/v1/cues", key, body), 400, "invalid_callback_url", blocked)
    body = cue_body("ssrf", on_failure={"webhook": f"https://{host}/x"})
    res = await post_json(api, "/v1/cues", key, body)
    assert_error(res, 400, "invalid_callback_url", f"on_failure.webhook: {blocked}")
    res = await post_json(api, "/v1/auth/me", key, {"alert_webhook_url": f"https://{host}/a"}, "PATCH")
    assert_error(res, 400, "invalid_alert_webhook_url", blocked)
    assert (await api.request("GET", "/v1/cues", key)).json()["total"] == 0


# ---- A7: nesting depth, text, integers and ids ----------------------------------------------


def nested(depth: int) -> str:
    """A JSON text nesting arrays ``depth`` deep (``[[…]]``)."""
    return "[" * depth + "]" * depth


@pytest.mark.slow
async def test_nesting_depth_is_bounded_on_every_body(api: Api) -> None:
    key = await api.register()
    # the body object is level 1, so a payload of 63 levels is a body of 64: accepted
    ok = '{"name": "deep", "transport": "worker", "schedule": {"type": "recurring", "cron": "0 0 1 1 *"}, '
    res = await api.request(
        "POST", "/v1/cues", key, content=(ok + f'"payload": {{"a": {nested(62)}}}}}').encode()
    )
    assert res.status_code == 201, res.text
    cue_id = res.json()["id"]
    res = await api.request(
        "POST", "/v1/cues", key, content=(ok + f'"payload": {{"a": {nested(63)}}}}}').encode()
    )
    err = assert_error(res, 422, "validation_error", "body: JSON should not nest deeper than 64 levels")
    assert err["details"] == [{"field": "body", "message": "JSON should not nest deeper than 64 levels"}]
    eid = (await post_json(api, f"/v1/cues/{cue_id}/fire", key, {})).json()["id"]
    for depth in (300, 1000, 100_000):  # 300-1000 deep were 500s (recursion after decoding)
        for method, path in (
            ("POST", "/v1/cues"),
            ("PATCH", f"/v1/cues/{cue_id}"),
            ("POST", f"/v1/cues/{cue_id}/fire"),
            ("POST", f"/v1/executions/{eid}/outcome"),
            ("PATCH", f"/v1/executions/{eid}/evidence"),
            ("POST", "/v1/worker/outcomes"),
            ("POST", "/v1/echo/tok-0123456789abcdef"),
        ):
            body = f'{{"payload": {nested(depth)}, "metadata": {{"m": {nested(depth)}}}}}'
            res = await api.request(method, path, key, content=body.encode())
            assert_error(res, 422, "validation_error")
    # strings that look like brackets do not count
    body = {"success": True, "result": "[" * 5000 + "{" * 5000, "metadata": {"s": "]]]}}}" * 100}}
    res = await post_json(api, f"/v1/executions/{eid}/outcome", key, body)
    assert res.status_code == 200, res.text


@pytest.mark.parametrize("field", ["result", "error", "metadata", "artifacts"])
async def test_lone_surrogate_in_an_outcome_is_422(api: Api, field: str) -> None:
    key = await api.register()
    cue = await make_cue(api, key)
    eid = (await post_json(api, f"/v1/cues/{cue['id']}/fire", key, {})).json()["id"]
    value: Any = {
        "result": "a\ud800b",
        "error": "\udfff",
        "metadata": {"k\udc00": 1},
        "artifacts": [{"x": "\ud800"}],
    }
    res = await post_json(api, f"/v1/executions/{eid}/outcome", key, {"success": True, field: value[field]})
    err = assert_error(res, 422, "validation_error")
    assert err["details"][0]["field"] == f"body.{field}"
    got = (await api.request("GET", f"/v1/executions/{eid}", key)).json()
    assert got["outcome"] is None  # nothing written
    if field in ("metadata", "artifacts"):
        res = await post_json(api, f"/v1/executions/{eid}/evidence", key, {field: value[field]}, "PATCH")
        assert_error(res, 422, "validation_error")
    # NUL stays allowed in the free-text result/error (handler output)
    res = await post_json(api, f"/v1/executions/{eid}/outcome", key, {"success": False, "error": "a\x00b"})
    assert res.status_code == 200, res.text


async def test_one_bad_item_never_fails_a_batch(api: Api) -> None:
    key = await api.register()
    cue = await make_cue(api, key)
    ids = [(await post_json(api, f"/v1/cues/{cue['id']}/fire", key, {})).json()["id"] for _ in range(3)]
    outcomes = [
        {"execution_id": ids[0], "success": True, "result": "fine"},
        {"execution_id": ids[1], "success": True, "result": "bad \ud800", "metadata": {"\udc00": 1}},
        {"execution_id": ids[2], "success": False, "artifacts": ["\ud800"]},
        {"execution_id": "not-an-id\ud800", "success": True},
        "not an object",
        {"execution_id": ids[0].upper(), "success": True},
    ]
    res = await post_json(api, "/v1/worker/outcomes", key, {"worker_id": "w", "outcomes": outcomes})
    assert res.status_code == 200, res.text
    results = res.json()["results"]
    assert [r["outcome_recorded"] for r in results] == [True, False, False, False, False, False]
    codes = [r["error"] and r["error"]["code"] for r in results]
    assert codes == [
        None,
        "validation_error",
        "validation_error",
        "execution_not_found",
        "validation_error",
        "execution_not_found",
    ]
    got = [(await api.request("GET", f"/v1/executions/{e}", key)).json()["outcome"] for e in ids]
    assert got[0]["result"] == "fine" and got[1] is None and got[2] is None


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/cues", "offset"),
        ("/v1/executions", "offset"),
        ("/v1/alerts", "offset"),
        ("/v1/cues/{cue}", "execution_offset"),
    ],
)
async def test_offset_is_bounded(api: Api, path: str, name: str) -> None:
    key = await api.register()
    cue = await make_cue(api, key)
    path = path.format(cue=cue["id"])
    res = await api.request("GET", path, key, params={name: "10000000"})
    assert res.status_code == 200, res.text
    for bad in ("10000001", str(2**63), str(2**64), "9" * 5000, "١٢", "1_0", "0x10", "1e3", " "):
        res = await api.request("GET", path, key, params={name: bad})
        err = assert_error(res, 422, "validation_error")
        assert err["details"][0]["field"] == f"query.{name}", bad
    res = await api.request("GET", path, key, params={name: " +5 "})
    assert res.status_code == 200


async def test_ids_are_checked_before_they_reach_a_key(api: Api) -> None:
    key = await api.register()
    keys = api.rt.keys
    cues = [await make_cue(api, key, f"c{i}") for i in range(40)]
    # an id whose "<id>:cfg" / "<id>:execs" key lands in the same partition reads the cue's own
    # config string / execution zset as if it were a cue hash (WRONGTYPE: a 500 before)
    twins = [
        f"{c['id']}{suffix}"
        for c in cues
        for suffix in (":cfg", ":execs")
        if keys.cue_partition(c["id"] + suffix) == keys.cue_partition(c["id"])
    ]
    assert twins
    for cue_id in [*twins, "cue_ABCDEFGHIJKL", "cue_abc", "cue_%FF%FEcdefghijkl"]:
        path = f"/v1/cues/{cue_id}"
        for method, sub, body in (
            ("GET", "", None),
            ("PATCH", "", {"description": "x"}),
            ("DELETE", "", None),
            ("POST", "/fire", {}),
        ):
            res = await api.request(method, path + sub, key, json=body)
            assert_error(res, 404, "cue_not_found")
        res = await api.request("GET", "/v1/executions", key, params={"cue_id": cue_id})
        assert res.status_code == 200 and res.json()["total"] == 0
    res = await post_json(api, "/v1/cues/bulk-delete", key, {"ids": [*twins, "cue_\ud800"]})
    # (the confirmation header comes first)
    assert_error(res, 400, "confirmation_required")
    confirm = {"X-Confirm-Destructive": "true"}
    res = await api.request(
        "POST", "/v1/cues/bulk-delete", key, json={"ids": [*twins, "cue_x"]}, headers=confirm
    )
    assert res.status_code == 200 and res.json() == {"deleted": [], "skipped": [*twins, "cue_x"]}
    body = json.dumps({"ids": ["cue_\ud800"]}).encode()  # cannot be echoed in "skipped": 422
    res = await api.request("POST", "/v1/cues/bulk-delete", key, content=body, headers=confirm)
    assert_error(res, 422, "validation_error")
    assert (await api.request("GET", "/v1/cues", key)).json()["total"] == 40  # nothing touched
    eid = (await post_json(api, f"/v1/cues/{cues[0]['id']}/fire", key, {})).json()["id"]
    for bad in (eid.upper(), eid + ":x", "{" + eid + "}"):
        for method, sub in (
            ("GET", ""),
            ("POST", "/outcome"),
            ("POST", "/claim"),
            ("POST", "/heartbeat"),
            ("POST", "/replay"),
        ):
            res = await api.request(
                method, f"/v1/executions/{bad}{sub}", key, json={"success": True, "worker_id": "w"}
            )
            assert_error(res, 404, "execution_not_found")
    for bad in ("w" * 256, "a%0Ab"):
        res = await api.request("DELETE", f"/v1/workers/{bad}", key)
        assert_error(res, 404, "worker_not_found")


async def test_names_and_worker_ids_are_single_line(api: Api) -> None:
    key = await api.register()
    for name in ("a\r\nb", "a\nb", "a\rb", "tab\there", "\x7f"):
        res = await post_json(api, "/v1/cues", key, cue_body(name))
        err = assert_error(res, 422, "validation_error")
        assert err["details"][0]["field"] == "body.name"
    cue = await make_cue(api, key, "ok name ünïcode")
    res = await post_json(api, f"/v1/cues/{cue['id']}", key, {"name": "x\r\nInjected: 1"}, "PATCH")
    assert_error(res, 422, "validation_error")
    assert (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()["name"] == "ok name ünïcode"
    for path in ("/v1/executions/claim", "/v1/worker/heartbeat", "/v1/worker/claim"):
        res = await post_json(api, path, key, {"worker_id": "w\r\n1"})
        err = assert_error(res, 422, "validation_error")
        assert err["details"][0]["field"] == "body.worker_id"


async def test_string_bounds(api: Api) -> None:
    key = await api.register()
    res = await post_json(api, "/v1/cues", key, cue_body("d1", description="x" * 10_000))
    assert res.status_code == 201, res.text
    res = await post_json(api, "/v1/cues", key, cue_body("d2", description="x" * 10_001))
    assert_error(
        res, 422, "validation_error", "body.description: String should have at most 10000 characters"
    )
    hook = "http://127.0.0.1:9/h"
    ok_headers = {f"h{i}": "v" for i in range(99)} | {"n" * 256: "v" * 8192}
    res = await post_json(
        api,
        "/v1/cues",
        key,
        cue_body("h1", transport="webhook", callback={"url": hook, "headers": ok_headers}),
    )
    assert res.status_code == 201, res.text
    for headers in ({f"h{i}": "v" for i in range(101)}, {"n" * 257: "v"}, {"n": "v" * 8193}):
        res = await post_json(
            api,
            "/v1/cues",
            key,
            cue_body("h2", transport="webhook", callback={"url": hook, "headers": headers}),
        )
        assert_error(res, 422, "validation_error")
    res = await api.request("GET", "/v1/executions/claimable", key, params={"task": "t" * 255, "agent": ""})
    assert res.status_code == 200, res.text
    for params in ({"task": "t" * 256}, {"agent": "a\nb"}):
        res = await api.request("GET", "/v1/executions/claimable", key, params=params)
        assert_error(res, 422, "validation_error")


async def test_echo_input(api: Api) -> None:
    key = await api.register()
    res = await api.request("POST", "/v1/echo/tok-0123456789abcdef", content=b'{"a": "\\ud800"}')
    assert_error(res, 400, "invalid_payload")
    for token in ("tok-0123456789abc:def", "tok-0123456789abc{de}f", "x" * 257, "short"):
        assert_error(await api.request("POST", f"/v1/echo/{token}", json={}), 400, "invalid_token")
        assert_error(await api.request("GET", f"/v1/echo/{token}", key), 400, "invalid_token")
    assert (await api.request("POST", f"/v1/echo/{'x' * 256}", json={})).status_code == 200


async def test_non_json_errors_become_the_envelope(api: Api) -> None:
    """Found by tests/fuzz: Litestar's OpenAPI routes answered their own 404 in HTML."""
    for path in ("/docs/nope", "/docs/x/y", "/docs/swagger.json/x"):
        assert_error(await api.client.get(path), 404, "http_error", "Not Found")
    res = await api.client.get("/docs")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
