"""The official ``cueapi-sdk`` (0.1.3) against a running cuefast, unchanged.

Run inside the SDK venv: ``python sdk_scenario.py <base_url>``. Everything goes through the
SDK's public surface; for the routes this SDK version has no method for (webhook secret,
fire, claimable, claim) it goes through the SDK's own request helper (``client._get`` /
``client._post``), so the SDK's error mapping still applies. Registration is plain HTTP,
as the SDK has no register call.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from common import Receiver, Scenario, main, wait_for
from cueapi import (
    AuthenticationError,
    CueAPI,
    CueAPIError,
    CueLimitExceededError,
    CueNotFoundError,
    InvalidScheduleError,
    verify_webhook,
)
from cueapi.models import Cue, CueList

BASE = sys.argv[1]
S: dict[str, Any] = {}
sc = Scenario()

# Non-ASCII, astral, floats in every notation, nesting: verify_webhook re-serializes with
# json.dumps(sort_keys=True), so the delivered bytes must be exactly that form.
PAYLOAD = {
    "task": "brief",
    "n": 1,
    "text": 'héllo ☃ \U0001f600 "q" \\ /',
    "nested": {"z": [1, 2.5, 1e20, 1e-07, -0.0, 100.0, 12345678901234567890123], "a": None, "b": True},
    "ctrl": "\x01\t\n",
}


def signed_ok(req: dict[str, Any], secret: str) -> bool:
    h = req["headers"]
    sig, ts = h["x-cueapi-signature"], h["x-cueapi-timestamp"]
    body: bytes = req["body"]
    # The SDK accepts bytes, str and a parsed dict; all three must verify.
    return (
        verify_webhook(body, sig, secret, ts)
        and verify_webhook(body.decode(), sig, secret, ts)
        and verify_webhook(json.loads(body), sig, secret, ts)
        and body == json.dumps(json.loads(body), sort_keys=True).encode()
    )


def expect(
    exc_type: type[CueAPIError], fn: Any, *, status: int | None = None, code: str | None = None
) -> Any:
    try:
        fn()
    except CueAPIError as exc:
        assert type(exc) is exc_type, (type(exc).__name__, exc.status_code, exc.code, exc.message)
        if status is not None:
            assert exc.status_code == status, (exc.status_code, exc.code, exc.message)
        if code is not None:
            assert exc.code == code, (exc.code, exc.message)
        assert exc.message and exc.message != "Unknown error", exc.body
        assert set(exc.body) == {"error"} and exc.body["error"]["status"] == exc.status_code, exc.body
        return exc
    raise AssertionError(f"expected {exc_type.__name__}")


def fire(cue_id: str, **body: Any) -> dict[str, Any]:
    out: dict[str, Any] = S["client"]._post(f"/v1/cues/{cue_id}/fire", json=body)
    return out


def delivered(eid: str, timeout: float = 15.0) -> dict[str, Any]:
    reqs = wait_for(lambda: S["receiver"].for_execution(eid), f"delivery of {eid}", timeout)
    req: dict[str, Any] = reqs[0]
    return req


@sc.step
def register_over_http() -> None:
    email = f"sdk-{uuid.uuid4().hex[:8]}@example.com"
    res = httpx.post(f"{BASE}/v1/auth/register", json={"email": email}, timeout=10)
    assert res.status_code == 201, res.text
    key = res.json()["api_key"]
    assert key.startswith("cue_sk_") and len(key) == 39, key
    S["key"] = key
    S["client"] = CueAPI(key, base_url=BASE)
    secret = S["client"]._get("/v1/auth/webhook-secret")["webhook_secret"]
    assert secret.startswith("whsec_") and len(secret) == 70, secret
    S["secret"] = secret
    S["receiver"] = Receiver()


@sc.step
def create_one_time_webhook_cue_soon() -> None:
    # Fires in ~3 s; checked at the end (delivery → success, cue → completed, no outcome needed).
    at = datetime.now(UTC) + timedelta(seconds=3)
    cue = S["client"].cues.create("soon", at=at, callback=S["receiver"].url("/soon"), payload={"once": True})
    assert isinstance(cue, Cue) and cue.schedule.type == "once" and cue.status == "active"
    assert cue.next_run is not None and abs((cue.next_run - at).total_seconds()) < 0.001, (cue.next_run, at)
    S["soon"] = cue


@sc.step
def create_recurring_webhook_cue() -> None:
    cue = S["client"].cues.create(
        "morning-brief",
        cron="0 9 * * 1",
        timezone="America/New_York",
        callback=S["receiver"].url(),
        callback_headers={"X-Team": "ops", "X-CueAPI-Signature": "forged"},
        payload=PAYLOAD,
        description="weekly",
        retry={"max_attempts": 2, "backoff_minutes": [1]},
        on_failure={"email": False, "pause": False},
    )
    assert isinstance(cue, Cue)
    assert cue.id.startswith("cue_") and cue.name == "morning-brief" and cue.status == "active"
    assert cue.transport == "webhook" and cue.description == "weekly"
    assert cue.schedule.type == "recurring" and cue.schedule.cron == "0 9 * * 1"
    assert cue.schedule.timezone == "America/New_York"
    assert cue.callback.url == S["receiver"].url() and cue.callback.method == "POST"
    assert cue.callback.headers == {"X-Team": "ops", "X-CueAPI-Signature": "forged"}
    assert cue.payload == PAYLOAD
    assert cue.retry.max_attempts == 2 and cue.retry.backoff_minutes == [1]
    assert cue.on_failure is not None and cue.on_failure.email is False
    assert cue.run_count == 0 and cue.fired_count == 0 and cue.last_run is None
    assert cue.next_run is not None
    local = cue.next_run.astimezone(ZoneInfo("America/New_York"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0), local
    assert cue.next_run > datetime.now(UTC)
    S["cue"] = cue


@sc.step
def create_one_time_cues_naive_and_aware_at() -> None:
    naive = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    cue = S["client"].cues.create("once-naive", at=naive, callback=S["receiver"].url())
    assert cue.schedule.type == "once" and cue.schedule.timezone == "UTC"
    assert cue.next_run == naive.replace(tzinfo=UTC), (cue.next_run, naive)
    assert cue.schedule.at == naive.replace(tzinfo=UTC)
    aware = datetime.now(ZoneInfo("Asia/Tokyo")) + timedelta(days=2)
    cue2 = S["client"].cues.create("once-aware", at=aware, callback=S["receiver"].url())
    assert cue2.next_run is not None and abs((cue2.next_run - aware).total_seconds()) < 0.001
    S["once"] = cue


@sc.step
def create_worker_cue() -> None:
    cue = S["client"].cues.create(
        # a cron that does not fire while the scenario runs: a scheduled execution would be
        # claimable, and claim-next finds nothing only when none is (worker_claim_heartbeat_outcome)
        "etl",
        cron="0 0 1 1 *",
        transport="worker",
        payload={"task": "etl", "n": 1},
    )
    assert cue.transport == "worker"
    assert (cue.callback.url, cue.callback.method, cue.callback.headers) == (None, "POST", {})
    assert cue.warning == "No active workers found. Start a cueapi-worker to process this cue.", cue.warning
    S["worker_cue"] = cue


@sc.step
def list_cues_paged_and_filtered() -> None:
    c = S["client"].cues
    full = c.list(limit=100)
    assert isinstance(full, CueList) and full.total == 5 and len(full.cues) == 5, full
    assert [x.created_at for x in full.cues] == sorted((x.created_at for x in full.cues), reverse=True)
    page1, page2 = c.list(limit=2, offset=0), c.list(limit=2, offset=2)
    assert (page2.limit, page2.offset, page2.total) == (2, 2, 5)
    assert not {x.id for x in page1.cues} & {x.id for x in page2.cues}
    empty = c.list(status="paused")
    assert empty.cues == [] and empty.total == 0 and empty.limit == 20 and empty.offset == 0


@sc.step
def get_cue() -> None:
    cue = S["client"].cues.get(S["cue"].id)
    assert isinstance(cue, Cue) and cue.id == S["cue"].id and cue.payload == PAYLOAD
    raw = S["client"]._get(f"/v1/cues/{S['cue'].id}")
    assert raw["executions"] == [] and raw["execution_total"] == 0


@sc.step
def update_cue_fields() -> None:
    c, cid = S["client"].cues, S["cue"].id
    before = c.get(cid)
    cue = c.update(cid, description="changed")
    assert cue.description == "changed" and cue.updated_at > before.updated_at
    assert (cue.schedule, cue.callback, cue.payload, cue.retry) == (
        before.schedule,
        before.callback,
        before.payload,
        before.retry,
    )
    # update(callback=url) sends {"callback": {"url": …}} only: method and headers are kept.
    cue = c.update(cid, callback=S["receiver"].url("/moved"))
    assert cue.callback.url == S["receiver"].url("/moved")
    assert cue.callback.headers == before.callback.headers and cue.callback.method == "POST"
    # A cron change without a timezone keeps the stored zone.
    cue = c.update(cid, cron="30 10 * * *")
    assert cue.schedule.cron == "30 10 * * *" and cue.schedule.timezone == "America/New_York"
    local = cue.next_run.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (10, 30), local
    cue = c.update(cid, cron="0 8 * * *", timezone="Europe/Paris")
    assert cue.schedule.timezone == "Europe/Paris"
    assert cue.next_run.astimezone(ZoneInfo("Europe/Paris")).hour == 8
    cue = c.update(cid, name="renamed", retry={"max_attempts": 1}, on_failure={"pause": False})
    assert cue.name == "renamed" and cue.retry.max_attempts == 1 and cue.retry.backoff_minutes == [1]
    assert cue.on_failure.email is False
    cue = c.update(cid, payload=PAYLOAD)
    assert cue.payload == PAYLOAD
    new_at = datetime.now(UTC) + timedelta(hours=3)
    once = c.update(S["once"].id, at=new_at)
    assert abs((once.next_run - new_at).total_seconds()) < 0.001 and once.schedule.type == "once"


@sc.step
def pause_and_resume() -> None:
    c, cid = S["client"].cues, S["cue"].id
    cue = c.pause(cid)
    assert cue.status == "paused" and cue.next_run is None
    assert c.list(status="paused").total == 1
    cue = c.resume(cid)
    assert cue.status == "active" and cue.next_run is not None and cue.next_run > datetime.now(UTC)


@sc.step
def fire_delivers_signed_webhook() -> None:
    cid = S["cue"].id
    ex = fire(cid)
    assert set(ex) >= {"id", "cue_id", "scheduled_for", "status", "triggered_by"}, ex
    assert ex["cue_id"] == cid and ex["status"] == "pending" and ex["triggered_by"] == "manual_fire"
    req = delivered(ex["id"])
    assert req["path"] == "/moved" and req["method"] == "POST"
    assert signed_ok(req, S["secret"]), req
    assert req["headers"]["x-team"] == "ops"  # custom header arrives, forged signature does not win
    assert req["headers"]["user-agent"] == "CueAPI/1.0"
    body = json.loads(req["body"])
    assert set(body) == {"attempt", "cue_id", "execution_id", "name", "payload", "scheduled_for"}, body
    assert body["payload"] == PAYLOAD and body["name"] == "renamed" and body["attempt"] == 1
    assert body["scheduled_for"] == ex["scheduled_for"] == req["headers"]["x-cueapi-scheduled-for"]
    S["fired"] = ex["id"]


@sc.step
def fire_payload_override_merge_and_replace() -> None:
    cid = S["cue"].id
    merged = fire(cid, payload_override={"n": 2, "x": True})
    body = json.loads(delivered(merged["id"])["body"])
    assert body["payload"] == {**PAYLOAD, "n": 2, "x": True}, body["payload"]
    explicit = fire(cid, payload_override={"n": 3}, merge_strategy="merge")
    assert json.loads(delivered(explicit["id"])["body"])["payload"] == {**PAYLOAD, "n": 3}
    replaced = fire(cid, payload_override={"only": "this"}, merge_strategy="replace")
    req = delivered(replaced["id"])
    assert json.loads(req["body"])["payload"] == {"only": "this"} and signed_ok(req, S["secret"])
    assert S["client"].cues.get(cid).payload == PAYLOAD  # the cue itself is unchanged
    S["merged"] = merged["id"]


@sc.step
def callback_methods_get_and_put() -> None:
    c, r = S["client"], S["receiver"]
    get = c.cues.create("by-get", cron="0 0 1 1 *", callback=r.url("/get"), callback_method="GET")
    put = c.cues.create(
        "by-put", cron="0 0 1 1 *", callback=r.url("/put"), callback_method="PUT", payload={"p": 1}
    )
    assert get.callback.method == "GET" and put.callback.method == "PUT"
    req = delivered(fire(get.id)["id"])
    h = req["headers"]
    assert req["method"] == "GET" and req["body"] == b""
    # cuefast signs the body it sends (empty for GET), so verifying what arrived works.
    assert verify_webhook(b"", h["x-cueapi-signature"], S["secret"], h["x-cueapi-timestamp"])
    req = delivered(fire(put.id)["id"])
    assert req["method"] == "PUT" and signed_ok(req, S["secret"])
    assert json.loads(req["body"])["payload"] == {"p": 1}
    c.cues.delete(get.id)
    c.cues.delete(put.id)


@sc.step
def fire_idempotency_key() -> None:
    cid = S["cue"].id
    a = fire(cid, payload_override={"k": 1}, idempotency_key="idem-1")
    b = fire(cid, payload_override={"k": 1}, idempotency_key="idem-1")
    assert a["id"] == b["id"], (a, b)
    expect(
        CueAPIError,
        lambda: fire(cid, payload_override={"k": 2}, idempotency_key="idem-1"),
        status=409,
        code="idempotency_key_conflict",
    )
    delivered(a["id"])


@sc.step
def executions_list_and_get() -> None:
    ex, cid = S["client"].executions, S["cue"].id

    def all_success() -> Any:
        page = ex.list(cue_id=cid, limit=100)
        return (
            page if page["total"] == 5 and {e["status"] for e in page["executions"]} == {"success"} else None
        )

    page = wait_for(all_success, "5 successful executions")
    assert set(page) >= {"executions", "total", "limit", "offset", "has_more"}, page
    assert page["limit"] == 100 and page["offset"] == 0 and page["has_more"] is False
    assert ex.list(cue_id=cid, status="success")["total"] == 5
    assert ex.list(cue_id=cid, status="failed")["total"] == 0
    assert ex.list(triggered_by="manual_fire", cue_id=cid)["total"] == 5
    two = ex.list(cue_id=cid, limit=2, offset=1)
    assert len(two["executions"]) == 2 and two["has_more"] is True
    one = ex.get(S["fired"])
    assert one["id"] == S["fired"] and one["cue_id"] == cid and one["status"] == "success"
    assert one["http_status"] == 200 and one["attempts"] == 1 and one["error_message"] is None
    assert one["triggered_by"] == "manual_fire" and one["payload"] == PAYLOAD and one["outcome"] is None
    cue = S["client"].cues.get(cid)
    assert cue.run_count == 5 and cue.fired_count == 0 and cue.last_run is not None
    raw = S["client"]._get(f"/v1/cues/{cid}")
    assert raw["execution_total"] == 5 and len(raw["executions"]) == 5


@sc.step
def report_outcome_and_verification() -> None:
    ex, eid = S["client"].executions, S["fired"]
    out = ex.report_outcome(
        eid, success=True, result="done", metadata={"k": "v"}, external_id="ext-1", summary="charged"
    )
    assert out["execution_id"] == eid and out["outcome_recorded"] is True, out
    assert out["outcome_state"] == "reported_success", out
    got = ex.get(eid)
    assert got["outcome"]["success"] is True and got["outcome"]["result"] == "done"
    assert got["outcome"]["metadata"] == {"k": "v"} and got["outcome"]["external_id"] == "ext-1"
    assert got["outcome_state"] == "reported_success"
    expect(
        CueAPIError,
        lambda: ex.report_outcome(eid, success=False),
        status=409,
        code="outcome_already_recorded",
    )
    assert ex.get(eid)["outcome"]["success"] is True  # the first outcome is intact
    assert ex.list(outcome_state="reported_success", cue_id=S["cue"].id)["total"] == 1
    pending = ex.mark_verification_pending(eid)
    assert pending["outcome_state"] == "verification_pending", pending
    verified = ex.mark_verified(eid)
    assert verified["outcome_state"] == "verified_success", verified
    long = ex.report_outcome(S["merged"], success=False, error="e" * 4096, result="r" * 4096)
    assert long["outcome_state"] == "reported_failure"
    expect(
        CueNotFoundError,
        lambda: ex.report_outcome(str(uuid.uuid4()), success=True),
        code="execution_not_found",
    )


@sc.step
def execution_context_manager_reports() -> None:
    cid, ex = S["cue"].id, S["client"].executions
    ok_id, bad_id = fire(cid)["id"], fire(cid)["id"]
    with ex.handle(ok_id, {"x": 1}) as ctx:
        ctx.result = "handled"
    try:
        with ex.handle(bad_id):
            raise RuntimeError("handler blew up")
    except RuntimeError:
        pass
    assert ex.get(ok_id)["outcome"]["result"] == "handled"
    bad = ex.get(bad_id)["outcome"]
    assert bad["success"] is False and bad["error"] == "handler blew up"
    delivered(ok_id)
    delivered(bad_id)


@sc.step
def error_mapping() -> None:
    c = S["client"]
    expect(CueNotFoundError, lambda: c.cues.get("cue_doesnotexist"), status=404, code="cue_not_found")
    expect(CueNotFoundError, lambda: c.cues.update("cue_doesnotexist", description="x"), status=404)
    expect(CueNotFoundError, lambda: c.executions.get("not-a-uuid"), status=404, code="execution_not_found")
    expect(CueNotFoundError, lambda: fire("cue_doesnotexist"), status=404, code="cue_not_found")
    bad = CueAPI("cue_sk_" + "0" * 32, base_url=BASE)
    expect(AuthenticationError, bad.cues.list, status=401, code="invalid_api_key")
    expect(AuthenticationError, CueAPI("not-a-key", base_url=BASE).cues.list, status=401)
    url = S["receiver"].url()
    expect(
        InvalidScheduleError,
        lambda: c.cues.create("bad-cron", cron="61 25 * * *", callback=url),
        status=400,
        code="invalid_schedule",
    )
    expect(InvalidScheduleError, lambda: c.cues.create("feb30", cron="0 0 30 2 *", callback=url), status=400)
    c.cues.delete(c.cues.create("feb29", cron="0 0 29 2 *", callback=url).id)
    expect(
        InvalidScheduleError,
        lambda: c.cues.create("bad-tz", cron="0 9 * * *", timezone="Mars/Olympus", callback=url),
        status=422,
        code="invalid_timezone",
    )
    past = datetime.now(UTC) - timedelta(minutes=1)
    expect(InvalidScheduleError, lambda: c.cues.create("past", at=past, callback=url), status=400)
    exc = expect(InvalidScheduleError, lambda: c.cues.create("no-url", cron="0 9 * * *"))
    assert exc.status_code in (400, 422)
    expect(InvalidScheduleError, lambda: c.cues.update(S["cue"].id, status="bogus"), status=422)
    expect(InvalidScheduleError, lambda: c.cues.list(limit=1000), status=422, code="validation_error")
    expect(
        CueAPIError,
        lambda: c.cues.create("etl", cron="0 9 * * *", transport="worker"),
        status=409,
        code="duplicate_cue_name",
    )
    expect(CueAPIError, lambda: c.cues.update(S["cue"].id, name="etl"), status=409, code="duplicate_cue_name")
    expect(
        InvalidScheduleError,
        lambda: c.cues.create("ssrf", cron="0 9 * * *", callback="http://169.254.169.254/x"),
        status=400,
        code="invalid_callback_url",
    )


@sc.step
def failed_delivery_runs_signed_on_failure_webhook() -> None:
    c, r = S["client"], S["receiver"]
    cue = c.cues.create(
        "failing",
        cron="0 0 1 1 *",
        callback=r.url("/fail"),
        retry={"max_attempts": 1, "backoff_minutes": [1]},
        on_failure={"email": False, "webhook": r.url("/onfail"), "pause": True},
    )
    assert cue.on_failure is not None and cue.on_failure.webhook == r.url("/onfail") and cue.on_failure.pause
    eid = fire(cue.id)["id"]
    notice = wait_for(lambda: r.matching(lambda q: q["path"] == "/onfail"), "the on_failure webhook")[0]
    assert signed_ok(notice, S["secret"]), notice  # signed like a cue webhook (cuefast)
    body = json.loads(notice["body"])
    assert body["event"] == "cue.failed" and body["execution_id"] == eid and body["cue_id"] == cue.id
    assert body["cue_name"] == "failing" and body["attempts"] == 1 and body["last_http_status"] == 500
    assert body["last_error"] == "Webhook endpoint returned server error (500)", body
    assert len(r.for_execution(eid)) == 1  # one attempt only
    e = c.executions.get(eid)
    assert e["status"] == "failed" and e["http_status"] == 500 and e["attempts"] == 1
    assert e["error_message"] == "Webhook endpoint returned server error (500)"
    paused = c.cues.get(cue.id)
    assert paused.status == "paused" and paused.next_run is None  # on_failure.pause
    c.cues.delete(cue.id)


@sc.step
def cue_limit_maps_to_cue_limit_exceeded() -> None:
    c = S["client"].cues
    limit = S["client"]._get("/v1/auth/me")["active_cue_limit"]
    assert limit <= 50, f"the test server should run with a small CUEFAST_DEFAULT_CUE_LIMIT, got {limit}"
    made = []
    for i in range(limit + 1):
        try:
            made.append(c.create(f"filler-{i}", cron="0 9 * * *", transport="worker").id)
        except CueLimitExceededError as exc:
            assert exc.status_code == 403 and exc.code == "cue_limit_exceeded", exc.body
            break
    else:
        raise AssertionError("no CueLimitExceededError")
    for cid in made:
        c.delete(cid)


@sc.step
def one_time_cue_delivered_and_completed() -> None:
    soon = S["soon"]
    reqs = wait_for(lambda: S["receiver"].matching(lambda r: r["path"] == "/soon"), "the soon cue", 20)
    assert len(reqs) == 1 and signed_ok(reqs[0], S["secret"])
    body = json.loads(reqs[0]["body"])
    assert body["payload"] == {"once": True} and body["cue_id"] == soon.id

    def completed() -> Cue | None:
        cue: Cue = S["client"].cues.get(soon.id)
        return cue if cue.status == "completed" else None

    cue = wait_for(completed, "the one-time cue to complete")
    assert cue.next_run is None and cue.fired_count == 1 and cue.run_count == 1
    execs = S["client"].executions.list(cue_id=soon.id)["executions"]
    assert len(execs) == 1 and execs[0]["status"] == "success" and execs[0]["triggered_by"] == "scheduled"


@sc.step
def delete_cue() -> None:
    c, cid = S["client"].cues, S["cue"].id
    assert c.delete(cid) is None
    expect(CueNotFoundError, lambda: c.get(cid), status=404, code="cue_not_found")
    expect(CueNotFoundError, lambda: c.delete(cid), status=404, code="cue_not_found")
    expect(CueNotFoundError, lambda: S["client"].executions.get(S["fired"]), status=404)
    assert c.list().total == 4


# --- worker transport through the SDK (claimable / claim / heartbeat) ----------------------


@sc.step
def worker_claim_heartbeat_outcome() -> None:
    client, wid = S["client"], S["worker_cue"].id
    ex = fire(wid, payload_override={"extra": "from-fire"})
    eid = ex["id"]

    def listed() -> Any:
        items = client._get("/v1/executions/claimable")["executions"]
        return [i for i in items if i["execution_id"] == eid]

    item = wait_for(listed, "the worker execution to be claimable")[0]
    assert item["task"] == "etl" and item["cue_id"] == wid and item["cue_name"] == "etl", item
    assert item["payload"] == {"task": "etl", "n": 1, "extra": "from-fire"}, item
    assert client._get("/v1/executions/claimable", params={"task": "other"})["executions"] == []
    claim = client._post(f"/v1/executions/{eid}/claim", json={"worker_id": "sdk-worker"})
    assert claim == {"claimed": True, "execution_id": eid, "lease_seconds": 900} or (
        claim["claimed"] is True and claim["execution_id"] == eid and claim["lease_seconds"] == 900
    ), claim
    expect(
        CueAPIError,
        lambda: client._post(f"/v1/executions/{eid}/claim", json={"worker_id": "other"}),
        status=409,
        code="claim_failed",
    )
    got = client.executions.get(eid)
    assert got["status"] == "delivering" and got["claimed_by_worker"] == "sdk-worker" and got["attempts"] == 1
    hb = client.executions.heartbeat(eid)  # {} and no X-Worker-Id: no ownership check
    assert hb["execution_id"] == eid and hb["lease_extended_until"], hb
    out = client.executions.report_outcome(eid, success=True, result="etl ok")
    assert out["outcome_state"] == "reported_success"
    assert client.executions.get(eid)["status"] == "success"
    expect(CueAPIError, lambda: client.executions.heartbeat(eid), status=409, code="execution_not_claiming")
    expect(
        CueAPIError,
        lambda: client._post("/v1/executions/claim", json={"worker_id": "sdk-worker"}),
        status=409,
        code="claim_failed",
    )
    # claim-next takes the oldest claimable one
    nxt = fire(wid)["id"]
    wait_for(lambda: client._get("/v1/executions/claimable")["executions"], "a claimable execution")
    claimed = client._post("/v1/executions/claim", json={"worker_id": "sdk-worker"})
    assert claimed["execution_id"] == nxt, claimed
    fail = client.executions.report_outcome(nxt, success=False, error="nope")
    assert fail["outcome_state"] == "reported_failure"
    got = client.executions.get(nxt)
    assert got["status"] == "failed" and got["outcome"]["error"] == "nope"


@sc.step
def close() -> None:
    S["client"].close()
    S["receiver"].close()


if __name__ == "__main__":
    main(sc)
