"""Cues API (CONTRACT.md §7) against real Redis."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cuefast.config import Settings
from tests.conftest import Api, assert_error, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


HOOK = "http://127.0.0.1:9/hook"
Z_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def webhook_cue(name: str = "c1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "schedule": {"type": "recurring", "cron": "0 9 * * *", "timezone": "UTC"},
        "callback": {"url": HOOK},
    }
    body.update(over)
    return body


def future(minutes: int = 60) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0).isoformat()


async def create(api: Api, key: str, body: dict[str, Any]) -> dict[str, Any]:
    res = await api.request("POST", "/v1/cues", key, json=body)
    assert res.status_code == 201, res.text
    out: dict[str, Any] = res.json()
    return out


async def test_create_full_cue_object(api: Api) -> None:
    key = await api.register()
    cue = await create(
        api,
        key,
        webhook_cue(
            "morning-brief",
            description="hi",
            schedule={"type": "recurring", "cron": "0 9 * * 1", "timezone": "America/New_York"},
            callback={"url": HOOK, "method": "put", "headers": {"X-Team": "ops", "B": "1"}},
            payload={"z": 1, "a": {"y": [1, 2.5, None], "b": "ü"}, "m": True},
            on_success_fire=["ignored"],
        ),
    )
    assert re.fullmatch(r"cue_[a-z0-9]{12}", cue["id"])
    assert cue["name"] == "morning-brief" and cue["description"] == "hi"
    assert cue["status"] == "active" and cue["transport"] == "webhook"
    assert cue["schedule"] == {"type": "recurring", "timezone": "America/New_York", "cron": "0 9 * * 1"}
    assert cue["callback"] == {"url": HOOK, "method": "PUT", "headers": {"X-Team": "ops", "B": "1"}}
    assert list(cue["payload"]) == ["z", "a", "m"]  # key order kept
    assert cue["payload"] == {"z": 1, "a": {"y": [1, 2.5, None], "b": "ü"}, "m": True}
    assert cue["retry"] == {"max_attempts": 3, "backoff_minutes": [1, 5, 15]}
    assert cue["on_failure"] == {"email": True, "webhook": None, "pause": False}
    assert cue["verification"] is None and cue["delivery"] is None and cue["alerts"] is None
    assert cue["catch_up"] == "latest" and cue["warning"] is None
    assert cue["run_count"] == 0 and cue["fired_count"] == 0 and cue["last_run"] is None
    assert Z_RE.match(cue["created_at"]) and cue["created_at"] == cue["updated_at"]
    # next_run: Monday 09:00 New York, strictly in the future
    nr = datetime.fromisoformat(cue["next_run"].replace("Z", "+00:00"))
    from zoneinfo import ZoneInfo

    local = nr.astimezone(ZoneInfo("America/New_York"))
    assert (local.weekday(), local.hour, local.minute, local.second) == (0, 9, 0, 0)
    assert nr > datetime.now(UTC)
    assert cue["next_run"].endswith(":00Z")
    # get returns the same object plus the executions page
    got = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert {k: got[k] for k in cue} == cue
    assert got["executions"] == [] and got["execution_total"] == 0
    assert got["execution_limit"] == 10 and got["execution_offset"] == 0


async def test_worker_cue_defaults_and_warning(api: Api) -> None:
    key = await api.register()
    at = future(120)
    cue = await create(
        api,
        key,
        {
            "name": "nightly-etl",
            "transport": "worker",
            "schedule": {"type": "once", "at": at},
            "payload": {"task": "etl"},
            "verification": {"mode": "require_external_id"},
        },
    )
    assert cue["callback"] == {"url": None, "method": "POST", "headers": {}}
    assert cue["schedule"] == {"type": "once", "timezone": "UTC", "at": at}
    assert cue["next_run"] == at.replace("+00:00", "Z")
    assert cue["warning"] == "No active workers found. Start a cueapi-worker to process this cue."
    assert cue["verification"] == {"mode": "require_external_id"}
    got = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert got["warning"] is None


async def test_once_without_offset_is_wall_clock_in_zone(api: Api) -> None:
    key = await api.register()
    cue = await create(
        api,
        key,
        {
            "name": "w",
            "transport": "worker",
            "schedule": {"type": "once", "at": "2031-07-01T09:30:00", "timezone": "Europe/Berlin"},
        },
    )
    assert cue["schedule"]["at"] == "2031-07-01T07:30:00+00:00"
    assert cue["next_run"] == "2031-07-01T07:30:00Z"
    cue = await create(
        api,
        key,
        {"name": "u", "transport": "worker", "schedule": {"type": "once", "at": "2031-07-01T09:30:00.5Z"}},
    )
    assert cue["next_run"] == "2031-07-01T09:30:00.500000Z"


async def test_optional_objects(api: Api) -> None:
    key = await api.register()
    cue = await create(
        api,
        key,
        webhook_cue(
            retry={"max_attempts": 5},
            on_failure={
                "webhook": {"url": "http://127.0.0.1:9/fail", "method": "PUT"},
                "pause": "true",
                "email": 0,
            },
            delivery={"timeout_seconds": 5},
            alerts={},
            verification={},
            catch_up="all",
            payload=None,
        ),
    )
    assert cue["retry"] == {"max_attempts": 5, "backoff_minutes": [1, 5, 15]}
    assert cue["on_failure"] == {"email": False, "webhook": "http://127.0.0.1:9/fail", "pause": True}
    assert cue["delivery"] == {"timeout_seconds": 5, "outcome_deadline_seconds": 300}
    assert cue["alerts"] == {"consecutive_failures": 3, "missed_window_multiplier": None}
    assert cue["verification"] == {"mode": "none"}
    assert cue["catch_up"] == "all" and cue["payload"] == {}


VALIDATION_CASES: list[tuple[dict[str, Any], str]] = [
    ({"schedule": {"type": "recurring", "cron": "* * * * *"}, "callback": {"url": HOOK}}, "body.name"),
    (webhook_cue(name=""), "body.name"),
    (webhook_cue(name="x" * 256), "body.name"),
    (webhook_cue(name=5), "body.name"),
    (webhook_cue(transport="email"), "body.transport"),
    ({"name": "a", "callback": {"url": HOOK}}, "body.schedule"),
    (webhook_cue(schedule={"cron": "* * * * *"}), "body.schedule.type"),
    (webhook_cue(schedule="daily"), "body.schedule"),
    (webhook_cue(schedule={"type": "once", "at": "tomorrow"}), "body.schedule.at"),
    (webhook_cue(schedule={"type": "recurring", "cron": 5}), "body.schedule.cron"),
    (webhook_cue(callback={"url": "ftp://x.example/a"}), "body.callback.url"),
    (webhook_cue(callback={"url": "not a url"}), "body.callback.url"),
    (webhook_cue(callback={"url": "https://e.example/" + "a" * 2048}), "body.callback.url"),
    (webhook_cue(callback={"url": HOOK, "method": "DELETE"}), "body.callback.method"),
    (webhook_cue(callback={"url": HOOK, "headers": {"X": 1}}), "body.callback.headers.X"),
    (webhook_cue(callback={"url": HOOK, "headers": []}), "body.callback.headers"),
    (webhook_cue(callback={"url": HOOK, "transport": "worker"}), "body.callback.transport"),
    (webhook_cue(payload=[1, 2]), "body.payload"),
    (webhook_cue(payload="x"), "body.payload"),
    (webhook_cue(retry={"max_attempts": 0}), "body.retry.max_attempts"),
    (webhook_cue(retry={"max_attempts": 11}), "body.retry.max_attempts"),
    (webhook_cue(retry={"max_attempts": True}), "body.retry.max_attempts"),
    (webhook_cue(retry={"backoff_minutes": [1] * 11}), "body.retry.backoff_minutes"),
    (webhook_cue(retry={"backoff_minutes": [10081]}), "body.retry.backoff_minutes.0"),
    (webhook_cue(retry={"backoff_minutes": [-1]}), "body.retry.backoff_minutes.0"),
    (webhook_cue(on_failure={"email": "maybe"}), "body.on_failure.email"),
    (webhook_cue(on_failure={"webhook": 5}), "body.on_failure.webhook"),
    (webhook_cue(verification={"mode": "psychic"}), "body.verification.mode"),
    (webhook_cue(delivery={"timeout_seconds": 0}), "body.delivery.timeout_seconds"),
    (webhook_cue(delivery={"timeout_seconds": 3601}), "body.delivery.timeout_seconds"),
    (webhook_cue(delivery={"outcome_deadline_seconds": 86401}), "body.delivery.outcome_deadline_seconds"),
    (webhook_cue(alerts={"consecutive_failures": 0}), "body.alerts.consecutive_failures"),
    (webhook_cue(alerts={"missed_window_multiplier": 101}), "body.alerts.missed_window_multiplier"),
    (webhook_cue(catch_up="some"), "body.catch_up"),
    (webhook_cue(name="a\x00b"), "body.name"),
]


@pytest.mark.parametrize(("body", "field"), VALIDATION_CASES)
async def test_create_validation_errors(api: Api, body: dict[str, Any], field: str) -> None:
    key = await api.register()
    err = assert_error(await api.request("POST", "/v1/cues", key, json=body), 422, "validation_error")
    assert err["details"][0]["field"] == field, err
    assert err["message"] == f"{field}: {err['details'][0]['message']}"
    # nothing was written
    assert (await api.request("GET", "/v1/cues", key)).json()["total"] == 0


async def test_webhook_cue_needs_callback_url(api: Api) -> None:
    key = await api.register()
    for body in (
        {"name": "a", "schedule": {"type": "recurring", "cron": "* * * * *"}},
        {"name": "a", "schedule": {"type": "recurring", "cron": "* * * * *"}, "callback": None},
        {"name": "a", "schedule": {"type": "recurring", "cron": "* * * * *"}, "callback": {"method": "POST"}},
    ):
        err = assert_error(await api.request("POST", "/v1/cues", key, json=body), 422, "validation_error")
        assert err["message"] == "body: Value error, callback.url is required for webhook transport"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"type": "daily"}, "Schedule type must be 'once' or 'recurring'"),
        ({"type": "recurring"}, "Cron expression is required for recurring schedules"),
        ({"type": "recurring", "cron": "61 25 * * *"}, "Invalid cron expression"),
        ({"type": "recurring", "cron": "H * * * *"}, "Invalid cron expression"),
        ({"type": "recurring", "cron": "@reboot"}, "Invalid cron expression"),
        ({"type": "recurring", "cron": ""}, "Cron expression is required for recurring schedules"),
        ({"type": "recurring", "cron": "0 0 30 2 *"}, "Cron expression never fires"),
        ({"type": "recurring", "cron": "* " * 60}, "Cron expression is too long"),
        ({"type": "once"}, "Timestamp is required for one-time schedules"),
        ({"type": "once", "at": "2001-01-01T00:00:00Z"}, "Scheduled time must be in the future"),
    ],
)
async def test_invalid_schedule(api: Api, schedule: dict[str, Any], message: str) -> None:
    key = await api.register()
    res = await api.request("POST", "/v1/cues", key, json=webhook_cue(schedule=schedule))
    assert_error(res, 400, "invalid_schedule", message)


async def test_feb_29_is_valid(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue(schedule={"type": "recurring", "cron": "0 0 29 2 *"}))
    assert cue["next_run"][5:10] == "02-29"


@pytest.mark.parametrize("tz", ["Mars/Base", "+05:00", "UTC+5", ""])
async def test_invalid_timezone(api: Api, tz: str) -> None:
    key = await api.register()
    body = webhook_cue(schedule={"type": "recurring", "cron": "* * * * *", "timezone": tz})
    assert_error(
        await api.request("POST", "/v1/cues", key, json=body),
        422,
        "invalid_timezone",
        f"Unknown timezone: '{tz}'",
    )


async def test_timezone_case_insensitive_echoed_as_sent(api: Api) -> None:
    key = await api.register()
    cue = await create(
        api, key, webhook_cue(schedule={"type": "recurring", "cron": "0 9 * * *", "timezone": "us/pacific"})
    )
    assert cue["schedule"]["timezone"] == "us/pacific"


async def test_payload_rules(api: Api) -> None:
    key = await api.register()
    res = await api.request(
        "POST",
        "/v1/cues",
        key,
        content=b'{"name":"p","transport":"worker","schedule":{"type":"recurring","cron":"* * * * *"},'
        b'"payload":{"a":"\\ud800"}}',
    )
    assert_error(
        res, 400, "invalid_payload", "Payload must not contain NUL characters or unpaired surrogates"
    )
    res = await api.request("POST", "/v1/cues", key, json=webhook_cue(payload={"a\u0000": 1}))
    assert_error(res, 400, "invalid_payload")


async def test_check_order(api: Api) -> None:
    """schema → name → limit → callback SSRF → payload → timezone → schedule → on_failure SSRF."""
    key = await api.register()
    await create(api, key, webhook_cue("taken"))
    bad_everything = webhook_cue(
        "taken",
        callback={"url": "http://169.254.169.254/"},
        payload={"a": "\u0000"},
        schedule={"type": "recurring", "cron": "bad", "timezone": "Nope/Zone"},
        on_failure={"webhook": "http://169.254.169.254/"},
    )
    assert_error(await api.request("POST", "/v1/cues", key, json=bad_everything), 409, "duplicate_cue_name")
    bad_everything["name"] = "free"
    err = assert_error(
        await api.request("POST", "/v1/cues", key, json=bad_everything), 400, "invalid_callback_url"
    )
    assert err["message"] == "Callback URL resolves to blocked address range"
    bad_everything["callback"] = {"url": HOOK}
    assert_error(await api.request("POST", "/v1/cues", key, json=bad_everything), 400, "invalid_payload")
    bad_everything["payload"] = {}
    assert_error(await api.request("POST", "/v1/cues", key, json=bad_everything), 422, "invalid_timezone")
    bad_everything["schedule"]["timezone"] = "UTC"
    assert_error(await api.request("POST", "/v1/cues", key, json=bad_everything), 400, "invalid_schedule")
    bad_everything["schedule"]["cron"] = "* * * * *"
    err = assert_error(
        await api.request("POST", "/v1/cues", key, json=bad_everything), 400, "invalid_callback_url"
    )
    assert err["message"].startswith("on_failure.webhook: ")
    # failed creates left nothing behind
    listing = (await api.request("GET", "/v1/cues", key)).json()
    assert listing["total"] == 1
    bad_everything["on_failure"] = {}
    assert (await api.request("POST", "/v1/cues", key, json=bad_everything)).status_code == 201


async def test_ssrf_default_rejects_loopback(settings: Settings) -> None:
    client, rt = await make_api(settings.replace(allow_private_callbacks=False))
    try:
        key = await client.register()
        err = assert_error(
            await client.request("POST", "/v1/cues", key, json=webhook_cue()), 400, "invalid_callback_url"
        )
        assert err["message"] == "URL must use https://"
        body = webhook_cue(callback={"url": "https://127.0.0.1/hook"})
        assert_error(await client.request("POST", "/v1/cues", key, json=body), 400, "invalid_callback_url")
        # worker cues: callback URL is schema-checked only
        res = await client.request(
            "POST",
            "/v1/cues",
            key,
            json={
                "name": "w",
                "transport": "worker",
                "schedule": {"type": "recurring", "cron": "* * * * *"},
                "callback": {"url": "http://127.0.0.1/x"},
            },
        )
        assert res.status_code == 201
    finally:
        await client.client.aclose()
        await rt.close()


async def test_cue_limit(settings: Settings) -> None:
    client, rt = await make_api(settings.replace(default_cue_limit=2))
    try:
        key = await client.register()
        a = await create(client, key, webhook_cue("a"))
        await create(client, key, webhook_cue("b"))
        assert_error(
            await client.request("POST", "/v1/cues", key, json=webhook_cue("c")),
            403,
            "cue_limit_exceeded",
            "Active cue limit of 2 reached",
        )
        # paused still counts
        await client.request("PATCH", f"/v1/cues/{a['id']}", key, json={"status": "paused"})
        assert_error(
            await client.request("POST", "/v1/cues", key, json=webhook_cue("c")), 403, "cue_limit_exceeded"
        )
        # duplicate name is reported before the limit
        assert_error(
            await client.request("POST", "/v1/cues", key, json=webhook_cue("a")), 409, "duplicate_cue_name"
        )
        # deleting frees a slot
        assert (await client.request("DELETE", f"/v1/cues/{a['id']}", key)).status_code == 204
        await create(client, key, webhook_cue("c"))
    finally:
        await client.client.aclose()
        await rt.close()
    client, rt = await make_api(settings.replace(default_cue_limit=1, enforce_quotas=False))
    try:
        key = await client.register()
        await create(client, key, webhook_cue("a"))
        await create(client, key, webhook_cue("b"))
    finally:
        await client.client.aclose()
        await rt.close()


async def test_list_pagination_and_status_filter(api: Api) -> None:
    key = await api.register()
    ids = [(await create(api, key, webhook_cue(f"c{i}")))["id"] for i in range(7)]
    res = (await api.request("GET", "/v1/cues", key)).json()
    assert res["total"] == 7 and res["limit"] == 50 and res["offset"] == 0
    listed = [c["id"] for c in res["cues"]]
    assert listed == list(reversed(ids))  # newest first
    seen: list[str] = []
    for offset in range(0, 8, 2):
        page = (await api.request("GET", f"/v1/cues?limit=2&offset={offset}", key)).json()
        assert page["limit"] == 2 and page["offset"] == offset and page["total"] == 7
        seen += [c["id"] for c in page["cues"]]
    assert seen == listed
    await api.request("PATCH", f"/v1/cues/{ids[0]}", key, json={"status": "paused"})
    paused = (await api.request("GET", "/v1/cues?status=paused", key)).json()
    assert [c["id"] for c in paused["cues"]] == [ids[0]] and paused["total"] == 1
    assert (await api.request("GET", "/v1/cues?status=active", key)).json()["total"] == 6
    assert (await api.request("GET", "/v1/cues?status=bogus", key)).json() == {
        "cues": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "query.limit"),
        ("limit=101", "query.limit"),
        ("limit=x", "query.limit"),
        ("offset=-1", "query.offset"),
    ],
)
async def test_list_query_validation(api: Api, query: str, field: str) -> None:
    key = await api.register()
    err = assert_error(await api.request("GET", f"/v1/cues?{query}", key), 422, "validation_error")
    assert err["details"][0]["field"] == field


async def test_get_execution_page_query_validation(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue())
    err = assert_error(
        await api.request("GET", f"/v1/cues/{cue['id']}?execution_limit=101", key), 422, "validation_error"
    )
    assert err["details"][0]["field"] == "query.execution_limit"


async def test_tenant_isolation(api: Api) -> None:
    alice = await api.register()
    bob = await api.register()
    cue = await create(api, alice, webhook_cue("shared-name"))
    for method, kw in (("GET", {}), ("PATCH", {"json": {"description": "x"}}), ("DELETE", {})):
        assert_error(
            await api.request(method, f"/v1/cues/{cue['id']}", bob, **kw),
            404,
            "cue_not_found",
            "Cue not found",
        )
    assert (await api.request("GET", "/v1/cues", bob)).json()["total"] == 0
    # names are per account
    await create(api, bob, webhook_cue("shared-name"))
    assert (await api.request("GET", f"/v1/cues/{cue['id']}", alice)).status_code == 200


@pytest.mark.parametrize("cue_id", ["cue_doesnotexist", "nope", "cue_" + "x" * 200, "cue_ABCDEFGHIJKL"])
async def test_unknown_cue_ids(api: Api, cue_id: str) -> None:
    key = await api.register()
    assert_error(await api.request("GET", f"/v1/cues/{cue_id}", key), 404, "cue_not_found")
    assert_error(await api.request("DELETE", f"/v1/cues/{cue_id}", key), 404, "cue_not_found")


async def test_delete(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue("gone"))
    res = await api.request("DELETE", f"/v1/cues/{cue['id']}", key)
    assert res.status_code == 204 and res.content == b""
    assert_error(await api.request("DELETE", f"/v1/cues/{cue['id']}", key), 404, "cue_not_found")
    # the name and the due entry are gone too
    await create(api, key, webhook_cue("gone"))
    p = api.rt.keys.cue_partition(cue["id"])
    assert await api.rt.store.redis.zscore(api.rt.keys.due(p), cue["id"]) is None


async def test_bulk_delete(api: Api) -> None:
    key = await api.register()
    other = await api.register()
    a = await create(api, key, webhook_cue("a"))
    b = await create(api, key, webhook_cue("b"))
    foreign = await create(api, other, webhook_cue("f"))
    body = {"ids": [a["id"], "cue_zzzzzzzzzzzz", foreign["id"], a["id"], b["id"], "junk"]}
    assert_error(
        await api.request("POST", "/v1/cues/bulk-delete", key, json=body), 400, "confirmation_required"
    )
    res = await api.request(
        "POST", "/v1/cues/bulk-delete", key, json=body, headers={"X-Confirm-Destructive": "true"}
    )
    assert res.status_code == 200
    assert res.json() == {
        "deleted": [a["id"], b["id"]],
        "skipped": ["cue_zzzzzzzzzzzz", foreign["id"], a["id"], "junk"],
    }
    for bad in ({"ids": []}, {"ids": ["x"] * 101}, {"ids": "x"}, {}):
        assert_error(
            await api.request(
                "POST", "/v1/cues/bulk-delete", key, json=bad, headers={"X-Confirm-Destructive": "true"}
            ),
            422,
            "validation_error",
        )


async def test_duplicate_name_on_create(api: Api) -> None:
    key = await api.register()
    await create(api, key, webhook_cue("dup"))
    assert_error(
        await api.request("POST", "/v1/cues", key, json=webhook_cue("dup")),
        409,
        "duplicate_cue_name",
        "A cue named 'dup' already exists",
    )


async def test_stale_name_reservation_is_taken_over(api: Api) -> None:
    """A reservation whose cue never appeared (a crash between the two writes) does not block the name."""
    key = await api.register()
    account = await api.rt.accounts.authenticate(f"Bearer {key}")
    old = api.rt.clock.now_us() - 60_000_000
    await api.rt.store.redis.hset(api.rt.keys.cue_names(account.id), "orphan", f"cue_neverwritten:{old}")
    cue = await create(api, key, webhook_cue("orphan"))
    assert cue["name"] == "orphan"
    assert_error(
        await api.request("POST", "/v1/cues", key, json=webhook_cue("orphan")), 409, "duplicate_cue_name"
    )


async def test_single_partition_works(settings: Settings) -> None:
    client, rt = await make_api(settings.replace(partitions=1, key_prefix=settings.key_prefix + "p1"))
    try:
        key = await client.register()
        ids = [(await create(client, key, webhook_cue(f"c{i}")))["id"] for i in range(5)]
        assert {rt.keys.cue_partition(i) for i in ids} == {0}
        page = (await client.request("GET", "/v1/cues?limit=2&offset=1", key)).json()
        assert [c["id"] for c in page["cues"]] == [ids[3], ids[2]] and page["total"] == 5
        await client.request("PATCH", f"/v1/cues/{ids[0]}", key, json={"status": "paused", "name": "renamed"})
        assert (await client.request("DELETE", f"/v1/cues/{ids[0]}", key)).status_code == 204
    finally:
        await client.client.aclose()
        await rt.close()
        import redis

        r = redis.Redis.from_url(settings.redis_url)
        for k in r.scan_iter(match=settings.key_prefix + "p1:*"):
            r.delete(k)
